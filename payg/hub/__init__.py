"""The hub: one fleet view over every payg controller on one MQTT broker (`payg hub`, README "Many buildings").

An entry point like payg/web: `fleet.py` is the model the MQTT messages feed (it keeps no money of its
own), `web.py` the landlord's pages and API over it, `live.py` the Socket.IO pushes. The broker side is
an adapter (payg/adapters/mqtt/hub_link.py) and payg/wiring/hub.py puts them together.
"""

"""A real Mosquitto per test, and controllers built in-process (virtual clock) with [mqtt] on."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from payg import bootstrap as app
from payg.adapters.clocks import ManualClock
from payg.adapters.mqtt.bridge import MqttBridge
from payg.adapters.virtual import VirtualDriver
from payg.wiring.mqtt import start_bridge
from tests.support.configs import load_text
from tests.support.mqtt_beds import PASSWORDS, Listener, controller_toml, fleet_broker


@dataclass
class Controller:
    rt: app.Runtime
    driver: VirtualDriver
    clock: ManualClock
    bridge: MqttBridge | None

    def balance(self, socket_id: str) -> int:
        return self.rt.journal.balance(socket_id)


@pytest.fixture
def broker(tmp_path):
    b = fleet_broker(tmp_path / "broker")
    yield b
    b.stop()


@pytest.fixture
def listeners(broker):
    made = []

    def make(**kw) -> Listener:
        made.append(Listener(broker.port, **kw))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


@pytest.fixture
def controllers(tmp_path, broker, monkeypatch):
    """make(sockets=..., name=..., port=..., password=...) -> a started Controller; closed at the end."""
    made: list[Controller] = []

    def make(sockets=("kitchen",), *, name="home", port=None, password=None, data="var", mqtt=True,
             extra="poll_interval_s = 0.2\nmeter_offline_grace_s = 10", load_w=800, wait_online=True,
             mqtt_extra="") -> Controller:
        monkeypatch.setenv("PAYG_TEST_MQTT_PASSWORD", password or PASSWORDS[f"ctl-{name}"])
        text = controller_toml(tmp_path / data, port or broker.port, controller=name, sockets=sockets, enabled=mqtt,
                               load_w=load_w, extra=mqtt_extra)
        text = text.replace("[controller]\n", "[controller]\n" + extra + "\n", 1)
        config = load_text(tmp_path, text)
        clock = ManualClock(1_700_000_000.0)
        rt = app.build(config, clock)
        rt.site.start()
        c = Controller(rt, VirtualDriver(rt.site, clock), clock, start_bridge(rt))
        made.append(c)
        make.last = c
        if mqtt and wait_online:  # subscribed to its commands before a test sends any
            assert c.bridge.online.wait(10), "the controller did not come online"
        return c

    yield make
    for c in reversed(made):
        c.rt.close()

"""Composition beside payg/bootstrap.py: what the root shares (runtime.py) and the parts of wiring a controller
(and the hub) that it hands off.

Like the root, this may import any layer; nothing imports it but the root, the CLI's wiring and the tests, and
nothing here imports the root back.
"""

"""Composition beside app.py: the parts of wiring a controller (and the hub) that app.py hands off.

Like app.py, this may import any layer; nothing imports it but app.py, the CLI's wiring and the tests.
"""

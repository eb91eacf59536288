"""The smallest valid configuration, as TOML text, and loading a text through the real loader."""

from __future__ import annotations

from payg.adapters import config as cfg

MINIMAL = """
[controller]
data_dir = "var"
[ledger]
backend = "mock"
[[sockets]]
id = "kitchen"
meter = { kind = "simulated", load_w = 800 }
relay = { kind = "simulated" }
"""

# An IOTA ledger at an address nothing listens on; {extra}: more [ledger] keys.
IOTA_CONFIG = """
[controller]
data_dir = "var"
[ledger]
backend = "iota"
graphql_url = "http://127.0.0.1:9"
mnemonic_env = "PAYG_TEST_MNEMONIC"
{extra}
[[sockets]]
id = "kitchen"
meter = {{ kind = "simulated", load_w = 800 }}
relay = {{ kind = "simulated" }}
"""


def load_text(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return cfg.load(path)


def gpio_sockets_toml(data_dir, *relays: str) -> str:
    """A controller's file on the mock ledger with one simulated 100 W socket per GPIO relay, ids a, b, c, ...; each
    relay given by the keys of its table after `kind` (`pin = 4, active_low = true`)."""
    sockets = "".join(f'[[sockets]]\nid = "{chr(ord("a") + i)}"\nmeter = {{ kind = "simulated", load_w = 100 }}\n'
                      f'relay = {{ kind = "gpio", {relay} }}\n' for i, relay in enumerate(relays))
    return f'[controller]\ndata_dir = "{data_dir}"\n[ledger]\nbackend = "mock"\n' + sockets

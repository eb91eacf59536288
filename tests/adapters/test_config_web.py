"""[web]'s network settings: the public URL, trusted proxies, the session's idle time and the server's limits."""

import pytest

from payg.domain.settings import ServerConfig
from payg.errors import ConfigError
from tests.support.configs import MINIMAL, load_text


def test_network_settings_default_to_a_closed_embedded_controller(tmp_path):
    web = load_text(tmp_path, MINIMAL).web
    assert web.public_url is None and web.trusted_proxies == () and not web.https
    assert web.session_idle_minutes == 60 and web.server == ServerConfig()


def test_network_settings_parse(tmp_path):
    web = load_text(tmp_path, MINIMAL + '[web]\npublic_url = "https://payg.example.org"\n'
                    'trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1"]\nsession_idle_minutes = 15\n'
                    '[web.server]\nmax_connections = 100\nworkers = 4\nmax_live_connections = 20\n'
                    'header_timeout_s = 5\nbody_timeout_s = 10\nidle_timeout_s = 20\nmax_body_kib = 64\n'
                    'max_live_per_client = 3\nbuffer_budget_kib = 2048\n').web
    assert web.https and web.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")
    assert web.session_idle_minutes == 15
    assert web.server == ServerConfig(100, 4, 20, 5.0, 10.0, 20.0, 64, max_live_per_client=3, buffer_budget_kib=2048)


@pytest.mark.parametrize("extra, key, fragment", [
    ('[web]\ntrusted_proxies = "127.0.0.1"\n', "web.trusted_proxies", "a list of proxy addresses"),
    ('[web]\ntrusted_proxies = ["localhost"]\n', "web.trusted_proxies", "CIDR"),
    ('[web]\npublic_url = "payg.example.org"\n', "web.public_url", "https://"),
    ('[web]\nsession_idle_minutes = 0\n', "web.session_idle_minutes", ">= 1"),
    ('[web.server]\nworkers = 0\n', "web.server.workers", "from 1"),
    ('[web.server]\nmax_connections = 50\nmax_live_connections = 60\n', "web.server.max_connections", "more than"),
    ('[web.server]\nidle_timeout = 5\n', "web.server.idle_timeout", "did you mean 'idle_timeout_s'"),
    ('[web.server]\nmax_live_per_client = 0\n', "web.server.max_live_per_client", "from 1"),
    ('[web.server]\nmax_body_kib = 1024\nbuffer_budget_kib = 512\n', "web.server.buffer_budget_kib",
     "at least max_body_kib"),
])
def test_bad_network_settings_name_the_key(tmp_path, extra, key, fragment):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, MINIMAL + extra)
    assert err.value.key == key and fragment in str(err.value), str(err.value)


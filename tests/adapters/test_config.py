from fractions import Fraction
from pathlib import Path

import pytest

from payg.adapters import config as cfg
from payg.domain import settings
from payg.errors import ConfigError

from tests.support import ROOT

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


def load_text(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return cfg.load(path)


def test_the_embedded_default_is_valid_and_has_three_different_sockets():
    c = cfg.load(ROOT / "config" / "default.toml")
    assert [s.id for s in c.sockets] == ["kitchen", "laundry", "office"]
    assert len({type(s.meter.load) for s in c.sockets}) == 3
    assert c.ledger.backend == "mock" and (c.web.host, c.web.port) == ("127.0.0.1", 5000)
    assert c.tariff.tokens_per_wh == 1 and c.controller.data_dir == Path("var")


def test_defaults_fill_optional_keys(tmp_path):
    c = load_text(tmp_path, MINIMAL)
    assert c.controller.poll_interval_s == 1.0 and c.controller.meter_offline_grace_s == 10.0
    assert c.sockets[0].name == "kitchen" and c.sockets[0].max_power_w == 3680.0
    assert c.tariff.tokens_per_wh == Fraction(1)


@pytest.mark.parametrize("tariff, expected", [("1", Fraction(1)), ('"0.25"', Fraction(1, 4)), ("3", Fraction(3))])
def test_tariff_is_exact(tmp_path, tariff, expected):
    c = load_text(tmp_path, MINIMAL + f"\n[tariff]\ntokens_per_wh = {tariff}\n")
    assert c.tariff.tokens_per_wh == expected


@pytest.mark.parametrize("text, key, expected", [
    (MINIMAL.replace('data_dir = "var"', 'data_dir = "var"\npoll_intervall_s = 1'), "controller.poll_intervall_s",
     "no such key"),
    (MINIMAL.replace('data_dir = "var"', 'data_dir = "var"\npoll_interval_s = "fast"'),
     "controller.poll_interval_s", "a number > 0"),
    (MINIMAL + MINIMAL[MINIMAL.index("[[sockets]]"):], "sockets[1].id", "not used by another socket"),
    (MINIMAL.replace('[ledger]\nbackend = "mock"\n', ""), "[ledger]", "a [ledger] section"),
    (MINIMAL.replace("load_w = 800", "load_w = -5"), "sockets[0].meter.load_w", "a number >= 0"),
    (MINIMAL.replace('"simulated", load_w', '"rs232", load_w'), "sockets[0].meter.kind", "'simulated', 'modbus'"),
    (MINIMAL.replace('id = "kitchen"', 'id = "Kitchen Socket"'), "sockets[0].id", "a-z"),
    (MINIMAL + "\n[tariff]\ntokens_per_wh = 0.1\n", "tariff.tokens_per_wh", "decimal string"),
    (MINIMAL + "\n[web]\nport = 70000\n", "web.port", "from 1 to 65535"),
    (MINIMAL.replace("load_w = 800", "load_w = 800, random = { seed = 1, min_w = 1, max_w = 2 }"),
     "sockets[0].meter.load_w", "exactly one of"),
    (MINIMAL.replace('backend = "mock"', 'backend = "bitcoin"'), "ledger.backend", "one of"),
])
def test_bad_files_name_the_file_the_key_and_what_was_expected(tmp_path, text, key, expected):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    message = str(err.value)
    assert str(tmp_path / "c.toml") in message
    assert err.value.key == key
    assert expected in message


def test_syntax_errors_and_missing_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="valid TOML"):
        load_text(tmp_path, "[controller\n")
    with pytest.raises(ConfigError, match="not found"):
        cfg.load(tmp_path / "nope.toml")


def test_loading_touches_no_state(tmp_path):
    data_dir = tmp_path / "data"
    text = MINIMAL.replace('data_dir = "var"', f'data_dir = "{data_dir}"')
    with pytest.raises(ConfigError):
        load_text(tmp_path, text.replace("[ledger]", "[ledger]\nbogus = 1"))
    assert load_text(tmp_path, text).controller.data_dir == data_dir
    assert not data_dir.exists()


def test_trade_settings_parse_with_defaults(tmp_path):
    c = load_text(tmp_path, MINIMAL)
    assert c.trade == settings.TradeConfig() and c.sockets[0].sell is None and c.sockets[0].buy is None
    c = load_text(tmp_path, MINIMAL.replace('relay = { kind = "simulated" }',
                                            'relay = { kind = "simulated" }\ntrade = { sell_price_per_wh = 2 }')
                  + '[trade]\nowner = "kitchen"\ncapacity_wh = 5000\ntax_bps = 250\n')
    assert c.sockets[0].sell == settings.SellConfig(2)
    assert (c.trade.owner, c.trade.capacity_wh, c.trade.tax_bps, c.trade.evm_version) == ("kitchen", 5000, 250,
                                                                                          "prague")
    c = load_text(tmp_path, MINIMAL.replace('relay = { kind = "simulated" }', 'relay = { kind = "simulated" }\n'
                  'trade = { peer = "http://10.0.0.2:5000", supplier = "solar", below_tokens = 20, escrow_wh = 500,'
                  ' max_price_per_wh = "3000000000000" }'))
    assert c.sockets[0].buy == settings.BuyConfig("http://10.0.0.2:5000", "solar", 20, 500, 3_000_000_000_000)


@pytest.mark.parametrize("socket_trade, extra, key", [
    ('{ sell_price_per_wh = 2, peer = "http://a:1" }', "", "sockets[0].trade.peer"),
    ('{ sell_price_per_wh = 0 }', "", "sockets[0].trade.sell_price_per_wh"),
    ('{ }', "", "sockets[0].trade.sell_price_per_wh"),
    ('{ peer = "ftp://x", supplier = "s", below_tokens = 1, escrow_wh = 1, max_price_per_wh = 1 }', "",
     "sockets[0].trade.peer"),
    ('{ peer = "http://x", supplier = "s", below_tokens = 1, escrow_wh = 1 }', "",
     "sockets[0].trade.max_price_per_wh"),
    ('{ sell_price_per_wh = 1, colour = 1 }', "", "sockets[0].trade.colour"),
    ('{ sell_price_per_wh = 1 }', '[trade]\nowner = "nobody"\n', "trade.owner"),
    ('{ sell_price_per_wh = 1 }', '[trade]\ncapacity_wh = 999\n', "trade.capacity_wh"),
    ('{ sell_price_per_wh = 1 }', '[trade]\nmarket_contract = "0x12"\n', "trade.market_contract"),
    ('{ sell_price_per_wh = 1 }', '[trade]\nevm_version = "london"\n', "trade.evm_version"),
])
def test_bad_trade_settings_name_the_key(tmp_path, socket_trade, extra, key):
    text = MINIMAL.replace('relay = { kind = "simulated" }', f'relay = {{ kind = "simulated" }}\ntrade = {socket_trade}')
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text + extra)
    assert err.value.key == key, str(err.value)


def test_web_settings_parse_with_defaults(tmp_path):
    c = load_text(tmp_path, MINIMAL)
    assert c.web.landlord_password is None and c.web.low_credit_tokens == 100
    assert c.web.topup_presets == (50, 100, 200, 500) and c.web.session_hours == 12.0
    assert c.web.secure_cookies is False and c.web.timezone is None
    c = load_text(tmp_path, MINIMAL + '[web]\nlandlord_password_hash_file = "landlord.hash"\nlow_credit_tokens = 20\n'
                  'topup_presets = [10, 25]\nsession_hours = 2\nsecure_cookies = true\ntimezone = "Europe/Berlin"\n')
    assert c.web.landlord_password.file == Path("landlord.hash")  # like data_dir: from the working directory
    assert c.web.landlord_password.key == "web.landlord_password_hash_file"
    assert (c.web.low_credit_tokens, c.web.topup_presets, c.web.session_hours, c.web.secure_cookies,
            c.web.timezone) == (20, (10, 25), 2.0, True, "Europe/Berlin")
    c = load_text(tmp_path, MINIMAL + '[web]\nlandlord_password_hash_env = "PAYG_LANDLORD_HASH"\n')
    assert c.web.landlord_password.env == "PAYG_LANDLORD_HASH"
    assert cfg.load(ROOT / "config" / "default.toml").web.landlord_password.env == "PAYG_LANDLORD_HASH"


@pytest.mark.parametrize("web, key", [
    ('landlord_password = "hunter2hunter2"', "web.landlord_password"),
    ('landlord_password_hash = "scrypt:1$2$3"', "web.landlord_password_hash"),
    ('landlord_password_hash_env = "A"\nlandlord_password_hash_file = "f"', "web.landlord_password_hash_file"),
    ('landlord_password_hash_env = "not a name"', "web.landlord_password_hash_env"),
    ('topup_presets = []', "web.topup_presets"),
    ('topup_presets = [0, 5]', "web.topup_presets"),
    ('topup_presets = [1, 2, 3, 4, 5, 6, 7, 8, 9]', "web.topup_presets"),
    ('timezone = "Mars/Olympus"', "web.timezone"),
    ('session_hours = 0', "web.session_hours"),
    ('session_hours = 1000', "web.session_hours"),
    ('low_credit_tokens = -1', "web.low_credit_tokens"),
    ('secret_key = "secret!"', "web.secret_key"),
])
def test_bad_web_settings_name_the_key(tmp_path, web, key):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, MINIMAL + "[web]\n" + web + "\n")
    assert err.value.key == key, str(err.value)

from fractions import Fraction
from pathlib import Path

import pytest

from payg.adapters import config as cfg
from payg.domain import settings
from payg.errors import ConfigError
from tests.support import ROOT
from tests.support.configs import MINIMAL, load_text


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
                  + '[trade]\nowner = "kitchen"\ncapacity_wh = 5000\ntax_bps = 250\nvoucher_cache_s = 0\n')
    assert c.sockets[0].sell == settings.SellConfig(2)
    assert c.trade.voucher_cache_s == 0 and settings.TradeConfig().voucher_cache_s == 1.0
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
    ('{ sell_price_per_wh = 1 }', '[trade]\nvoucher_cache_s = 61\n', "trade.voucher_cache_s"),
    ('{ sell_price_per_wh = 1 }', '[trade]\nvoucher_cache_s = -0.5\n', "trade.voucher_cache_s"),
])
def test_bad_trade_settings_name_the_key(tmp_path, socket_trade, extra, key):
    text = MINIMAL.replace('relay = { kind = "simulated" }',
                           f'relay = {{ kind = "simulated" }}\ntrade = {socket_trade}')
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


ETHEREUM_LEDGER = ('[ledger]\nbackend = "ethereum"\nrpc_url = "http://127.0.0.1:8545"\nchain_id = 1\n'
                   'mnemonic_env = "M"\n')


@pytest.mark.parametrize("text, key, hint", [
    # a key that is not one: the closest known one of the same table
    (MINIMAL.replace('data_dir = "var"', 'data_dir = "var"\npoll_intervall_s = 1'), "controller.poll_intervall_s",
     "did you mean 'poll_interval_s'?"),
    (MINIMAL + '\n[web]\ntimzone = "UTC"\n', "web.timzone", "did you mean 'timezone'?"),  # optional, not given
    (MINIMAL + "\n[wbe]\nport = 5001\n", "wbe", "did you mean 'web'?"),
    (MINIMAL + "\n[tariff]\ntoken_per_wh = 2\n", "tariff.token_per_wh", "did you mean 'tokens_per_wh'?"),
    (MINIMAL + '\n[trade]\nownr = "kitchen"\n', "trade.ownr", "did you mean 'owner'?"),
    (MINIMAL.replace('backend = "mock"', 'backend = "mock"\nfinality = 2'), "ledger.finality",
     "did you mean 'finality_s'?"),
    (MINIMAL.replace('id = "kitchen"', 'id = "kitchen"\nnmae = "Kitchen"'), "sockets[0].nmae",
     "did you mean 'name'?"),
    (MINIMAL.replace("load_w = 800 }", "load_w = 800, voltage = 120 }"), "sockets[0].meter.voltage",
     "did you mean 'voltage_v'?"),
    (MINIMAL.replace('relay = { kind = "simulated" }', 'relay = { kind = "gpio", pin = 4, active_lo = true }'),
     "sockets[0].relay.active_lo", "did you mean 'active_low'?"),
    (MINIMAL + '[sockets.trade]\nsell_price_per_wh = 2\npear = "http://x"\n', "sockets[0].trade.pear",
     "did you mean 'peer'?"),
    # a required key written wrong: the missing key's error names the typo
    (MINIMAL.replace('data_dir = "var"', 'data_dr = "var"'), "controller.data_dir", "'data_dr' is set: a typo for "
     "'data_dir'?"),
    (MINIMAL.replace("load_w = 800", "lod_w = 800"), "sockets[0].meter.load_w", "'lod_w' is set: a typo for 'load_w'?"),
    (MINIMAL.replace("load_w = 800", "schedul = []"), "sockets[0].meter.load_w",
     "'schedul' is set: a typo for 'schedule'?"),
    (MINIMAL.replace('relay = { kind = "simulated" }', 'relay = { kind = "gpio", pni = 4 }'), "sockets[0].relay.pin",
     "'pni' is set: a typo for 'pin'?"),
    (MINIMAL.replace('[ledger]\nbackend = "mock"\n', ETHEREUM_LEDGER.replace("mnemonic_env", "mnemonic_evn")),
     "ledger.mnemonic_env", "'mnemonic_evn' is set: a typo for 'mnemonic_env'?"),
])
def test_a_key_typo_gets_did_you_mean(tmp_path, text, key, hint):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    assert err.value.key == key, str(err.value)
    assert hint in str(err.value), str(err.value)


@pytest.mark.parametrize("text, refused", [
    (MINIMAL.replace('[ledger]\nbackend = "mock"\n', ETHEREUM_LEDGER + 'mnemonik = "x"\n'), "mnemonic"),
    (MINIMAL + '\n[web]\nlandlord_pasword = "x"\n', "landlord_password"),
])
def test_a_key_that_is_refused_is_never_offered_as_a_known_key(tmp_path, text, refused):
    """The mnemonic and the password are looked for only to be refused: they never go in the file."""
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    message = str(err.value)
    known = message.split("known keys: ")[1].rstrip(")").split(", ")
    assert refused not in known and f"did you mean {refused!r}" not in message, message


def test_an_unknown_key_like_no_known_one_gets_no_guess(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, MINIMAL.replace('data_dir = "var"', 'data_dir = "var"\ncolour = "blue"'))
    assert err.value.key == "controller.colour"
    assert "did you mean" not in str(err.value) and "known keys: " in str(err.value)


@pytest.mark.parametrize("old, new, hint", [("[controller]", "[controler]", "'controler' is set"),
                                            ("[ledger]", "[ledgers]", "'ledgers' is set"),
                                            ("[[sockets]]", "[[socket]]", "'socket' is set")])
def test_a_misspelt_section_is_named(tmp_path, old, new, hint):
    with pytest.raises(ConfigError, match=hint):
        load_text(tmp_path, MINIMAL.replace(old, new))


def test_friendly_credit_periods_parse_in_the_controllers_zone_and_a_socket_may_opt_out(tmp_path):
    from datetime import date

    from payg.domain.friendly import FriendlyCredit

    c = load_text(tmp_path, MINIMAL)
    assert c.protections.friendly_credit == FriendlyCredit() and c.sockets[0].friendly_credit
    c = load_text(tmp_path, MINIMAL.replace('relay = { kind = "simulated" }',
                                            'relay = { kind = "simulated" }\nfriendly_credit = false')
                  + '[web]\ntimezone = "Europe/London"\n[protections.friendly_credit]\nhours = ["16:00-08:00"]\n'
                  'days = ["Saturday", "sunday"]\nholidays = ["2026-12-25"]\n')
    f = c.protections.friendly_credit
    assert (f.hours, f.days, f.holidays) == (((960, 480),), frozenset({5, 6}), frozenset({date(2026, 12, 25)}))
    assert str(f.tz) == "Europe/London" and not c.sockets[0].friendly_credit


@pytest.mark.parametrize("extra, key", [('hours = ["16-8"]', "protections.friendly_credit.hours"),
                                        ('days = ["someday"]', "protections.friendly_credit.days"),
                                        ('holidays = ["25.12.2026"]', "protections.friendly_credit.holidays"),
                                        ('hour = ["16:00-08:00"]', "protections.friendly_credit.hour")])
def test_bad_friendly_credit_settings_name_the_key(tmp_path, extra, key):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, MINIMAL + f"[protections.friendly_credit]\n{extra}\n")
    assert err.value.key == key, str(err.value)

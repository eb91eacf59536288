"""Settings are defined once, on their dataclass fields: the loader applies those defaults and bounds, and
docs/configuration.md is written from them (and is current)."""

from __future__ import annotations

import dataclasses
import tomllib
import typing

import pytest

from payg.adapters.config import reference
from payg.adapters.config.hub import parse as parse_hub
from payg.adapters.config.tables import Table, fill, read_key
from payg.domain import hub_settings, settings
from payg.domain.config_keys import setting, setting_of
from payg.errors import ConfigError
from tests.support.configs import MINIMAL, load_text

BUYING = MINIMAL.replace('relay = { kind = "simulated" }', 'relay = { kind = "simulated" }\ntrade = { peer = '
                         '"http://10.0.0.2:5000", supplier = "s", below_tokens = 1, escrow_wh = 1, '
                         'max_price_per_wh = 1 }')
HUB = '[hub]\ndata_dir = "var"\nlandlord_password_hash_env = "H"\n[mqtt]\nusername = "hub"\npassword_env = "P"\n'


def test_the_committed_reference_is_the_generated_one():
    assert reference.OUTPUT.read_text() == reference.render(), (
        f"docs/configuration.md is stale: run `{reference.COMMAND}` and commit it")
    assert reference.main(["--check"]) == 0


def _config_classes(cls: type, seen: set[type]) -> set[type]:
    """The dataclasses a config is made of, through unions and tuples."""
    for kind in typing.get_type_hints(cls).values():
        stack = [kind]
        while stack:
            k = stack.pop()
            stack.extend(typing.get_args(k))
            if isinstance(k, type) and dataclasses.is_dataclass(k) and k not in seen:
                seen.add(k)
                _config_classes(k, seen)
    return seen


def test_every_class_with_settings_is_in_the_reference():
    template = reference.TEMPLATE.read_text()
    hub = hub_settings.HubConfig
    classes = _config_classes(settings.Config, set()) | _config_classes(hub, {hub})
    with_settings = {c.__name__ for c in classes if any(setting_of(f) for f in dataclasses.fields(c))}
    assert with_settings >= {"ControllerConfig", "WebConfig", "ServerConfig", "MqttConfig", "HubConfig"}
    missing = sorted(n for n in with_settings if "{{ " + n not in template)
    assert not missing, f"add {{{{ Name }}}} for {missing} to {reference.TEMPLATE}"


def _defaults_hold(config: typing.Any) -> list[str]:
    """The fields of `config` whose loaded value is not the default its dataclass field states."""
    wrong = []
    for f in dataclasses.fields(config):
        rule = setting_of(f)
        if rule is None or rule.shown is not None or f.default is dataclasses.MISSING:
            continue
        if getattr(config, f.name) != f.default:
            wrong.append(f"{type(config).__name__}.{f.name}: loaded {getattr(config, f.name)!r}, field {f.default!r}")
    return wrong


def test_the_loader_applies_the_defaults_the_dataclasses_state(tmp_path):
    c = load_text(tmp_path, BUYING)
    hub = parse_hub(tomllib.loads(HUB), "hub.toml")
    configs = [c.controller, c.web, c.web.server, c.ledger, c.tariff, c.trade, c.codes, c.protections, c.mqtt,
               c.sockets[0], c.sockets[0].meter, c.sockets[0].relay, c.sockets[0].buy, hub, hub.server]
    assert [w for config in configs for w in _defaults_hold(config)] == []
    assert c.web.server == settings.ServerConfig() and c.codes == settings.CodesConfig()


def test_a_default_changed_on_the_field_is_the_default_loaded():
    @dataclasses.dataclass(frozen=True)
    class Codes(settings.CodesConfig):
        tokens_per_unit: int = setting(25, "another default", ge=1, le=10**9)

    assert fill(Table("f", "codes", {}), Codes).tokens_per_unit == 25


def _bounded(cls: type) -> list[tuple[str, object]]:
    """(field, a value just outside its bounds) for every int or float Setting with bounds."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, object]] = []
    for f in dataclasses.fields(cls):
        rule = setting_of(f)
        if rule is None or rule.by_hand or hints[f.name] not in (int, float):
            continue
        step = 1 if hints[f.name] is int else 0.5
        if rule.ge is not None:
            out.append((f.name, rule.ge - step))
        if rule.gt is not None:
            out.append((f.name, rule.gt))
        if rule.le is not None:
            out.append((f.name, rule.le + step))
    return out


@pytest.mark.parametrize("cls", [settings.ControllerConfig, settings.WebConfig, settings.ServerConfig,
                                 settings.MqttConfig, settings.TradeConfig, settings.CodesConfig,
                                 settings.ProtectionsConfig, hub_settings.HubConfig, settings.BuyConfig,
                                 settings.MockLedgerConfig, settings.EthereumLedgerConfig, settings.IotaLedgerConfig,
                                 settings.SimulatedMeterConfig, settings.ModbusMeterConfig, settings.GpioRelayConfig,
                                 settings.SocketConfig, settings.ConstantLoad, settings.ScheduleLoad,
                                 settings.RandomLoad])
def test_the_loader_checks_the_bounds_the_fields_state(cls):
    cases = _bounded(cls)
    assert cases
    for name, value in cases:
        with pytest.raises(ConfigError) as err:
            read_key(Table("c.toml", "t", {name: value}), cls, name)
        assert err.value.key == f"t.{name}" and repr(value) in str(err.value), str(err.value)


def test_a_note_in_the_prose_for_a_key_that_has_a_setting_is_refused():
    with pytest.raises(ValueError, match="its note belongs there"):
        reference.render("{{ CodesConfig\ntokens_per_unit: said twice\n}}\n")
    with pytest.raises(ValueError, match="no such settings class"):
        reference.render("{{ NoSuchConfig }}\n")
    no_setting = reference.render("{{ SimulatedMeterConfig: load }}\n")  # a field with no Setting: from its type
    assert "| `load` | table | required |" in no_setting

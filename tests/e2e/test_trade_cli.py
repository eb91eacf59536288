"""`payg trade ...` against a real controller process on the embedded default (mock ledger)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

from tests.support import free_port
from tests.support.cli import Controller, payg

CONFIG = """
[controller]
data_dir = "var"

[web]
port = {port}

[ledger]
backend = "mock"

[trade]
owner = "kitchen"
capacity_wh = 5000

[[sockets]]
id = "kitchen"
meter = {{ kind = "simulated", load_w = 100 }}
relay = {{ kind = "simulated" }}

[[sockets]]
id = "roof"
meter = {{ kind = "simulated", load_w = 100 }}
relay = {{ kind = "simulated" }}

[[sockets]]
id = "flat"
meter = {{ kind = "simulated", load_w = 100 }}
relay = {{ kind = "simulated" }}
"""


@pytest.fixture
def controller(tmp_path):
    port = free_port()
    config = tmp_path / "payg.toml"
    config.write_text(CONFIG.format(port=port))
    ctl = Controller(config, tmp_path, port)
    ctl.wait_ready()
    yield ctl
    assert ctl.stop() == 0


def trade(ctl, *args: str, ok: bool = True):
    done = payg("--config", str(ctl.config), "trade", *args, cwd=ctl.cwd)
    if ok:
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
    return done


def test_roles_adverts_and_a_buy_from_the_command_line(controller):
    info = trade(controller, "info")
    parties = {s: v["party"] for s, v in info["sockets"].items()}
    assert info["market"]["owner"] == parties["kitchen"]
    assert info["sockets"]["kitchen"]["role"] == "owner"
    trade(controller, "grant", "--socket", "kitchen", "--party", parties["roof"], "--role", "regulator")
    refused = trade(controller, "post", "--socket", "roof", "--energy-wh", "100", "--min-price", "5", ok=False)
    assert refused.returncode == 1 and "NotAuthorised" in refused.stderr
    # a regulator cannot also make itself producer; roof regulates, flat produces, kitchen is the owner
    trade(controller, "grant", "--socket", "roof", "--party", parties["flat"], "--role", "producer")
    advert = trade(controller, "post", "--socket", "flat", "--energy-wh", "300", "--min-price", "5")
    assert (advert["remaining_wh"], advert["price_per_wh"]) == (300, 5)
    too_big = trade(controller, "post", "--socket", "flat", "--energy-wh", "4701", "--min-price", "5", ok=False)
    assert "CapacityExceeded" in too_big.stderr
    assert [a["advert_id"] for a in trade(controller, "adverts")["adverts"]] == [advert["advert_id"]]
    funded = payg("--config", str(controller.config), "trade", "fund", "--socket", "kitchen", "--amount", "1000",
                  cwd=controller.cwd)
    assert funded.returncode == 0, funded.stderr
    refused = trade(controller, "buy", advert["advert_id"], "--socket", "kitchen", "--energy-wh", "10", ok=False)
    assert "NotAuthorised" in refused.stderr  # the owner holds no consumer role
    trade(controller, "grant", "--socket", "kitchen", "--party", parties["roof"], "--role", "none")
    assert trade(controller, "info")["sockets"]["roof"]["role"] == "none"


def test_channels_from_the_command_line(controller):
    info = trade(controller, "info")
    parties = {s: v["party"] for s, v in info["sockets"].items()}
    payg("--config", str(controller.config), "trade", "fund", "--socket", "roof", "--amount", "500",
         cwd=controller.cwd)
    incomplete = trade(controller, "open", "--socket", "roof", "--recipient", parties["flat"], ok=False)
    assert incomplete.returncode == 2 and "--escrow" in incomplete.stderr
    opened = trade(controller, "open", "--socket", "roof", "--recipient", parties["flat"], "--escrow", "200",
                   "--price", "2", "--hours", "1")
    assert (opened["direction"], opened["escrow"], opened["state"]) == ("out", 200, "open")
    listed = trade(controller, "channels")["channels"]
    assert [c["channel_id"] for c in listed] == [opened["channel_id"]]
    shown = trade(controller, "channel", opened["channel_id"])
    assert shown["ledger"]["sender"] == parties["roof"] and shown["ledger"]["recipient"] == parties["flat"]
    early = trade(controller, "reclaim", opened["channel_id"], ok=False)
    assert "ChannelNotExpired" in early.stderr
    not_ours = trade(controller, "close", opened["channel_id"], ok=False)
    assert "NotAuthorised" in not_ours.stderr  # this controller is the channel's sender


def test_a_forged_peer_voucher_is_refused_with_its_error_name(controller):
    url = f"http://127.0.0.1:{controller.port}"
    req = urllib.request.Request(url + "/api/peer/voucher", method="POST", headers={"Content-Type": "application/json"},
                                 data=json.dumps({"channel_id": "1", "voucher": {"channel_id": "1", "amount": 5,
                                                  "domain": "mock:x", "signature": "00"}}).encode())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 409
    assert json.load(refused.value)["error"] == "UnknownChannel"


def test_without_a_controller_the_cli_says_so(tmp_path):
    config = tmp_path / "payg.toml"
    config.write_text(CONFIG.format(port=free_port()))
    done = payg("--config", str(config), "trade", "adverts", cwd=tmp_path)
    assert done.returncode == 1 and "is not running (connection refused)" in done.stderr


def test_trade_actions_need_the_token_or_the_landlord_and_csrf(tmp_path):
    from payg import bootstrap as app
    from payg.adapters import config as cfg
    from payg.web import create_web
    from payg.webkit.security import WebSecrets
    from tests.support.web_beds import PASSWORD, PASSWORD_HASH, TOKEN, csrf_of

    path = tmp_path / "payg.toml"
    path.write_text(CONFIG.format(port=free_port()).replace('data_dir = "var"', f'data_dir = "{tmp_path}/var"'))
    config = cfg.load(path)
    rt = app.build(config)
    try:
        web = create_web(app.web_services(rt, WebSecrets("s" * 43, TOKEN, PASSWORD_HASH)))
        body = {"socket": "kitchen", "party": rt.trade.party_for("roof"), "role": "regulator"}
        stranger = web.app.test_client()
        assert stranger.post("/api/trade/roles", json=body).status_code == 401
        assert stranger.get("/api/trade/adverts").status_code == 401
        wrong = stranger.post("/api/trade/roles", json=body, headers={"Authorization": "Bearer " + "x" * 43})
        assert wrong.status_code == 401
        assert rt.trade.role_of(rt.trade.party_for("roof")) == "none"

        landlord = web.app.test_client()
        landlord.post("/landlord/login", data={"password": PASSWORD, "csrf_token": csrf_of(landlord)})
        no_csrf = landlord.post("/api/trade/roles", json=body)
        assert no_csrf.status_code == 400 and "CSRF" in no_csrf.get_json()["message"]
        assert rt.trade.role_of(rt.trade.party_for("roof")) == "none"
        ok = landlord.post("/api/trade/roles", json=body, headers={"X-CSRFToken": csrf_of(landlord)})
        assert ok.status_code == 200 and ok.get_json()["role"] == "regulator"

        cli = web.app.test_client()
        cli.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
        bad = cli.post("/api/trade/adverts", json={"socket": "flat", "energy_wh": -3, "min_price_per_wh": 1})
        assert bad.status_code == 400
        unknown = cli.post("/api/trade/adverts", json={"socket": "nope", "energy_wh": 3, "min_price_per_wh": 1})
        assert unknown.status_code == 404 and unknown.get_json()["error"] == "UnknownSocket"
    finally:
        rt.close()


@pytest.mark.slow
def test_deploy_then_trade_on_ethereum_through_the_controller(tmp_path, monkeypatch):
    from eth_account import Account

    from tests.support.cli import ETH_MNEMONIC, example
    from tests.support.evm_node import EvmNode

    node = EvmNode()
    node.start()
    try:
        config = example("ethereum.example.toml", tmp_path, rpc_url=f'"{node.rpc_url}"',
                         chain_id=str(node.chain_id), confirmations="2")
        config.write_text(config.read_text() + '\n[trade]\nowner = "kitchen"\ncapacity_wh = 2000\n')
        monkeypatch.setenv("PAYG_MNEMONIC", ETH_MNEMONIC)
        Account.enable_unaudited_hdwallet_features()
        owner = Account.from_mnemonic(ETH_MNEMONIC, account_path="m/44'/60'/0'/1/0").address
        refused = payg("--config", str(config), "trade", "deploy", cwd=tmp_path)
        assert refused.returncode == 1 and "deployment failed" in refused.stderr  # no ether for gas yet
        node.send_value(owner, 10**18)
        done = payg("--config", str(config), "trade", "deploy", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert owner in done.stdout
        lines = [ln for ln in done.stdout.splitlines() if ln.endswith('"') and "_contract = " in ln]
        assert len(lines) == 2
        config.write_text(config.read_text() + "\n".join(lines) + "\n")
        ctl = Controller(config, tmp_path, int(re.search(r"(?m)^port = (\d+)", config.read_text()).group(1)))
        try:
            ctl.wait_ready()
            info = trade(ctl, "info")
            assert info["backend"] == "ethereum" and info["market"]["owner"] == owner
            assert info["market"]["capacity_wh"] == 2000
            assert info["sockets"]["kitchen"] == {"party": owner, "role": "owner"}
        finally:
            assert ctl.stop() == 0, ctl.output()
    finally:
        node.stop()

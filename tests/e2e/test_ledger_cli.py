"""The example configurations, run as they ship, against local nodes: a real EVM behind JSON-RPC and
the fake IOTA GraphQL node. Only the node URL (and the test chain's id), the data directory, the
port and the poll intervals are changed; the mnemonic comes from the environment, as documented.
"""

from __future__ import annotations

import json
import re
import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support import wait_until
from tests.support.cli import (
    ETH_MNEMONIC,
    IOTA_MNEMONIC,
    Controller,
    example,
    journal_rows,
    payg,
    set_key,
    socket_state,
)


def health(port: int) -> dict:
    """/healthz whatever its status: a loaded machine may report a stalled tick (503) for a moment."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        return json.load(exc)


def port_of(config: Path) -> int:
    return int(re.search(r"(?m)^port = (\d+)", config.read_text()).group(1))


def address_of(config: Path, socket_id: str, cwd: Path, amount: int = 5) -> tuple[str, str]:
    result = payg("address", "--socket", socket_id, "--amount", str(amount), "--config", str(config), cwd=cwd)
    assert result.returncode == 0, result.stderr
    fields = dict(re.findall(r"(?m)^(\w+):\s+(\S+)", result.stdout))
    return fields["address"], fields["uri"]


def run_until_credited(config: Path, tmp_path: Path, pay, tokens: int, socket_id: str = "kitchen"):
    port = port_of(config)
    controller = Controller(config, tmp_path, port)
    try:
        controller.wait_ready()
        wait_until(lambda: health(port)["ledger"] == "ok", 30, "the first deposit poll")
        state = socket_state(port, socket_id)
        assert state["relay"] == "off" and state["balance"] == 0
        pay(state["topup"]["address"])
        wait_until(lambda: socket_state(port, socket_id)["balance"] > 0, 30, "the deposit to be credited")
        # The deposit watcher credits; the control loop's next tick switches the relay: on a loaded machine the API
        # can answer in between (balance > 0, relay still off).
        state = wait_until(lambda: (s := socket_state(port, socket_id))["relay"] == "on" and s, 30,
                           "the relay to switch on")
        assert 0 < state["balance"] <= tokens
        return state
    finally:
        assert controller.stop() == 0, controller.output()


@pytest.fixture
def evm():
    from tests.support.evm_node import EvmNode

    node = EvmNode()
    node.start()
    yield node
    node.stop()


def ethereum_example(node, tmp_path, monkeypatch) -> tuple[Path, str, str]:
    """The Ethereum example pointed at `node` with 2 confirmations; (config, kitchen's address, its URI)."""
    config = example("ethereum.example.toml", tmp_path, rpc_url=f'"{node.rpc_url}"',
                     chain_id=str(node.chain_id), confirmations="2")
    monkeypatch.setenv("PAYG_MNEMONIC", ETH_MNEMONIC)
    return (config, *address_of(config, "kitchen", tmp_path))


def test_the_ethereum_example_runs_against_a_node(tmp_path, monkeypatch, evm):
    config, address, uri = ethereum_example(evm, tmp_path, monkeypatch)
    assert uri == f"ethereum:{address}@{evm.chain_id}?value={5 * 10**12}"
    paid = 40 * 10**12 + 123  # 40 tokens and 123 wei

    def pay(topup_address: str) -> None:
        assert topup_address == address
        evm.send_value(address, paid)
        evm.mine(1)  # the second confirmation

    run_until_credited(config, tmp_path, pay, 40)
    rows = journal_rows(tmp_path / "data", "SELECT socket_id, units, tokens FROM received_deposits")
    assert rows == [("kitchen", str(paid), 40)]
    assert journal_rows(tmp_path / "data", "SELECT units FROM deposit_carry WHERE socket_id = 'kitchen'") \
        == [("123",)]


def test_the_iota_example_runs_against_a_node(tmp_path, monkeypatch):
    from tests.support.ledger_beds_iota import GAS_NANOS, PAYER, FakeIotaNode

    node = FakeIotaNode(tmp_path)
    try:
        config = example("iota.example.toml", tmp_path, graphql_url=f'"{node.url}"')
        monkeypatch.setenv("PAYG_MNEMONIC", IOTA_MNEMONIC)
        address, _ = address_of(config, "kitchen", tmp_path)
        assert re.fullmatch(r"0x[0-9a-f]{64}", address)
        paid = 25 * 10**6 + 999  # 25 tokens and 999 nanos

        def pay(topup_address: str) -> None:
            assert topup_address == address
            node.add_transaction(PAYER, [{"owner": PAYER, "amount": -(paid + GAS_NANOS)},
                                         {"owner": address, "amount": paid}])
            node.checkpoint()

        run_until_credited(config, tmp_path, pay, 25)
        rows = journal_rows(tmp_path / "data", "SELECT socket_id, units, tokens FROM received_deposits")
        assert rows == [("kitchen", str(paid), 25)]
    finally:
        node.stop()


def test_a_missing_mnemonic_is_a_configuration_error(tmp_path, monkeypatch):
    config = example("iota.example.toml", tmp_path, graphql_url='"http://127.0.0.1:9"')
    monkeypatch.delenv("PAYG_MNEMONIC", raising=False)
    for args in (["address", "--socket", "kitchen"], ["run"]):
        result = payg(*args, "--config", str(config), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "ledger.mnemonic_env" in result.stderr + result.stdout
        assert "PAYG_MNEMONIC" in result.stderr + result.stdout


def test_a_mnemonic_file_must_be_readable_by_its_owner_only(tmp_path):
    secret = tmp_path / "mnemonic"
    secret.write_text(IOTA_MNEMONIC + "\n")
    secret.chmod(0o644)
    text = example("iota.example.toml", tmp_path, graphql_url='"http://127.0.0.1:9"').read_text()
    config = tmp_path / "file.toml"
    config.write_text(set_key(text, "mnemonic_env", '"PAYG_UNUSED"').replace(
        'mnemonic_env = "PAYG_UNUSED"', f'mnemonic_file = "{secret}"'))
    result = payg("address", "--socket", "kitchen", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2 and "chmod 600" in result.stderr and "0644" in result.stderr
    assert "abandon" not in result.stderr  # the secret is not echoed
    secret.chmod(stat.S_IRUSR | stat.S_IWUSR)
    result = payg("address", "--socket", "kitchen", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"(?m)^address: 0x[0-9a-f]{64}$", result.stdout)


def test_a_mnemonic_in_the_configuration_file_is_refused(tmp_path):
    text = example("ethereum.example.toml", tmp_path).read_text()
    config = tmp_path / "leaky.toml"
    config.write_text(text.replace('mnemonic_env = "PAYG_MNEMONIC"', f'mnemonic = "{ETH_MNEMONIC}"'))
    result = payg("address", "--socket", "kitchen", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2 and "ledger.mnemonic" in result.stderr
    assert "junk" not in result.stderr  # the secret is not echoed


def test_addresses_keep_their_socket_when_the_configuration_is_reordered(tmp_path, monkeypatch):
    monkeypatch.setenv("PAYG_MNEMONIC", ETH_MNEMONIC)
    config = example("ethereum.example.toml", tmp_path)
    before = {s: address_of(config, s, tmp_path)[0] for s in ("kitchen", "office")}
    text = config.read_text()
    head, _, rest = text.partition("[[sockets]]")
    kitchen, _, office = rest.partition("[[sockets]]")
    config.write_text(head + "[[sockets]]" + office + "\n[[sockets]]" + kitchen)
    assert config.read_text().index('id = "office"') < config.read_text().index('id = "kitchen"')
    after = {s: address_of(config, s, tmp_path)[0] for s in ("kitchen", "office")}
    assert after == before and before["kitchen"] != before["office"]


def test_deposit_is_refused_on_a_real_ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("PAYG_MNEMONIC", ETH_MNEMONIC)
    config = example("ethereum.example.toml", tmp_path)
    result = payg("deposit", "--socket", "kitchen", "--amount", "5", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2 and "mock ledger only" in result.stderr and "payg address" in result.stderr


@pytest.mark.parametrize("backend", ["ethereum", "iota"])
def test_the_api_topup_fields_come_from_the_configured_backend(tmp_path, monkeypatch, backend):
    monkeypatch.setenv("PAYG_MNEMONIC", ETH_MNEMONIC if backend == "ethereum" else IOTA_MNEMONIC)
    url_key = {"ethereum": "rpc_url", "iota": "graphql_url"}[backend]
    config = example(f"{backend}.example.toml", tmp_path, **{url_key: '"http://127.0.0.1:9"'})  # no node at all
    address, _ = address_of(config, "office", tmp_path)
    port = port_of(config)
    controller = Controller(config, tmp_path, port)
    try:
        controller.wait_ready()
        topup = socket_state(port, "office")["topup"]
        assert topup["backend"] == backend and topup["address"] == address
        assert topup["units_per_token"] == {"ethereum": 10**12, "iota": 10**6}[backend]
        assert address.lower() in topup["uri"].lower()
        wait_until(lambda: health(port)["ledger"] == "unavailable", 30, "the ledger error")
        assert "127.0.0.1:9" in health(port)["ledger_error"]
    finally:
        assert controller.stop() == 0, controller.output()


@pytest.mark.slow
def test_a_deep_reorganisation_stops_crediting_until_an_operator_moves_the_cursor(tmp_path, monkeypatch, evm):
    node = evm  # a real EVM; snapshots make the reorganisation
    config, address, _ = ethereum_example(node, tmp_path, monkeypatch)
    before_payment = node.snapshot()

    def pay(_address: str) -> None:
        node.send_value(address, 30 * 10**12)
        node.mine(3)

    run_until_credited(config, tmp_path, pay, 30)
    shown = payg("cursor", "--config", str(config), cwd=tmp_path)
    number, block_hash = re.search(r"deposits:ethereum: (\d+):(0x[0-9a-f]{64})", shown.stdout).groups()
    assert node.block_hash(int(number)) == block_hash

    # Another history replaces the credited payment's blocks: deeper than the 2 confirmations.
    node.revert(before_payment)
    node.send_value(node.accounts[5], 1)  # something else, so the blocks differ
    node.mine(6)
    assert node.block_hash(int(number)) != block_hash
    port = port_of(config)
    controller = Controller(config, tmp_path, port)
    try:
        controller.wait_ready()
        wait_until(lambda: health(port)["ledger"] == "alarm", 30, "the reorganisation alarm")
        assert f"block {number}" in health(port)["ledger_error"]
        node.send_value(address, 7 * 10**12)  # paid on the new chain: waits for the operator
        node.mine(2)
        before = socket_state(port, "kitchen")["balance"]  # metering and billing go on meanwhile
        wait_until(lambda: socket_state(port, "kitchen")["balance"] < before, 30, "the kitchen to be billed")
        moved = payg("cursor", "--set", "1:0x00", "--config", str(config), cwd=tmp_path)
        assert moved.returncode == 1 and "another controller" in moved.stderr  # not while it runs
    finally:
        assert controller.stop() == 0, controller.output()
    credited = journal_rows(tmp_path / "data", "SELECT tokens FROM received_deposits")
    assert credited == [(30,)]

    # The operator checks the chain, then moves the cursor back to a block of the current chain.
    back = 0  # genesis: older than anything the reorganisation touched
    moved = payg("cursor", "--set", f"{back}:{node.block_hash(back)}", "--config", str(config), cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr
    controller = Controller(config, tmp_path, port)
    try:
        controller.wait_ready()
        wait_until(lambda: len(journal_rows(tmp_path / "data", "SELECT tokens FROM received_deposits")) == 2,
                   30, "the new payment to be credited")
        assert health(port)["ledger"] == "ok"
    finally:
        assert controller.stop() == 0, controller.output()
    assert sorted(journal_rows(tmp_path / "data", "SELECT tokens FROM received_deposits")) == [(7,), (30,)]


def test_an_iota_cursor_from_another_network_stops_the_controller_with_exit_2(tmp_path, monkeypatch):
    from tests.support.ledger_beds_iota import FakeIotaNode

    node = FakeIotaNode(tmp_path)
    try:
        config = example("iota.example.toml", tmp_path, graphql_url=f'"{node.url}"')
        monkeypatch.setenv("PAYG_MNEMONIC", IOTA_MNEMONIC)
        port = port_of(config)
        controller = Controller(config, tmp_path, port)
        try:
            controller.wait_ready()
            wait_until(lambda: health(port)["ledger"] == "ok", 30, "the first deposit poll")
        finally:
            assert controller.stop() == 0, controller.output()
        cursor = payg("cursor", "--config", str(config), cwd=tmp_path)
        checkpoint, chain = re.search(r"deposits:iota: (\d+)@([0-9a-f]+)", cursor.stdout).groups()
        node.control("chain_id", {"chain_id": "6364aad5"})  # the service now answers for another network
        result = payg("run", "--config", str(config), cwd=tmp_path, timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"chain 6364aad5, but the deposit cursor (checkpoint {checkpoint}) was read from chain {chain}" \
            in result.stderr
        assert "payg cursor --set <checkpoint>@6364aad5" in result.stderr
        assert journal_rows(tmp_path / "data", "SELECT COUNT(*) FROM received_deposits") == [(0,)]
    finally:
        node.stop()

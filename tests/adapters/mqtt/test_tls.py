"""[mqtt] tls_ca_file: the broker's certificate checked against the configured CA, with a real Mosquitto
TLS listener and certificates made by Debian's openssl for 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from payg.adapters.mqtt.acl import mosquitto_acl
from tests.support import free_port, wait_until
from tests.support.mosquitto import Broker
from tests.support.mqtt_beds import PASSWORDS, Listener


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=directory)
    return directory


def server_cert(ca: Path, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "san.cnf").write_text("subjectAltName = IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr", cwd=directory)
    openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca / "ca.pem"), "-CAkey", str(ca / "ca.key"),
            "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.pem", cwd=directory)
    return directory / "server.pem", directory / "server.key"


@pytest.fixture
def tls_broker(tmp_path):
    if shutil.which("openssl") is None:
        pytest.fail("Debian's openssl is not installed (apt-get install openssl; .ci/run does it)")
    ca = make_ca(tmp_path / "ca", "payg test CA")
    cert, key = server_cert(ca, tmp_path / "server")
    tls_port = free_port()
    broker = Broker(tmp_path / "broker", PASSWORDS, mosquitto_acl("payg", {"home": "ctl-home"}, ["landlord"]),
                    extra_conf=(f"listener {tls_port} 127.0.0.1", f"cafile {ca / 'ca.pem'}", f"certfile {cert}",
                                f"keyfile {key}")).start()
    broker.tls_port = tls_port
    broker.ca = ca / "ca.pem"
    yield broker
    broker.stop()


def test_a_controller_talks_tls_to_a_broker_its_ca_signed(tls_broker, controllers, tmp_path):
    ha = Listener(tls_broker.port, topics=("payg/home/#",))  # on the broker's plain listener
    try:
        c = controllers(("kitchen",), port=tls_broker.tls_port, mqtt_extra=f'tls_ca_file = "{tls_broker.ca}"')
        c.driver.run_ticks(2)
        wait_until(lambda: ha.last_json("payg/home/kitchen/state"), 10, "the state, sent over TLS")
        assert c.bridge.conn.tls_ca_file == tls_broker.ca and c.bridge.conn.port == tls_broker.tls_port
    finally:
        ha.close()


def test_a_broker_with_a_certificate_from_another_ca_is_refused(tls_broker, controllers, tmp_path):
    other = make_ca(tmp_path / "other-ca", "someone else")
    c = controllers(("kitchen",), port=tls_broker.tls_port, mqtt_extra=f'tls_ca_file = "{other / "ca.pem"}"',
                    wait_online=False)
    c.rt.ledger.pay("kitchen", 5)
    c.driver.run_for(2)
    assert [e.kind for e in c.rt.journal.all_entries("kitchen")][:1] == ["deposit"]  # billing goes on
    assert c.rt.relays["kitchen"].is_closed()
    assert not c.bridge.online.wait(2) and c.bridge.status()["connected"] is False

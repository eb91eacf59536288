"""MockLedger: an in-process ledger in its own SQLite file, for running and testing without keys.

It behaves like a real ledger to the deposit watcher: every payment gets an
id, becomes final `finality_s` after it was made, and is listed, oldest
first, after a cursor (the sequence number of the last payment listed).
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from ledgers.common import AddressBook, payment_units
from ledgers.mock.store import MockFile
from payg.errors import LedgerUnavailable
from payg.ports import Clock, Deposit

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    deposit_id TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    made_at REAL NOT NULL
);
"""

URI_SCHEME = "payg-mock"


def mock_address(socket_id: str) -> str:
    return "mock1" + hashlib.sha256(b"payg-mock-address:" + socket_id.encode()).hexdigest()[:40]


class MockLedger(AddressBook):
    name = "mock"
    units_per_token = 1  # the mock ledger counts in tokens

    def __init__(self, path: str | Path, clock: Clock, socket_ids: list[str], finality_s: float = 0.0):
        self.path = Path(path)
        self.clock = clock
        self.finality_s = finality_s
        super().__init__({socket_id: mock_address(socket_id) for socket_id in socket_ids})
        self._offline = False
        self._file = MockFile(self.path, SCHEMA)

    def close(self) -> None:
        self._file.close()

    def set_offline(self, offline: bool) -> None:
        """Simulate a node outage: while offline, listing deposits raises LedgerUnavailable."""
        self._offline = offline

    def payment_uri(self, socket_id: str, amount: int | None) -> str:
        uri = f"{URI_SCHEME}:{self.address_for(socket_id)}"
        return uri if amount is None else f"{uri}?amount={payment_units(amount, self.units_per_token)}"

    def pay(self, socket_id: str, amount: int) -> str:
        """Pay `amount` tokens into a socket's address; returns the deposit id."""
        return self.pay_to(self.address_for(socket_id), amount)

    def pay_to(self, address: str, amount: int) -> str:
        payment_units(amount, self.units_per_token)
        deposit_id = "mock-" + uuid.uuid4().hex
        with self._file.transaction() as c:
            c.execute("INSERT INTO payments (deposit_id, address, amount, made_at) VALUES (?, ?, ?, ?)",
                      (deposit_id, address, amount, self.clock.now()))
        return deposit_id

    def deposits_since(self, cursor: str | None) -> tuple[list[Deposit], str | None]:
        if self._offline:
            raise LedgerUnavailable(f"mock ledger {self.path}: offline (simulated outage)")
        after = int(cursor) if cursor else 0
        rows = self._file.query("SELECT seq, deposit_id, address, amount, made_at FROM payments WHERE seq > ?"
                                " ORDER BY seq LIMIT 1000", (after,))
        now = self.clock.now()
        deposits = []
        last = after
        for seq, deposit_id, address, amount, made_at in rows:
            if made_at + self.finality_s > now:
                break  # not final yet; later ones wait behind it to keep the cursor simple
            last = seq
            socket_id = self.socket_at(address)
            if socket_id is not None:
                deposits.append(Deposit(deposit_id, socket_id, amount, made_at + self.finality_s))
        return deposits, (str(last) if last else cursor)

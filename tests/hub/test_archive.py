"""The hub's fleet history (payg/adapters/fleet_archive.py) on real databases: a SQLite file, and a PostgreSQL started
for this module (tests/support/postgres.py), a fresh database per test. The clock is virtual; the writer is
driven by `flush()` (its own period is set to an hour, so nothing is written behind a test's back)."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable, Iterator

import pytest

from payg.adapters import fleet_archive_sql as archive_sql
from payg.adapters.clocks import ManualClock
from payg.adapters.fleet_archive import ArchiveError, FleetArchive, FleetDay, SocketDay
from tests.support.postgres import BIN, NO_POSTGRES, Postgres

DAY1 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()  # 00:00 UTC
HOUR = 3600.0


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    if BIN is None:
        pytest.skip(NO_POSTGRES)
    with Postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub-history.sqlite'}"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(DAY1 + 10 * HOUR)


@pytest.fixture
def open_archive(clock) -> Iterator[Callable[..., FleetArchive]]:
    started: list[FleetArchive] = []

    def open_(url: str, **kwargs) -> FleetArchive:
        archive = FleetArchive(url, clock, flush_s=kwargs.pop("flush_s", 3600.0), retry_s=kwargs.pop("retry_s", 0.05),
                               **kwargs)
        archive.start()
        started.append(archive)
        return archive

    yield open_
    for archive in started:
        archive.stop()


def query(url: str, statement: str) -> list[tuple]:
    if url.startswith("sqlite:"):
        with sqlite3.connect(url[len("sqlite:///"):]) as conn:
            return conn.execute(statement).fetchall()
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(statement).fetchall()


def state(at: float, energy_wh: float | None, balance: int, currency: str | None = "GBP") -> dict:
    return {"name": "Kitchen", "balance": balance, "balance_tokens": balance, "relay": "on", "power_w": 450.0,
            "voltage_v": 230.0, "current_a": 1.9, "energy_wh": energy_wh, "meter": "ok", "override": None,
            "credit_exhausted": False, "currency": currency, "at": at}


def event(n: int, kind: str, at: float, socket: str | None = "kitchen", controller: str = "flat-1", **extra) -> dict:
    return {"id": f"{controller}:e{n}", "seq": n, "controller": controller, "socket": socket, "kind": kind, "at": at,
            **extra}


def test_events_are_kept_once_by_id_however_often_they_come(url, open_archive, clock):
    archive = open_archive(url)
    credit = event(1, "credited", DAY1 + 9 * HOUR, entry="deposit", amount=500, key="k1", memo="cash")
    archive.event("flat-1", credit)
    archive.event("flat-1", credit)  # redelivered at QoS 1
    archive.event("flat-1", event(2, "low_credit", DAY1 + 9.5 * HOUR))
    archive.event("flat-1", event(3, "credited", DAY1 + 9.6 * HOUR, entry="credit", amount=300))
    assert archive.flush()
    assert archive.status()["written_events"] == 3

    again = open_archive(url)  # a hub restarted, the controller replaying from an older seq
    again.event("flat-1", credit)
    again.event("flat-1", event(3, "credited", DAY1 + 9.6 * HOUR, entry="credit", amount=300))
    assert again.flush()
    assert again.status()["written_events"] == 0
    assert query(url, "SELECT id, seq, kind, amount FROM hub_events ORDER BY seq") == [
        ("flat-1:e1", 1, "credited", 500), ("flat-1:e2", 2, "low_credit", None), ("flat-1:e3", 3, "credited", 300)]
    assert again.socket_days("flat-1", "kitchen") == [SocketDay("2026-03-01", 0, 800, None, None)]


def test_a_day_across_utc_midnight_from_states_and_top_ups(url, open_archive, clock):
    archive = open_archive(url)
    t0 = DAY1 + 24 * HOUR - 120  # 23:58:00 on March 1st
    counter, balance = 10_000.0, 5_000
    for i in range(25):  # every 10 s to 00:02:00 on March 2nd
        at = t0 + 10 * i
        archive.state("flat-1", "kitchen", state(at, counter, balance))
        archive.state("flat-1", "hall", state(at, 7.0, 42, None))  # a counter that does not move
        if i == 9:
            archive.event("flat-1", event(1, "credited", at + 1, entry="deposit", amount=1_000))
            balance += 1_000
        if i == 20:
            archive.event("flat-1", event(2, "credited", at + 1, entry="credit", amount=250))
            archive.event("flat-1", event(3, "low_credit", at + 2))
            archive.event("flat-2", event(1, "credited", at + 3, controller="flat-2", amount=99))
            balance += 250
        counter += 1.25
        balance -= 3
    clock.set(DAY1 + 24 * HOUR + 300)
    assert archive.flush()
    # 12 states on March 1st (11 rises of 1.25 Wh), 13 on March 2nd (13 rises, the first from 23:59:50)
    assert archive.socket_days("flat-1", "kitchen") == [
        SocketDay("2026-03-01", 14, 1_000, 5_000 + 1_000 - 3 * 11, "GBP"),  # 13.75 Wh
        SocketDay("2026-03-02", 16, 250, 5_000 + 1_250 - 3 * 24, "GBP"),   # 16.25 Wh
    ]
    assert archive.socket_days("flat-1", "hall") == [SocketDay("2026-03-01", 0, 0, 42, None),
                                                     SocketDay("2026-03-02", 0, 0, 42, None)]
    assert archive.socket_days("flat-1", "kitchen", days=1) == [SocketDay("2026-03-02", 16, 250, 6_178, "GBP")]
    assert archive.socket_days("flat-9", "kitchen") == []


def test_a_restarted_archive_continues_the_day_from_the_database(url, open_archive, clock):
    first = open_archive(url)
    for i, counter in enumerate((500.0, 510.0, 520.0)):
        first.state("flat-1", "kitchen", state(DAY1 + 10 * HOUR + i, counter, 900 - i))
    first.event("flat-1", event(1, "credited", DAY1 + 10 * HOUR, amount=100))
    first.stop()  # no flush: the stop writes what is pending

    second = open_archive(url)  # the meter counted 10 Wh while no hub listened
    for i, counter in enumerate((530.0, 545.5)):
        second.state("flat-1", "kitchen", state(DAY1 + 11 * HOUR + i, counter, 700 - i))
    second.event("flat-1", event(2, "credited", DAY1 + 11 * HOUR, amount=50))
    assert second.flush()
    assert second.socket_days("flat-1", "kitchen") == [SocketDay("2026-03-01", 46, 150, 699, "GBP")]  # 45.5 Wh


def test_a_counter_going_backwards_adds_nothing(url, open_archive, clock):
    first = open_archive(url)
    for i, counter in enumerate((1_000.0, 1_010.0, 3.0, 8.0)):  # the meter reset to 0 between 1,010 and 3
        first.state("flat-1", "kitchen", state(DAY1 + 10 * HOUR + i, counter, 100))
    assert first.flush()
    first.stop()
    second = open_archive(url)
    for i, counter in enumerate((2.0, 6.0)):  # and again while no hub listened: 8 -> 2
        second.state("flat-1", "kitchen", state(DAY1 + 11 * HOUR + i, counter, 100))
    assert second.flush()
    assert second.socket_days("flat-1", "kitchen")[0].energy_wh == 10 + 5 + 4


def test_fleet_days_add_up_the_sockets_of_every_controller(url, open_archive, clock):
    archive = open_archive(url)
    figures = {("flat-1", "kitchen"): (100, 40), ("flat-1", "hall"): (200, 0), ("flat-2", "kitchen"): (300, 25)}
    for day in range(3):
        for n, ((controller, socket), (start, used)) in enumerate(figures.items()):
            at = DAY1 + day * 24 * HOUR + 12 * HOUR
            archive.state(controller, socket, state(at, start + day * 100, 10))
            archive.state(controller, socket, state(at + 60, start + day * 100 + used, 10))
            archive.event(controller, event(10 * day + n, "credited", at, socket, controller, amount=day + 1))
    clock.set(DAY1 + 2 * 24 * HOUR + 13 * HOUR)
    assert archive.flush()
    # each day: 65 Wh used, 3 top-ups of day + 1; from the second day on each socket also rose 100 - used
    # between its last state of the day before and its first of the day
    assert archive.fleet_days() == [FleetDay("2026-03-01", 3, 65, 3),
                                    FleetDay("2026-03-02", 3, 65 + 235, 6),
                                    FleetDay("2026-03-03", 3, 65 + 235, 9)]
    assert archive.fleet_days(days=2) == archive.fleet_days()[1:]


def test_postgresql_down_and_back_loses_nothing_and_writes_nothing_twice(postgres, open_archive, clock, caplog):
    caplog.set_level(logging.INFO, logger="payg.hub.archive")
    url = postgres.create_database()
    archive = open_archive(url)
    counter, credited, n = 0.0, 0, 0

    def traffic(rounds: int) -> None:
        nonlocal counter, credited, n
        for _ in range(rounds):
            n += 1
            clock.advance(10)
            counter += 2.5
            archive.state("flat-1", "kitchen", state(clock.now(), counter, 1_000 + n))
            archive.event("flat-1", event(n, "credited", clock.now(), amount=n))
            credited += n

    traffic(20)
    assert archive.flush()
    postgres.stop()
    try:
        traffic(30)
        assert not archive.flush(timeout_s=0.5)
        down = archive.status()
        assert (down["connected"], down["pending_events"], down["pending_days"]) == (False, 30, 1)
        assert down["last_error"]
        traffic(30)  # while the writer keeps retrying
    finally:
        postgres.start()
    assert archive.flush()
    assert archive.status() | {"last_error": None} == {
        "backend": "postgresql", "connected": True, "pending_events": 0, "pending_days": 0, "written_events": 80,
        "dropped_events": 0, "last_error": None}
    assert query(url, "SELECT COUNT(*), COUNT(DISTINCT id), MIN(seq), MAX(seq) FROM hub_events") == [(80, 80, 1, 80)]
    # 79 rises of 2.5 Wh (the first state has no earlier counter)
    assert archive.socket_days("flat-1", "kitchen") == [SocketDay("2026-03-01", 198, credited, 1_080, "GBP")]
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "payg.hub.archive"]
    assert [m for m in messages if "unavailable" in m[1]] == [messages[-2]]
    assert messages[-2][0] == logging.WARNING
    assert messages[-1][0] == logging.INFO and "is back" in messages[-1][1]


def test_beyond_max_pending_events_the_oldest_are_dropped_and_counted(tmp_path, clock, caplog):
    archive = FleetArchive(f"sqlite:///{tmp_path / 'h.sqlite'}", clock, flush_s=3600, max_pending_events=3)
    for n in range(1, 6):  # not started: nothing is written yet
        archive.event("flat-1", event(n, "credited", DAY1 + 10 * HOUR, amount=n))
    assert (archive.status()["pending_events"], archive.status()["dropped_events"]) == (3, 2)
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    archive.start()
    try:
        assert archive.flush()
        assert archive.socket_days("flat-1", "kitchen")[0].topups == 3 + 4 + 5
    finally:
        archive.stop()


def test_the_migrations_are_recorded_and_applied_once(url, open_archive):
    archive = open_archive(url)
    assert archive.flush()
    assert archive.status()["connected"]
    assert [row[0] for row in query(url, "SELECT migration_id FROM _yoyo_migration")] == ["0001_fleet_history"]
    assert archive_sql.migrate(archive_sql.parse_url(url)) == []
    again = open_archive(url)
    assert again.flush()
    assert len(query(url, "SELECT migration_id FROM _yoyo_migration")) == 1


@pytest.mark.parametrize("bad", ["mysql://u@h/db", "hub-history.sqlite", "sqlite:///relative/h.sqlite",
                                 "postgres://u@h/db", ""])
def test_a_url_of_another_kind_is_an_archive_error(bad, clock):
    with pytest.raises(ArchiveError, match="sqlite:////abs/path"):
        FleetArchive(bad, clock)


def test_a_database_that_is_not_there_is_an_error_on_read_and_pending_in_status(tmp_path, clock):
    archive = FleetArchive(f"sqlite:///{tmp_path / 'missing' / 'h.sqlite'}", clock, flush_s=3600, retry_s=0.05)
    archive.start()
    try:
        archive.state("flat-1", "kitchen", state(DAY1 + 10 * HOUR, 1.0, 5))
        assert not archive.flush(timeout_s=0.3)
        status = archive.status()
        assert (status["connected"], status["pending_days"]) == (False, 1) and status["last_error"]
        with pytest.raises(ArchiveError):
            archive.socket_days("flat-1", "kitchen")
    finally:
        archive.stop(timeout_s=1)


def test_a_batch_written_again_after_its_commit_answer_was_lost_is_applied_once(url, open_archive):
    assert open_archive(url).flush()  # the schema
    target = archive_sql.parse_url(url)
    row = ("flat-1:e1", "flat-1", 1, "kitchen", "credited", DAY1 + HOUR, "2026-03-01", 70, "{}")
    day = archive_sql.DayRow("flat-1", "kitchen", "2026-03-01", 12_500, 400, "EUR", DAY1 + HOUR, DAY1 + HOUR, 812.5)
    with archive_sql.connected(target) as db:
        assert archive_sql.write_batch(db, "batch-1", DAY1 + HOUR, [row], [day]) == 1
        assert archive_sql.write_batch(db, "batch-1", DAY1 + HOUR, [row], [day]) is None
        assert archive_sql.write_batch(db, "batch-2", DAY1 + HOUR, [row], [day]) == 0  # the event known by id
        assert archive_sql.socket_days(db, "flat-1", "kitchen", "2026-03-01", "2026-03-01") == [
            ("2026-03-01", 25, 70, 400, "EUR")]  # batch-2's energy added: a different batch, same figures

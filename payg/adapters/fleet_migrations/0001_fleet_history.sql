-- The hub's fleet history: every event as received (unique by id) and one row per socket per UTC day.
-- Written for both SQLite and PostgreSQL (BIGINT and DOUBLE PRECISION are valid SQLite type names).
-- Days are ISO dates ("2026-03-01") in UTC: they sort and compare as text on both.

CREATE TABLE hub_events (
    id TEXT PRIMARY KEY,
    controller TEXT NOT NULL,
    seq BIGINT,
    socket TEXT,
    kind TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    day TEXT NOT NULL,
    amount BIGINT,
    body TEXT NOT NULL
);

CREATE INDEX hub_events_socket_day ON hub_events (controller, socket, day);

CREATE INDEX hub_events_controller_seq ON hub_events (controller, seq);

-- energy_mwh: milliwatt-hours, so the sum of many flushes' fractional watt-hours stays exact in integers;
-- last_counter_wh: the meter's cumulative counter last seen, which a restarted hub continues the day from;
-- balance_at: the time of the state closing_balance and currency come from (a late partial row never wins).
CREATE TABLE hub_socket_days (
    controller TEXT NOT NULL,
    socket TEXT NOT NULL,
    day TEXT NOT NULL,
    energy_mwh BIGINT NOT NULL DEFAULT 0,
    topups BIGINT NOT NULL DEFAULT 0,
    closing_balance BIGINT,
    currency TEXT,
    balance_at DOUBLE PRECISION,
    last_at DOUBLE PRECISION,
    last_counter_wh DOUBLE PRECISION,
    PRIMARY KEY (controller, socket, day)
);

CREATE INDEX hub_socket_days_day ON hub_socket_days (day);

-- One row per committed write: a write retried after its commit's answer was lost finds its id and is not
-- applied twice (the day rows add energy, which an event id's uniqueness alone would not protect).
CREATE TABLE hub_archive_batches (
    id TEXT PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL
);

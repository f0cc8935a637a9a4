-- sagaway schema 1 for SQLite: runs, their journals, signals and events.
CREATE TABLE sagaway_runs (
    id               TEXT PRIMARY KEY,
    saga             TEXT NOT NULL,
    idem_key         TEXT,
    input            TEXT NOT NULL,
    input_hash       TEXT NOT NULL,
    status           TEXT NOT NULL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    due_at           REAL,              -- when a worker should pick the run up, NULL for never
    owner            TEXT,              -- worker holding the lease
    epoch            INTEGER NOT NULL DEFAULT 0,   -- fencing token, +1 per claim
    wait_name        TEXT,
    wait_position    INTEGER,
    wait_deadline    REAL,
    pivot_passed     INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result           TEXT,
    error            TEXT,
    recoveries       INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX sagaway_runs_key ON sagaway_runs (saga, idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX sagaway_runs_due ON sagaway_runs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX sagaway_runs_status ON sagaway_runs (status, created_at);
CREATE INDEX sagaway_runs_owner ON sagaway_runs (owner) WHERE owner IS NOT NULL;

CREATE TABLE sagaway_journal (
    run_id      TEXT NOT NULL,
    phase       INTEGER NOT NULL,   -- 0 forward, 1 compensation
    position    INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    args        TEXT,
    result      TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 1,
    started_at  REAL NOT NULL,
    finished_at REAL NOT NULL,
    PRIMARY KEY (run_id, phase, position)
) WITHOUT ROWID;

CREATE TABLE sagaway_signals (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL,
    name        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    sent_at     REAL NOT NULL,
    consumed_at INTEGER            -- journal position of the wait that took it
);
CREATE INDEX sagaway_signals_pending ON sagaway_signals (run_id, name, id) WHERE consumed_at IS NULL;

CREATE TABLE sagaway_events (
    id     INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    at     REAL NOT NULL,
    kind   TEXT NOT NULL,
    data   TEXT NOT NULL
);
CREATE INDEX sagaway_events_run ON sagaway_events (run_id, id);
CREATE INDEX sagaway_events_kind ON sagaway_events (kind, id);

-- sagaway schema 2 for SQLite: state shared by every worker process, and metric buckets.

-- Circuit breakers' published states (compare-and-set on version).
CREATE TABLE sagaway_breakers (
    name    TEXT PRIMARY KEY,
    state   TEXT NOT NULL,
    until   REAL NOT NULL,
    version INTEGER NOT NULL
);

-- Token buckets of shared rate limits (tokens NULL: never used, starts full).
CREATE TABLE sagaway_limiters (
    name   TEXT PRIMARY KEY,
    tokens REAL,
    stamp  REAL
);

-- Per-minute metric buckets: count, sum, min and max of what was observed in the minute.
CREATE TABLE sagaway_metrics (
    name   TEXT NOT NULL,
    labels TEXT NOT NULL,
    minute INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    total  REAL NOT NULL,
    low    REAL NOT NULL,
    high   REAL NOT NULL,
    PRIMARY KEY (name, labels, minute)
) WITHOUT ROWID;
CREATE INDEX sagaway_metrics_minute ON sagaway_metrics (minute);

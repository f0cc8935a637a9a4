-- sagaway schema 2 for PostgreSQL: state shared by every worker process, and metric buckets.

-- Circuit breakers' published states (compare-and-set on version).
CREATE TABLE sagaway_breakers (
    name    TEXT PRIMARY KEY,
    state   TEXT NOT NULL,
    until   DOUBLE PRECISION NOT NULL,
    version BIGINT NOT NULL
);

-- Token buckets of shared rate limits (tokens NULL: never used, starts full).
CREATE TABLE sagaway_limiters (
    name   TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION,
    stamp  DOUBLE PRECISION
);

-- Per-minute metric buckets: count, sum, min and max of what was observed in the minute.
CREATE TABLE sagaway_metrics (
    name   TEXT NOT NULL,
    labels TEXT NOT NULL,
    minute BIGINT NOT NULL,
    count  BIGINT NOT NULL,
    total  DOUBLE PRECISION NOT NULL,
    low    DOUBLE PRECISION NOT NULL,
    high   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (name, labels, minute)
);
CREATE INDEX sagaway_metrics_minute ON sagaway_metrics (minute);

-- sagaway schema 7 for SQLite: the HTTP API's tokens, sessions and audit log, forks' origins,
-- and the indexes that keep the runs list and key search fast at millions of runs.

-- API tokens: only a SHA-256 of each token is kept; revoked ones stay for the audit's sake.
CREATE TABLE sagaway_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE UNIQUE INDEX sagaway_tokens_hash ON sagaway_tokens (hash);

-- Browser sessions opened by signing in with a token (SHA-256 of the cookie's value).
CREATE TABLE sagaway_sessions (
    hash       TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX sagaway_sessions_token ON sagaway_sessions (token_id);

-- Every change made through the API: who, what, which run, when, outcome.
CREATE TABLE sagaway_audit (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    run_id  TEXT,
    detail  TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX sagaway_audit_run ON sagaway_audit (run_id, id);

-- A forked run's origin and the journal position it ran anew from.
CREATE TABLE sagaway_forks (
    run_id    TEXT PRIMARY KEY,
    origin_id TEXT NOT NULL,
    from_step INTEGER NOT NULL
);
CREATE INDEX sagaway_forks_origin ON sagaway_forks (origin_id);

-- The runs list pages newest first (all, of a status, or of a saga) by (created_at, id), so a
-- page is one index range read in order, ties included; key search looks keys up by prefix.
DROP INDEX sagaway_runs_status;
CREATE INDEX sagaway_runs_status ON sagaway_runs (status, created_at, id);
CREATE INDEX sagaway_runs_created ON sagaway_runs (created_at, id);
CREATE INDEX sagaway_runs_saga_created ON sagaway_runs (saga, created_at, id);
CREATE INDEX sagaway_runs_idem_key ON sagaway_runs (idem_key, id) WHERE idem_key IS NOT NULL

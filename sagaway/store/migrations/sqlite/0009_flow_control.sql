-- sagaway schema 9 for SQLite: flow control. A run of a saga declared with a concurrency limit
-- carries its key, limit and priority (computed once, when it started). `flow_held` is 1 while
-- the run holds one of its key's slots (from its claim until it rests or ends); a run that was
-- due but found its key full waits in the key's queue: `flow_queued_at` set, `due_at` NULL.
ALTER TABLE sagaway_runs ADD COLUMN flow_key TEXT;
ALTER TABLE sagaway_runs ADD COLUMN flow_limit INTEGER;
ALTER TABLE sagaway_runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sagaway_runs ADD COLUMN flow_held INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sagaway_runs ADD COLUMN flow_queued_at REAL;
CREATE INDEX sagaway_runs_flow_held ON sagaway_runs (saga, flow_key) WHERE flow_held = 1;
CREATE INDEX sagaway_runs_flow_queue ON sagaway_runs (saga, flow_key, priority DESC, flow_queued_at, id)
    WHERE flow_queued_at IS NOT NULL

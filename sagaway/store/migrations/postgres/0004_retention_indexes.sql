-- sagaway schema 4 for PostgreSQL: indexes for pruning runs that ended long ago.
-- Without them each batch of a prune reads every run of the statuses and every signal.
CREATE INDEX sagaway_runs_ended ON sagaway_runs (status, updated_at);
CREATE INDEX sagaway_signals_run ON sagaway_signals (run_id)

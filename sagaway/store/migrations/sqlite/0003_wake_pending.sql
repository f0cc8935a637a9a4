-- sagaway schema 3 for SQLite: a run remembers that a signal arrived since it was claimed.
-- A run going to rest reads this flag from its own row (not a subquery), so a signal that
-- commits while the run suspends cannot be missed on any backend.
ALTER TABLE sagaway_runs ADD COLUMN wake_pending INTEGER NOT NULL DEFAULT 0

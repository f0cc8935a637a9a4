-- sagaway schema 3 for PostgreSQL: a run remembers that a signal arrived since it was claimed.
-- A run going to rest reads this flag from its own row (not a subquery, whose snapshot could
-- miss a signal committed while the UPDATE waited for the row), so no wake-up is lost.
ALTER TABLE sagaway_runs ADD COLUMN wake_pending INTEGER NOT NULL DEFAULT 0

-- sagaway schema 5: a digest of each step call's arguments, so that a replay passing other
-- arguments to a recorded step is caught as non-determinism (NULL on older entries: not checked).
ALTER TABLE sagaway_journal ADD COLUMN digest TEXT

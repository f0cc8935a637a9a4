-- sagaway schema 8 for SQLite: fan-out inside a saga. A child run (started by ctx.map over a
-- saga, or ctx.child) names its parent run, the journal position of the parent's map and its
-- index in that map. Branch entries of maps take journal positions derived from the map's
-- (SQLite integers are 64-bit already).
ALTER TABLE sagaway_runs ADD COLUMN parent_id TEXT;
ALTER TABLE sagaway_runs ADD COLUMN parent_position INTEGER;
ALTER TABLE sagaway_runs ADD COLUMN parent_index INTEGER;
CREATE INDEX sagaway_runs_parent ON sagaway_runs (parent_id, parent_position, parent_index)
    WHERE parent_id IS NOT NULL

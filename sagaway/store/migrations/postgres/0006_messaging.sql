-- sagaway schema 6 for PostgreSQL: durable messaging (outbox, consumer groups, inbox, dead letters).

-- Every message published: the outbox and the log every group reads. `seq` orders a topic's
-- messages; `dedup_id` keeps at most one message per (topic, dedup_id) while it is retained.
CREATE TABLE sagaway_messages (
    seq          BIGSERIAL PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    topic        TEXT NOT NULL,
    key          TEXT,
    payload      TEXT NOT NULL,
    dedup_id     TEXT,
    published_at DOUBLE PRECISION NOT NULL,
    available_at DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX sagaway_messages_dedup ON sagaway_messages (topic, dedup_id)
    WHERE dedup_id IS NOT NULL;
CREATE INDEX sagaway_messages_topic ON sagaway_messages (topic, seq);

-- The consumer groups of each topic, known from their first registration on.
CREATE TABLE sagaway_groups (
    grp        TEXT NOT NULL,
    topic      TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (grp, topic)
);

-- One row per (group, message): the delivery state and the inbox. `due_at` is when the
-- message may next be claimed (its delay, a retry's backoff, the end of a lease), NULL once
-- handled or dead; `epoch` fences a consumer whose lease was taken over.
CREATE TABLE sagaway_deliveries (
    grp        TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    topic      TEXT NOT NULL,
    key        TEXT,
    status     TEXT NOT NULL,
    due_at     DOUBLE PRECISION,
    owner      TEXT,
    epoch      INTEGER NOT NULL DEFAULT 0,
    attempts   INTEGER NOT NULL DEFAULT 0,
    error      TEXT,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (grp, message_id)
);
CREATE INDEX sagaway_deliveries_due ON sagaway_deliveries (grp, due_at) WHERE due_at IS NOT NULL;
CREATE INDEX sagaway_deliveries_key ON sagaway_deliveries (grp, key, seq) WHERE status = 'ready';
CREATE INDEX sagaway_deliveries_status ON sagaway_deliveries (status, updated_at)

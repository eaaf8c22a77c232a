-- Push, pull and delete events (common/src/metadata/events.rs; README "Events"): a
-- transactional outbox. An event row is written in the transaction of the change it
-- describes; deliverers fan it out into one delivery row per destination that wants it and
-- send those in order per (destination, repository).

-- One event: its body is one event object of distribution's notification envelope.
CREATE TABLE event_outbox (
    -- Commit order within a repository: writers of one repository's events serialize on the
    -- repository (SQLite's write lock; a row lock on PostgreSQL) before taking a number.
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The event's id (a UUID): the consumers' idempotency key (Nats-Msg-Id, X-Registry-Event-Id).
    id            TEXT    NOT NULL,
    repository    TEXT    NOT NULL,
    action        TEXT    NOT NULL CHECK (action IN ('push', 'pull', 'delete', 'mount')),
    body          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    -- When a deliverer made its delivery rows (NULL: not yet).
    fanned_out_at INTEGER
);
CREATE INDEX event_outbox_unfanned ON event_outbox(seq) WHERE fanned_out_at IS NULL;
CREATE INDEX event_outbox_by_age ON event_outbox(created_at);

-- One event for one destination ("nats", "webhook:<name>").
CREATE TABLE event_deliveries (
    destination     TEXT    NOT NULL,
    seq             INTEGER NOT NULL REFERENCES event_outbox(seq) ON DELETE CASCADE,
    repository      TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- A pending row is not sent before this (exponential backoff after a failure).
    next_attempt_at INTEGER NOT NULL,
    -- A deliverer's claim: others leave the row (and the rows after it in its stream) alone
    -- until then.
    claimed_until   INTEGER,
    last_error      TEXT,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (destination, seq)
);
CREATE INDEX event_deliveries_pending ON event_deliveries(destination, repository, seq)
    WHERE state = 'pending';
CREATE INDEX event_deliveries_by_state ON event_deliveries(state, updated_at);
CREATE INDEX event_deliveries_by_seq ON event_deliveries(seq);

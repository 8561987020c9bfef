-- The StateStore: one row per rollout (its state, and its owner lease), its decision log and
-- its command inbox. Ids sort bytewise (COLLATE "C"), as `list` pages them.
CREATE TABLE cutover_rollouts (
    id               text COLLATE "C" PRIMARY KEY,
    -- NULL until the first save (a lease may be taken before it).
    version          bigint,
    state            json,
    phase            text,
    updated_ms       bigint,
    lease_owner      text,
    -- Rises with every new owner and is kept after a release: the fencing token.
    lease_epoch      bigint NOT NULL DEFAULT 0,
    lease_ttl_ms     bigint,
    -- When the lease expires on the claimant's clock (what `Lease::expires_at` shows).
    lease_expires_ms bigint,
    -- When it expires on the database's clock: what fenced writes and fleet claims check.
    lease_deadline   timestamptz
);
CREATE INDEX cutover_rollouts_phase ON cutover_rollouts (phase, id);

CREATE TABLE cutover_log (
    id     text COLLATE "C" NOT NULL,
    seq    bigint NOT NULL,
    -- The lease epoch of the engine that wrote the record (NULL: written without a lease).
    epoch  bigint,
    record json NOT NULL,
    PRIMARY KEY (id, seq)
);

CREATE TABLE cutover_inbox (
    id      text COLLATE "C" NOT NULL,
    seq     bigint NOT NULL,
    key     text,
    sent_ms bigint NOT NULL,
    request jsonb NOT NULL,
    PRIMARY KEY (id, seq),
    UNIQUE (id, key)
);

-- The fleet: rollouts submitted as data, the workers that run them, and every claim.
CREATE TABLE cutover_fleet_rollouts (
    id           text COLLATE "C" PRIMARY KEY,
    spec         jsonb NOT NULL,
    -- What a worker must offer to run it: `router:edge-proxy`, `analysis:checks`, ...
    providers    text[] NOT NULL,
    submitted_at timestamptz NOT NULL DEFAULT now(),
    -- False once it finished: no longer claimable.
    open         boolean NOT NULL DEFAULT true,
    -- Not claimed before this (back-off after a run that ended in an error).
    not_before   timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    -- Why no worker will run it again (a spec its providers cannot carry out), if so.
    halted       text,
    finished_at  timestamptz
);
CREATE INDEX cutover_fleet_rollouts_queue ON cutover_fleet_rollouts (submitted_at, id) WHERE open;

CREATE TABLE cutover_fleet_workers (
    id         text PRIMARY KEY,
    providers  text[] NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now(),
    ttl_ms     bigint NOT NULL,
    draining   boolean NOT NULL DEFAULT false
);

CREATE TABLE cutover_fleet_claims (
    id         text COLLATE "C" NOT NULL,
    epoch      bigint NOT NULL,
    worker     text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, epoch)
);

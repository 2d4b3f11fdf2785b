-- Every decision once (one row per decision id), with where it was read.
CREATE TABLE decisions (
    decision_id          text PRIMARY KEY,
    run_id               text NOT NULL,
    claim_id             text NOT NULL,
    tenant_id            text NOT NULL,
    status               text NOT NULL,
    queue                text NOT NULL,
    severity             text NOT NULL,
    reserve              double precision NOT NULL,
    currency             text NOT NULL,
    documents_requested  text[] NOT NULL,
    reasons              text[] NOT NULL,
    decided_at_ms        bigint NOT NULL,
    source_topic         text NOT NULL,
    source_partition     integer NOT NULL,
    source_offset        bigint NOT NULL,
    -- How often the sink applied this decision: above 1 only for a tail re-read after a crash or a rebalance.
    times_received       integer NOT NULL DEFAULT 1,
    -- The sink worker that stored it first (--name, default host-pid).
    stored_by            text NOT NULL,
    stored_at            timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX decisions_by_run ON decisions (run_id, decided_at_ms DESC, decision_id DESC);

-- Each run's latest decision: (decided_at_ms, decision_id) orders a run's decisions, so a redriven
-- run's new decision replaces the old one and an older decision read again later never does.
CREATE TABLE run_decisions (
    run_id         text PRIMARY KEY,
    decision_id    text NOT NULL REFERENCES decisions (decision_id),
    decided_at_ms  bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

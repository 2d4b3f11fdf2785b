"""The FNOL agent on a real broker: the seed's spans in one trace, evaluator marks, budgets enforced."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from processors.fnol import FNOL
from streams import traces
from streams.config import Settings
from streams.worker import Worker
from streams.workflows import load_workflows
from tests.conftest import ROOT, wait_for
from tests.helpers import decisions, produce, sample_claims

SEED_SPANS = {
    "orchestrator.run",
    "orchestrator.plan",
    "retrieval.policy",
    "tool.vision",
    "tool.fraud_check",
    "reasoner.severity",
    "tool.route",
    "evaluator",
    "tool.documents",
}


def _decide(settings: Settings, n: int, prefix: str) -> list[str]:
    claims = sample_claims(n, prefix=prefix)
    worker = Worker(settings, load_workflows(["processors.fnol.workflow:FNOL"])).start()
    try:
        produce(settings, claims)
        wait_for(lambda: len(decisions(settings)) >= n or worker.failed, 90, "decisions")
        assert worker.failed is None
    finally:
        worker.stop()
        worker.join(20)  # exports the queued spans
    return [c.run_id for c in claims]


def test_a_claim_is_one_trace_with_the_seed_spans_tokens_cost_and_evals(settings: Settings) -> None:
    [run_id] = _decide(settings, 1, "TR")
    view = traces.load(settings, run_id, FNOL)
    names = {s.name for s in view.spans}
    assert names == SEED_SPANS
    root = next(s for s in view.spans if s.name == "orchestrator.run")
    for span in view.spans:
        assert span.trace_id == root.trace_id
        if span is not root:
            assert span.parent_span_id == root.span_id
    by_name = {s.name: json.loads(s.attributes_json) for s in view.spans}
    assert by_name["tool.vision"]["gen_ai.usage.output_tokens"] > 0 and by_name["tool.vision"]["durable.cost_usd"] > 0
    assert by_name["tool.vision"]["gen_ai.request.model"]
    assert by_name["evaluator"]["durable.eval.passed"] == by_name["evaluator"]["durable.eval.total"] == 8
    assert view.evaluation is not None and view.output is not None and view.output["status"] == "ROUTED"

    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "DURABLE_NAMESPACE": settings.namespace}
    drawn = subprocess.run(
        [sys.executable, "-m", "streams.cli", "trace", run_id], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert drawn.returncode == 0, drawn.stderr
    for name in SEED_SPANS:
        assert name in drawn.stdout
    assert "budget · tokens" in drawn.stdout and "evals 8/8" in drawn.stdout
    assert "ROUTED · reserve £" in drawn.stdout


def test_runs_over_budget_go_to_human_review_with_the_figures(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLE_FNOL_BUDGETS", '{"default": {"latency_s": 0.05, "cost_usd": 0.001}}')
    run_ids = _decide(settings, 4, "BUD")
    decided = {d["run_id"]: d for d in decisions(settings)}
    for run_id in run_ids:
        d = decided[run_id]
        assert d["status"] == "REVIEW", d
        text = " ".join(d["reasons"])
        assert "gate latency_within_budget failed: latency" in text and "over budget 0.05 s" in text
        assert "gate cost_within_budget failed: cost $" in text and "over budget $0.001" in text

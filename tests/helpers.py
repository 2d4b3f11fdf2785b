"""Test helpers: inputs to produce (FNOL claims, or the generic test workflows' orders), and exactly-once checks."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from typing import Any

from processors.engine.inputs import Accepted, accept, parse_lines
from processors.fnol import FNOL
from processors.fnol.intake import SAMPLES
from streams import audit, signing
from streams.config import Settings
from streams.intake import produce_inputs
from streams.topics import Topics
from tests.conftest import read_topic
from tests.workflows import OUTPUT_TOPIC, SLOW


def sample_claims(n: int | None = None, prefix: str = "") -> list[Accepted]:
    """Valid tokenised FNOL sample claims; with ``prefix``, claim ids are made unique per call."""
    lines = SAMPLES.read_text().splitlines()
    out: list[Accepted] = []
    i = 0
    while (n is None and i < len(lines)) or (n is not None and len(out) < n):
        data = json.loads(lines[i % len(lines)])
        if prefix:
            data["claim_id"] = f"{prefix}{i:05d}"
        good = next(iter(parse_lines(FNOL, [json.dumps(data)])))
        assert isinstance(good, Accepted)
        out.append(good)
        i += 1
        if n is None and i >= len(lines):
            break
    return out


def claim_prompt() -> str:
    """A claim as a model prompt (JSON of its loss, description, photo labels and amount)."""
    return json.dumps(
        {
            "loss_type": "auto_collision",
            "description": "Another car hit mine at a junction. The airbag deployed and the frame is bent.",
            "labels": ["airbag_deployed", "frame_damage"],
            "estimated_amount": 24000.0,
        }
    )


def sample_orders(n: int, prefix: str = "O") -> list[Accepted]:
    """``n`` orders for the generic test workflows (all share one input schema and run id rule)."""
    return [accept(SLOW, {"order_id": f"{prefix}{i:05d}", "customer": f"c{i % 7}", "amount": 10.0 + i}) for i in range(n)]


def produce(settings: Settings, claims: list[Accepted]) -> None:
    """Produce FNOL claims to the namespace's input topic."""
    produce_inputs(settings, FNOL, claims)


def produce_orders(settings: Settings, orders: list[Accepted]) -> None:
    """Produce orders to the generic test workflows' input topic."""
    produce_inputs(settings, SLOW, orders)


def decisions(settings: Settings) -> list[dict[str, Any]]:
    """Every FNOL decision record (raw: a record written twice is here twice)."""
    return read_topic(settings, Topics(settings.namespace).name("decisions"))


def outcomes(settings: Settings) -> list[dict[str, Any]]:
    """Every output record of the generic test workflows (raw)."""
    return read_topic(settings, Topics(settings.namespace).name(OUTPUT_TOPIC))


def journal(settings: Settings) -> list[dict[str, Any]]:
    return read_topic(settings, Topics(settings.namespace).name("runs.journal"))


TERMINAL = ("RUN_COMPLETED", "RUN_FAILED", "RUN_COMPENSATED")


def _writes_output(event: dict[str, Any]) -> bool:
    """An ending, or a pause that wrote an output (the workflow's ``on_pause``)."""
    if event["kind"] in TERMINAL:
        return True
    return event["kind"] == "RUN_PAUSED" and json.loads(event["detail_json"] or "{}").get("output") is not None


def assert_exactly_once(settings: Settings, run_ids: set[str], output_topic: str = "decisions") -> None:
    """Every run's output written once per generation (a redrive starts a new one), every transition journaled once.

    A run may rest PAUSED (its last run-level event): a pause that wrote an output ends its generation too.
    Output records are counted raw, by the id the orchestrator puts on each (its ``id`` header).
    """
    written = read_topic(settings, Topics(settings.namespace).name(output_topic))
    ids = Counter(d["_id"] for d in written)
    assert not [i for i, c in ids.items() if c > 1], f"outputs written more than once: {ids.most_common(3)}"
    counts = Counter(d["run_id"] for d in written)
    assert set(counts) == run_ids, f"missing outputs: {sorted(run_ids - set(counts))[:5]}"

    events = journal(settings)
    ids = Counter(e["event_id"] for e in events)
    assert not [i for i, c in ids.items() if c > 1], (
        f"journal events written twice: {[i for i, c in ids.items() if c > 1][:5]}"
    )
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_run[e["run_id"]].append(e)
    for run_id in run_ids:
        ordered = sorted(by_run[run_id], key=lambda e: e["seq"])
        seqs = [e["seq"] for e in ordered]
        assert seqs == list(range(1, len(seqs) + 1)), f"{run_id}: journal seqs not gapless: {seqs}"
        kinds = [e["kind"] for e in ordered]
        assert kinds[0] == "RUN_STARTED" and kinds.count("RUN_STARTED") == 1, f"{run_id}: {kinds}"
        # Every generation ends once, in an output: an ending, or a pause that wrote one. A new generation
        # begins with a redrive, an operator's compensate of a paused run, or a rollback of a completed one;
        # after a pause that wrote nothing, the redrive or compensate continues the same generation.
        run_level = [e for e in ordered if e["kind"] in (*TERMINAL, "RUN_PAUSED", "RUN_REDRIVEN", "RUN_COMPENSATING")]
        last = run_level[-1]
        assert last["kind"] in (*TERMINAL, "RUN_PAUSED"), f"{run_id} did not finish or pause: {kinds}"
        ends = sum(1 for e in ordered if _writes_output(e))
        restarts = sum(
            1
            for before, after in itertools.pairwise(run_level)
            if _writes_output(before) and after["kind"] in ("RUN_REDRIVEN", "RUN_COMPENSATING")
        )
        assert ends == restarts + _writes_output(last), f"{run_id}: {ends} outputs, {restarts} restarts: {kinds}"
        assert counts[run_id] == ends, f"{run_id}: {counts[run_id]} outputs for {ends} ending(s)"
        for kind in ("STEP_SCHEDULED", "COMPENSATION_SCHEDULED"):
            scheduled = Counter((e["step"], e["attempt"]) for e in by_run[run_id] if e["kind"] == kind)
            assert all(c == 1 for c in scheduled.values()), f"{run_id}: an attempt scheduled twice: {scheduled}"
    assert_verified(settings, run_ids, output_topic)


def assert_verified(settings: Settings, run_ids: set[str], output_topic: str = "decisions") -> None:
    """Every run's hash chain holds and every output of it is signed by the test key (streams.audit)."""
    evidence = audit.read(settings, [Topics(settings.namespace).name(output_topic)], run_ids)
    broken = [r for r in audit.verify_all(evidence, signing.keyring_from_env()) if not r.ok]
    assert not broken, f"runs that do not verify: {[(r.run_id, r.where, r.problem) for r in broken[:3]]}"

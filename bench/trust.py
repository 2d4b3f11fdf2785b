"""What trust costs: signing and verifying a decision, hashing a journal event, and auditing runs.

    .venv/bin/python -m bench.trust [--claims 50]

Prints µs per decision signed (the engine's extra work as it writes a
decision, over the unsigned encoding), per decision verified, per journal
event chained, then runs the FNOL samples through a worker on the embedded
broker (or ``KAFKA_BOOTSTRAP_SERVERS``) and times ``durable audit verify
--all``'s work over them: runs/s with the topics' reading, and without.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import claims as sample_claims  # importing it gives workers a throwaway signing key
from processors import pii
from processors.engine import chain
from processors.fnol import FNOL
from schemas import encode
from schemas.models import JournalEvent, JournalKind
from streams import audit, authentication, signed_outputs, signing
from streams.broker import EmbeddedBroker
from streams.config import Settings
from streams.intake import produce_inputs
from streams.topics import Topics
from streams.worker import Worker

SCHEMA = "durable.fnol.RoutedDecision"


def _decision(i: int) -> dict[str, Any]:
    return {
        "decision_id": f"d-{i}",
        "claim_id": f"CLM-{i:06d}",
        "tenant_id": "acme",
        "run_id": f"fnol:acme:CLM-{i:06d}",
        "status": "ROUTED",
        "queue": "fast_track",
        "severity": "LOW",
        "reserve": 5600.0,
        "currency": "GBP",
        "documents_requested": ["photos", "police_report"],
        "reasons": ["low severity, policy in force", "no fraud signals"],
        "decided_at_ms": 1_764_000_000_000 + i,
    }


def _per_call_us(fn: Any, n: int) -> float:
    """Median over 5 rounds of the mean µs per call."""
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        rounds.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(rounds)


def costs(n: int = 2000) -> dict[str, float]:
    """µs per call: unsigned encode, signed encode, verify, chain hash of one journal event."""
    signer = signing.Signer.of(Ed25519PrivateKey.generate())
    ring = signing.Keyring.of([signer.public])
    head = "ab" * 32
    signed = [signed_outputs.sign(SCHEMA, _decision(i), head, signer) for i in range(n)]
    event = JournalEvent(
        event_id="r/3",
        run_id="r",
        workflow="fnol",
        seq=3,
        kind=JournalKind.STEP_SUCCEEDED,
        at_ms=1,
        step="triage",
        attempt=1,
        detail_json='{"severity":"LOW","reserve":5600.0}' * 8,
        prev_hash=head,
    )
    return {
        "encode_us": _per_call_us(lambda i: encode(SCHEMA, _decision(i)), n),
        "sign_us": _per_call_us(lambda i: signed_outputs.sign(SCHEMA, _decision(i), head, signer), n),
        "verify_us": _per_call_us(lambda i: signed_outputs.verify(signed[i], ring), n),
        "chain_us": _per_call_us(lambda i: chain.hash_event(event), n),
    }


def print_costs() -> None:
    c = costs()
    print(
        f"signing: {c['sign_us'] - c['encode_us']:.0f} µs per decision over its unsigned encoding "
        f"({c['sign_us']:.0f} µs signed vs {c['encode_us']:.0f} µs), verify {c['verify_us']:.0f} µs, "
        f"hash chain {c['chain_us']:.1f} µs per journal event"
    )


def audit_rate(bootstrap: str, n: int, state: Path) -> None:
    settings = Settings.from_env(namespace=f"trust{int(time.time())}", bootstrap_servers=bootstrap, state_dir=state)
    claims = sample_claims(n, "T")
    topic = Topics(settings.namespace).name(FNOL.output_topic)
    worker = Worker(settings, [FNOL]).start()
    try:
        produce_inputs(settings, FNOL, claims)
        deadline = time.monotonic() + 300
        while len(audit.read(settings, [topic]).outputs) < n and time.monotonic() < deadline:
            if worker.failed:
                raise SystemExit(f"worker failed: {worker.failed}")
            time.sleep(0.5)
    finally:
        worker.stop()
        worker.join(20)
    ring = signing.keyring_from_env()
    t0 = time.perf_counter()
    evidence = audit.read(settings, [topic])
    t1 = time.perf_counter()
    results = audit.verify_all(evidence, ring)
    t2 = time.perf_counter()
    ok = sum(r.ok for r in results)
    events = sum(r.events for r in results)
    print(
        f"audit verify --all: {ok} of {len(results)} runs OK ({events} events); "
        f"{len(results) / (t2 - t0):,.0f} runs/s with reading the topics, {len(results) / (t2 - t1):,.0f} runs/s verifying alone"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--claims", type=int, default=50, help="FNOL sample claims to run, then audit")
    args = parser.parse_args()
    # The demo's public PII key (the shipped fraud table is keyed under it) and a throwaway worker secret:
    # nothing is generated into the working tree.
    os.environ.setdefault(pii.KEY_ENV, pii.DEMO_KEY)
    os.environ.setdefault(authentication.SECRET_ENV, secrets.token_hex(32))
    print_costs()
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if external else EmbeddedBroker().start()
    with tempfile.TemporaryDirectory(prefix="durable-bench-trust-") as state:
        try:
            audit_rate(external or (broker.bootstrap_servers if broker else ""), args.claims, Path(state) / "state")
        finally:
            if broker:
                broker.stop()


if __name__ == "__main__":
    main()

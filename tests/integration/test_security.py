"""Operator tools keep to their side (issue 17): replay writes only to sandboxes it made; offsets spare the engine."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

from streams.config import Settings
from streams.reading import read_all
from streams.sandbox import is_sandbox, marker_topic, namespace_in_use
from streams.topics import Topics, ensure_topics
from tests.conftest import ROOT
from tests.helpers import produce, sample_claims

WINDOW = ("--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:01:00Z")


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "DURABLE_NAMESPACE": settings.namespace}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def said(done: subprocess.CompletedProcess[str]) -> str:
    """stderr with the console's line wrapping undone."""
    return " ".join(done.stderr.split())


def test_replay_writes_only_into_a_sandbox_it_created(settings: Settings) -> None:
    ensure_topics(settings, [Topics(settings.namespace).name("fnol.reported")])
    live = replace(settings, namespace=f"{settings.namespace}live")  # another tenant's live namespace
    ensure_topics(live, [Topics(live.namespace).name("fnol.reported"), Topics(live.namespace).name("decisions")])
    live_before = namespace_in_use(settings, live.namespace)

    main = cli(settings, "replay", *WINDOW, "--sandbox", "main")
    assert main.returncode == 2, main.stdout + main.stderr
    assert "replay refused" in said(main) and "never a sandbox" in said(main)
    other = cli(settings, "replay", *WINDOW, "--sandbox", live.namespace)
    assert other.returncode == 2, other.stdout + other.stderr
    assert f"namespace {live.namespace!r} is not a sandbox" in said(other)
    itself = cli(settings, "replay", *WINDOW, "--sandbox", settings.namespace)
    assert itself.returncode == 2, itself.stdout + itself.stderr
    assert namespace_in_use(settings, live.namespace) == live_before, "a refused replay touched the namespace"
    assert not is_sandbox(settings, live.namespace)

    box = f"{settings.namespace}-box"
    fresh = cli(settings, "replay", *WINDOW, "--sandbox", box)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert is_sandbox(settings, box)
    [note] = read_all(replace(settings, namespace=box), marker_topic(box))
    assert f'"replay_of": "{settings.namespace}"' in (note.value() or b"").decode()
    again = cli(settings, "replay", *WINDOW, "--sandbox", box)
    assert again.returncode == 2 and "earlier replay" in said(again), again.stdout + again.stderr


def test_offsets_reset_spares_the_engine_groups_and_changelog_unless_internal(settings: Settings) -> None:
    produce(settings, sample_claims(3, prefix="OFF"))  # unprocessed inputs: no worker runs
    ns = settings.namespace
    for group in (f"{ns}.orchestrator", f"{ns}.executors"):
        refused = cli(settings, "offsets", "reset", "--group", group, "--topic", "fnol.reported", "--to-latest", "--execute")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "--internal" in said(refused) and "engine's internals" in said(refused)
    changelog = cli(
        settings, "offsets", "reset", "--group", "billing", "--topic", Topics(ns).run_changelog, "--to-latest", "--dry-run"
    )
    assert changelog.returncode == 2 and "changelog" in said(changelog), changelog.stdout + changelog.stderr

    told = cli(
        settings, "offsets", "reset", "--group", f"{ns}.orchestrator", "--topic", "fnol.reported",
        "--to-latest", "--dry-run", "--internal",
    )  # fmt: skip
    assert told.returncode == 0, told.stdout + told.stderr
    assert f"{ns}.fnol.reported: 3 record(s) skipped, never processed" in said(told)
    assert "no output, no dead letter" in said(told)
    # An ordinary downstream group is not affected by the guard.
    plain = cli(settings, "offsets", "reset", "--group", "billing", "--topic", "fnol.reported", "--to-earliest", "--dry-run")
    assert plain.returncode == 0, plain.stdout + plain.stderr

"""The broker watch's verdicts on what the broker says (no broker: observations given by hand)."""

from __future__ import annotations

from pathlib import Path

from streams.brokerwatch import BrokerWatch, Observation
from streams.config import Settings

TOPICS = ("ns.step.commands", "ns.orchestrator.runs-changelog")
IDS = {"ns.step.commands": "id-c", "ns.orchestrator.runs-changelog": "id-l"}


def watch() -> BrokerWatch:
    w = BrokerWatch(Settings(bootstrap_servers="x:1", namespace="ns", state_dir=Path("/nonexistent")), TOPICS)
    w.baseline = Observation("cluster-1", dict(IDS), {("ns.step.commands", 0): 5})
    w._seen_ends[("ns.step.commands", 0)] = 7
    return w


def test_the_same_broker_with_its_log_is_no_loss() -> None:
    assert watch().lost(Observation("cluster-1", dict(IDS), {("ns.step.commands", 0): 9})) is None


def test_a_re_created_topic_is_a_loss_naming_the_topic() -> None:
    reason = watch().lost(Observation("cluster-1", {**IDS, "ns.step.commands": "id-new"}, {}))
    assert reason is not None and "ns.step.commands was re-created" in reason


def test_a_missing_topic_another_cluster_or_a_shorter_log_are_losses() -> None:
    assert "no longer exists" in (watch().lost(Observation("cluster-1", {"ns.step.commands": "id-c"}, {})) or "")
    assert "cluster id changed" in (watch().lost(Observation("cluster-2", dict(IDS), {})) or "")
    shorter = watch().lost(Observation("cluster-1", dict(IDS), {("ns.step.commands", 0): 2}))
    assert shorter is not None and "ends at offset 2, it had reached 7" in shorter


def test_nothing_is_judged_before_the_watched_topics_were_first_seen() -> None:
    w = watch()
    w.baseline = None
    assert w.lost(Observation("other", {}, {})) is None

"""Consumer-group offset resets, as ``kafka-consumer-groups --reset-offsets`` does them.

A reset is planned first (current and new offset per partition, which a dry
run prints) and executed only on request, and only while the group has no
active members: a live member would overwrite the new offsets with its next
commit. Two facts of the embedded broker shape this (notes/broker-facts.md):
its ``offsets_for_times`` answers offset 0 for any time, so every broker
answer is checked against the records around it and, when wrong, the offset
is found by reading record timestamps; and its high watermark is
under-reported, so a partition's end is found by reading past it.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.config import Settings
from streams.kafka import admin as kafka_admin
from streams.kafka import read_to_end, reader

ACTIVE_STATES = {
    ConsumerGroupState.STABLE,
    ConsumerGroupState.PREPARING_REBALANCING,
    ConsumerGroupState.COMPLETING_REBALANCING,
}


class GroupActive(RuntimeError):
    """The group has active members; stop them (or pass force) before moving its offsets."""


# The engine's own groups and changelog, in any namespace (streams.topics.Topics names them).
INTERNAL_GROUPS = {
    ".orchestrator": (
        "the orchestrator's progress on the workflow inputs, step results and control records: moving it "
        "forward skips them (those runs never start or never advance: no output, no dead letter, `status` "
        "says no run); moving it back re-reads records already applied"
    ),
    ".executors": (
        "the executors' progress on the step commands: moving it forward skips scheduled steps (their runs "
        "wait forever); moving it back runs steps again (at least once: their side effects repeat)"
    ),
}
CHANGELOG_SUFFIX = ".orchestrator.runs-changelog"


def internal_reasons(group: str, topics: list[str]) -> list[str]:
    """Why resetting ``group`` on ``topics`` touches the engine's internals (empty: it does not)."""
    reasons = [f"group {group} is {why}" for suffix, why in INTERNAL_GROUPS.items() if group.endswith(suffix)]
    reasons += [
        f"topic {t} is the run-state changelog: workers rebuild run state from it, so offsets on it are not "
        "a consumer's to move"
        for t in topics
        if t.endswith(CHANGELOG_SUFFIX)
    ]
    return reasons


def skipped_and_reread(resets: list[PartitionReset]) -> dict[str, tuple[int, int]]:
    """Per topic: records the reset skips (never processed) and records it makes the group read again."""
    out: dict[str, tuple[int, int]] = {}
    for r in resets:
        now = r.current if r.current is not None else r.log_start
        skip, again = out.get(r.topic, (0, 0))
        out[r.topic] = (skip + max(0, r.new - now), again + max(0, now - r.new))
    return out


class ResetFailed(RuntimeError):
    """The broker refused to store some of the new offsets."""


@dataclass(frozen=True)
class ResetSpec:
    """Where to move: exactly one of the fields is set."""

    to_datetime_ms: int | None = None
    to_offset: int | None = None
    shift_by: int | None = None
    to_earliest: bool = False
    to_latest: bool = False

    def __post_init__(self) -> None:
        chosen = [
            self.to_datetime_ms is not None,
            self.to_offset is not None,
            self.shift_by is not None,
            self.to_earliest,
            self.to_latest,
        ]
        if sum(chosen) != 1:
            raise ValueError("choose exactly one of to-datetime, to-offset, shift-by, to-earliest, to-latest")


@dataclass(frozen=True)
class PartitionReset:
    """One partition's planned move; ``current`` is None when the group has committed nothing there."""

    topic: str
    partition: int
    current: int | None
    new: int
    log_start: int
    log_end: int
    lookup: str = ""  # for time resets: "broker" or "scan", how the offset was found


def _admin(settings: Settings) -> AdminClient:
    return kafka_admin(settings)


def group_activity(settings: Settings, group: str) -> tuple[str, int]:
    """The group's state name and its number of members as the broker reports them."""
    admin = _admin(settings)  # kept alive until the answer is in: a collected client drops its futures
    description = admin.describe_consumer_groups([group])[group].result(timeout=15)
    return description.state.name, len(description.members)


def is_active(settings: Settings, group: str) -> bool:
    # The embedded broker reports a stable group with an empty member list: trust the state too.
    state, members = group_activity(settings, group)
    return members > 0 or state in {s.name for s in ACTIVE_STATES}


def committed(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets, by (topic, partition)."""
    admin = _admin(settings)
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=15)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or [] if tp.offset >= 0}


def partitions_of(settings: Settings, topic: str) -> list[int]:
    # All topics, not list_topics(topic): asking for one by name creates it on brokers that auto-create.
    meta = _admin(settings).list_topics(timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        raise ValueError(f"no topic {topic}")
    return sorted(meta.partitions)


def bounds(settings: Settings, topic: str, partition: int) -> tuple[int, int]:
    """(first offset, offset after the last record), the end found by reading past the reported one."""
    c = reader(settings)
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        end = high
        for msg in read_to_end(c, [TopicPartition(topic, partition, max(low, high - 1))]):
            end = max(end, (msg.offset() or 0) + 1)
        return low, end
    finally:
        c.close()


def _timestamp_at(settings: Settings, topic: str, partition: int, offset: int) -> int | None:
    c = reader(settings)
    try:
        for msg in read_to_end(c, [TopicPartition(topic, partition, offset)]):
            return int(msg.timestamp()[1]) if msg.offset() == offset else None
        return None
    finally:
        c.close()


def offset_for_time(settings: Settings, topic: str, partition: int, at_ms: int, low: int, end: int) -> tuple[int, str]:
    """The first offset whose record timestamp is at or after ``at_ms`` (``end`` if none); and how it was found.

    The broker's answer is used when the records around it confirm it;
    otherwise the partition's timestamps are read from the start.
    """
    c = reader(settings)
    try:
        answer = c.offsets_for_times([TopicPartition(topic, partition, at_ms)], timeout=10)[0].offset
    finally:
        c.close()
    answer = end if answer < 0 else answer
    if low <= answer <= end:
        here = _timestamp_at(settings, topic, partition, answer) if answer < end else None
        before = _timestamp_at(settings, topic, partition, answer - 1) if answer > low else None
        if (answer == end or (here is not None and here >= at_ms)) and (answer == low or (before or 0) < at_ms):
            return answer, "broker"
    c = reader(settings)
    try:
        for msg in read_to_end(c, [TopicPartition(topic, partition, low)]):
            if msg.timestamp()[1] >= at_ms:
                return msg.offset() or 0, "scan"
        return end, "scan"
    finally:
        c.close()


def plan(settings: Settings, group: str, topics: list[str] | None, spec: ResetSpec) -> list[PartitionReset]:
    """Per partition: the group's current offset and where the reset would put it. Changes nothing."""
    current = committed(settings, group)
    names = topics or sorted({t for t, _ in current})
    if not names:
        raise ValueError(f"group {group} has no committed offsets; name the topics with --topic")
    out = []
    for topic in names:
        for p in partitions_of(settings, topic):
            low, end = bounds(settings, topic, p)
            now = current.get((topic, p))
            lookup = ""
            if spec.to_datetime_ms is not None:
                new, lookup = offset_for_time(settings, topic, p, spec.to_datetime_ms, low, end)
            elif spec.to_offset is not None:
                new = spec.to_offset
            elif spec.shift_by is not None:
                new = (now if now is not None else low) + spec.shift_by
            elif spec.to_earliest:
                new = low
            else:
                new = end
            out.append(PartitionReset(topic, p, now, min(max(new, low), end), low, end, lookup))
    return out


def execute(settings: Settings, group: str, resets: list[PartitionReset], force: bool = False) -> None:
    """Store the planned offsets for ``group``; refuses while it has active members unless ``force``."""
    if not force and is_active(settings, group):
        state, members = group_activity(settings, group)
        raise GroupActive(
            f"group {group} is active ({state}, {members} member(s) reported): stop its consumers first, "
            "or pass --force (a live member may overwrite the new offsets)"
        )
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(r.topic, r.partition, r.new) for r in resets])]
    admin = _admin(settings)
    result = admin.alter_consumer_group_offsets(request)[group].result(timeout=15)
    errors = [f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in result.topic_partitions or [] if tp.error]
    if errors:
        raise ResetFailed("; ".join(errors))


def recreate_group(settings: Settings, group: str) -> int:
    """Delete ``group`` and store its committed offsets again; returns how many it kept.

    The way out of the embedded broker's wedged group (streams.groupwatch):
    its members never get a partition again, and re-creating their consumers
    does not help, but a group deleted and rejoined forms normally
    (notes/broker-facts.md). Members still in it rejoin as new members.
    Offsets a member commits between the read and the store below would be
    set back to what was read: its inputs are read again, which the
    orchestrator's duplicate checks absorb, and nothing is skipped.
    """
    kept = committed(settings, group)
    admin = _admin(settings)
    admin.delete_consumer_groups([group])[group].result(timeout=15)
    if kept:
        # Committed by a consumer outside the group's membership: the embedded broker breaks the connection
        # of an AdminClient altering the offsets of a group it has just deleted.
        c = reader(settings, **{"group.id": group})
        try:
            c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in kept.items()], asynchronous=False)
        finally:
            c.close()
    return len(kept)

"""Admission (pure logic): at most the limit in flight, held inputs in order, first in once there is room."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import TopicPartition

from streams.admission import Admission


@dataclass
class Record:
    """What admission reads of a consumed record."""

    t: str
    p: int
    o: int

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o


@dataclass
class Consumer:
    paused: list[tuple[str, int]] = field(default_factory=list)
    resumed: list[tuple[str, int]] = field(default_factory=list)

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused += [(tp.topic, tp.partition) for tp in tps]

    def resume(self, tps: list[TopicPartition]) -> None:
        self.resumed += [(tp.topic, tp.partition) for tp in tps]


def _run(admission: Admission, records: list[Record]) -> list[tuple[int, bool]]:
    """Admit what can be (each admitted run goes live); returns (offset, was held) of the admitted."""
    admitted = []
    for r in admission.batch(records):  # type: ignore[arg-type]
        if admission.behind_held(r):  # type: ignore[arg-type]
            continue
        was_held = admission.admit(r)  # type: ignore[arg-type]
        if was_held is not None:
            admitted.append((r.o, was_held))
            admission.settled(r.p, f"run-{r.o}", live=True)
    return admitted


def test_past_the_limit_inputs_wait_in_order_and_go_first_when_runs_end() -> None:
    admission, consumer = Admission(limit=2), Consumer()
    first = _run(admission, [Record("in", 0, o) for o in range(5)])
    assert first == [(0, False), (1, False)]
    assert admission.pause_or_resume(consumer) == [("in", 0)] and consumer.paused == [("in", 0)]
    # Nothing ends: the held inputs stay held, in order, and a later fetch queues behind them.
    assert _run(admission, [Record("in", 0, 5)]) == []
    assert [r.offset() for r in admission.held[("in", 0)]] == [2, 3, 4, 5]
    admission.settled(0, "run-0", live=False)  # one run ends: one held input goes in, and it says it waited
    assert _run(admission, []) == [(2, True)]
    for run in ("run-1", "run-2"):
        admission.settled(0, run, live=False)
    assert _run(admission, []) == [(3, True), (4, True)]
    admission.pause_or_resume(consumer)
    assert consumer.resumed == [] and [r.offset() for r in admission.held[("in", 0)]] == [5]
    for run in ("run-3", "run-4"):
        admission.settled(0, run, live=False)
    assert _run(admission, []) == [(5, True)]
    admission.pause_or_resume(consumer)
    assert consumer.resumed == [("in", 0)] and not admission.held


def test_a_revoked_partition_forgets_its_runs_and_its_held_inputs() -> None:
    admission = Admission(limit=1)
    _run(admission, [Record("in", 0, 0), Record("in", 0, 1), Record("in", 1, 0)])
    assert admission.in_flight == 1 and set(admission.held) == {("in", 0), ("in", 1)}
    admission.drop("in", 0)
    assert admission.in_flight == 0 and set(admission.held) == {("in", 1)}
    assert admission.waiting()



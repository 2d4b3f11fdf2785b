"""A worker paused past its session (a zombie) never writes to partitions another worker took over.

The pause lands at the worst moment: inputs applied in memory, their commands,
journal events and outputs about to be written (``DURABLE_PAUSE_AT``, streams.chaos).
While it is stopped, the other worker takes its partitions, re-processes the
same inputs and writes the same records. When the zombie wakes, its ownership
claim is older than the new owner's (streams/fencing.py): it drops the batch
instead of writing it a second time.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

from streams.config import Settings
from streams.topics import Topics
from tests.conftest import WorkerProcesses, read_topic, wait_for
from tests.helpers import assert_exactly_once, outcomes, produce_orders, sample_orders
from tests.workflows import OUTPUT_TOPIC

SLOW = ("--workflow", "tests.workflows:SLOW")


def _stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (state T in /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0] in ("T", "t")


def test_a_zombie_paused_before_its_writes_writes_nothing_after_a_takeover(
    settings: Settings, workers: WorkerProcesses
) -> None:
    orders = sample_orders(30, prefix="Z")
    run_ids = {o.run_id for o in orders}
    env = {"TEST_STEP_DELAY_S": "0.3"}
    a = workers.start("a", *SLOW, env={**env, "DURABLE_PAUSE_AT": "orchestrator.before_outputs:4"})
    b = workers.start("b", *SLOW, env=env)
    wait_for(lambda: "assigned" in workers.log("a") and "assigned" in workers.log("b"), 60, "both to own partitions")
    produce_orders(settings, orders)
    wait_for(lambda: _stopped(a.pid), 60, "worker a to stop itself before a batch's writes")

    # b takes a's partitions once a's session (6 s) expires, and re-processes a's uncommitted inputs.
    wait_for(lambda: {o["run_id"] for o in outcomes(settings)} >= run_ids, 120, "b to decide every run")
    a.send_signal(signal.SIGCONT)
    wait_for(lambda: "fenced" in workers.log("a"), 60, "the zombie to find itself fenced")
    # Back in the group, it takes partitions again (claiming them anew) and works normally.
    wait_for(
        lambda: "assigned" in workers.log("a").split("fenced", 1)[1], 60, "the woken worker to get partitions again"
    )
    more = sample_orders(10, prefix="Y")
    produce_orders(settings, more)
    run_ids |= {o.run_id for o in more}
    wait_for(lambda: {o["run_id"] for o in outcomes(settings)} >= run_ids, 120, "the later orders to be decided")
    b.send_signal(signal.SIGTERM)
    a.send_signal(signal.SIGTERM)
    assert b.wait(30) == 0, workers.log("b")
    assert a.wait(30) == 0, workers.log("a")

    assert_exactly_once(settings, run_ids, OUTPUT_TOPIC)
    commands = read_topic(settings, Topics(settings.namespace).commands)
    twice = [i for i, n in Counter(c["_id"] for c in commands).items() if n > 1]
    assert not twice, f"step commands written twice: {twice[:5]}"

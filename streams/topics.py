"""The topic catalogue: every topic the engine uses, by role, under a namespace."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import TopicCollection
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from streams.config import Settings
from streams.kafka import admin as admin_client

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
TRACES_RETENTION_MS = 7 * DAY_MS  # spans back `durable trace`; the exporter keeps the long-term copy


class TopicLayoutError(RuntimeError):
    """Existing topics do not have the partition counts co-partitioning needs."""


@dataclass(frozen=True)
class Topics:
    """Names of the engine's topics in one namespace.

    All run-keyed topics share one partition count, so partition ``p`` of
    each belongs to the same orchestrator: it sees a run's events in order
    and is the only writer of that run's commands, journal and output.
    """

    namespace: str

    def name(self, logical: str) -> str:
        """A workflow's logical topic name (``fnol.reported``) in this namespace."""
        return f"{self.namespace}.{logical}"

    @property
    def commands(self) -> str:
        return self.name("step.commands")

    @property
    def results(self) -> str:
        return self.name("step.results")

    @property
    def journal(self) -> str:
        return self.name("runs.journal")

    @property
    def run_changelog(self) -> str:
        return self.name("orchestrator.runs-changelog")

    @property
    def owners(self) -> str:
        """Orchestrators' claims on partitions, one record per take-over (streams.fencing), compacted."""
        return self.name("orchestrator.owners")

    @property
    def control(self) -> str:
        """Operators' requests about runs (redrive), keyed by run id like the run's other inputs."""
        return self.name("runs.control")

    @property
    def traces(self) -> str:
        """Finished spans of runs, keyed by run id (the local store behind `durable trace`)."""
        return self.name("runs.traces")

    @property
    def dead_letters(self) -> str:
        return self.name("deadletters")

    @property
    def orchestrator_group(self) -> str:
        return self.name("orchestrator")

    @property
    def executor_group(self) -> str:
        return self.name("executors")


def topic_config(settings: Settings, name: str) -> dict[str, str]:
    """The configuration a topic of this namespace is created with, by its role (streams.retention).

    Compacted (one record per key, tombstones kept a day after compaction): the run changelog and the
    orchestrators' partition claims. Short: step commands, step results, run controls, which matter only
    until the orchestrator or an executor has applied them. Long: the journal (what `durable status` and
    `durable replay` read), dead letters (an operator may redrive them weeks later) and the workflows' own
    input and output topics (claims, decisions). Traces: a week. Real Kafka honours these; the embedded
    broker accepts and ignores them (notes/broker-facts.md).
    """
    topics = Topics(settings.namespace)
    if name in (topics.run_changelog, topics.owners):
        # Segments roll hourly so the cleaner drops replaced states and tombstones within hours, not a week.
        return {"cleanup.policy": "compact", "delete.retention.ms": str(DAY_MS), "segment.ms": str(HOUR_MS)}
    if name in (topics.commands, topics.results, topics.control):
        return _delete_after(settings.short_topic_retention_s)
    if name == topics.traces:
        return {"cleanup.policy": "delete", "retention.ms": str(TRACES_RETENTION_MS)}
    return _delete_after(settings.long_topic_retention_s)


def _delete_after(seconds: float) -> dict[str, str]:
    return {"cleanup.policy": "delete", "retention.ms": str(int(seconds * 1000))}


def ensure_topics(settings: Settings, names: list[str], compacted: frozenset[str] = frozenset()) -> None:
    """Create missing topics with ``settings.partitions`` partitions and their role's retention; check existing ones.

    ``compacted`` names topics outside the catalogue to compact as well. The configuration is set at
    creation only: an existing topic keeps whatever it has (change it with kafka-configs).
    """
    admin = admin_client(settings)
    existing = admin.list_topics(timeout=10).topics
    missing = [n for n in names if n not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    n,
                    num_partitions=settings.partitions,
                    replication_factor=-1,
                    config=_config(settings, n, compacted),
                )
                for n in missing
            ],
            operation_timeout=10,
        )
        for future in futures.values():
            try:
                future.result()
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
        existing = admin.list_topics(timeout=10).topics
    wrong = {n: len(existing[n].partitions) for n in names if len(existing[n].partitions) != settings.partitions}
    if wrong:
        raise TopicLayoutError(f"topics must all have {settings.partitions} partitions for co-partitioning: {wrong}")


def _config(settings: Settings, name: str, compacted: frozenset[str]) -> dict[str, str]:
    config = topic_config(settings, name)
    if name in compacted:
        config = {**config, "cleanup.policy": "compact"}
        config.pop("retention.ms", None)
    return config


def topic_id(settings: Settings, name: str) -> str:
    """The broker's id of a topic: differs if the topic (or the whole broker) was re-created."""
    admin = admin_client(settings)
    description = admin.describe_topics(TopicCollection([name]))[name].result(timeout=10)
    return str(description.topic_id)

"""The Kafka runtime: workers that run workflows on Kafka, and everything they stand on.

What a user needs::

    from streams import Worker, Settings

(``Worker(settings, [workflow]).start()``; ``Settings.from_env()``). The rest
is implementation: the orchestrator and executor loops, the ordered
checkpoint (:mod:`streams.checkpoint`), take-over recovery
(:mod:`streams.recovery`), the run table (:mod:`streams.runtable`), the topic
catalogue, the embedded broker, and the ``durable`` CLI (:mod:`streams.cli`).
"""

from streams.config import Settings
from streams.worker import Worker

__all__ = ["Settings", "Worker"]

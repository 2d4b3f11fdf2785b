"""The generic saga engine: workflow definitions, retry policies and the pure transition.

Nothing here knows about insurance, Kafka or RocksDB.
"""

from processors.engine.workflow import (
    RetryPolicy,
    RunFailure,
    RunResult,
    Step,
    StepContext,
    StepFailure,
    Workflow,
)

__all__ = ["RetryPolicy", "RunFailure", "RunResult", "Step", "StepContext", "StepFailure", "Workflow"]

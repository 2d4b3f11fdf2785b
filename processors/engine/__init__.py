"""The generic saga engine: workflow definitions and the pure transition.

Nothing here knows about insurance, Kafka or RocksDB.
"""

from processors.engine.workflow import Step, StepContext, StepFailure, Workflow

__all__ = ["Step", "StepContext", "StepFailure", "Workflow"]

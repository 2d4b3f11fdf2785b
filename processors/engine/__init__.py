"""The generic saga engine: how a workflow is declared, and the pure transition that runs it.

Nothing here knows about insurance, Kafka or RocksDB. What a user needs::

    from processors.engine import Workflow, Step, RetryPolicy, StepContext, StepFailure

plus :class:`RunResult` / :class:`RunFailure` / :class:`RunPaused` (what a workflow's ``result``,
``on_failure`` and ``on_pause`` receive), :class:`Intake` / :class:`InputRejected` (how its
inputs are validated at the edges) and :class:`Evaluation` / :class:`Gate`
(for a step that judges its run) and :class:`Setting` (a value outside a
step's input that shapes it, recorded with every attempt and served back on
replay). Everything else is implementation.
"""

from processors.engine.context import StepContext
from processors.engine.errors import InputRejected, NonDeterministicCall, StepFailure
from processors.engine.evaluation import Evaluation, Gate
from processors.engine.intake import Intake
from processors.engine.retry import RetryPolicy
from processors.engine.settings import Setting
from processors.engine.workflow import RunFailure, RunPaused, RunResult, Step, Workflow

__all__ = [
    "Evaluation",
    "Gate",
    "InputRejected",
    "Intake",
    "NonDeterministicCall",
    "RetryPolicy",
    "RunFailure",
    "RunPaused",
    "RunResult",
    "Setting",
    "Step",
    "StepContext",
    "StepFailure",
    "Workflow",
]

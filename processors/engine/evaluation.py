"""How a run is judged before its output leaves: gates, and the budgets they held it to.

A step that judges its run (an evaluator) declares ``Step(evaluation=...)``: a
function that reads the step's output as an :class:`Evaluation`. The runtime
marks that step's span with the outcome, and ``durable trace`` marks each
gate on the span it judges and shows the run against its budgets. The engine
does not decide what a gate means; the workflow's ``result`` does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gate:
    """One check of a run: its name, outcome, why, and the span (step) it judges."""

    name: str
    passed: bool
    reason: str = ""
    span: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """A judging step's verdict: its gates and, when the run had them, its budgets."""

    gates: tuple[Gate, ...]
    latency_budget_ms: float | None = None
    cost_budget_usd: float | None = None

    @property
    def passed(self) -> int:
        return sum(1 for g in self.gates if g.passed)

    @property
    def total(self) -> int:
        return len(self.gates)

    @property
    def outcome(self) -> str:
        """``pass`` when every gate passed, else ``fail``."""
        return "pass" if self.passed == self.total else "fail"

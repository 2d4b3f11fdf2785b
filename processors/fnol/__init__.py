"""The FNOL (first notice of loss) claims workflow: a user of the engine."""

from processors.fnol.workflow import FNOL

__all__ = ["FNOL"]

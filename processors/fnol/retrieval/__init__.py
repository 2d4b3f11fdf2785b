"""Policy retrieval for FNOL: hybrid (BM25 + vector) search over the shipped policy wordings, with citations,
and a policy check (in force, covered, limit, deductible) grounded in those wordings and the policy register.

    from processors.fnol.retrieval import default_retriever
    retriever = default_retriever()
    retriever.search("is windscreen damage covered and what is the excess?", k=3)
    retriever.check_policy("POL-348759", "auto_theft", "2026-11-02")
"""

from __future__ import annotations

from processors.fnol.retrieval.documents import DocumentError, Passage
from processors.fnol.retrieval.register import LOSS_TYPES, PolicyRecord, PolicyRegister, RegisterError, ScheduleEntry
from processors.fnol.retrieval.retriever import (
    POLICIES_DIR,
    Citation,
    PolicyCheck,
    PolicyRetriever,
    UnknownLossType,
    default_retriever,
)
from processors.fnol.retrieval.search import CitedPassage

__all__ = [
    "LOSS_TYPES",
    "POLICIES_DIR",
    "Citation",
    "CitedPassage",
    "DocumentError",
    "Passage",
    "PolicyCheck",
    "PolicyRecord",
    "PolicyRegister",
    "PolicyRetriever",
    "RegisterError",
    "ScheduleEntry",
    "UnknownLossType",
    "default_retriever",
]

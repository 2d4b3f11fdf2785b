"""PolicyRetriever: cited search over the shipped policy wordings, and the policy check built on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from processors.fnol.retrieval.documents import Passage, load_wordings, standard_amount
from processors.fnol.retrieval.register import (
    LOSS_TYPES,
    PolicyRecord,
    PolicyRegister,
    ScheduleEntry,
    product_for,
    synthesise_record,
)
from processors.fnol.retrieval.search import CitedPassage, HybridIndex

__all__ = ["POLICIES_DIR", "Citation", "PolicyCheck", "PolicyRetriever", "UnknownLossType", "default_retriever"]

POLICIES_DIR = Path(__file__).resolve().parent.parent / "policies"

# What check_policy asks the index for each loss type: it ranks the candidate
# clauses of the policy's product when more than one is tagged for it.
LOSS_QUERIES: Mapping[str, str] = {
    "auto_collision": "accidental damage and collision to your vehicle",
    "auto_theft": "theft of your vehicle stolen car",
    "auto_glass": "windscreen and glass damage",
    "property_water": "escape of water from a burst pipe",
    "property_fire": "fire and smoke damage to your home",
    "property_theft": "theft and burglary from your home",
    "liability": "liability for injury to visitors and other people",
}


class UnknownLossType(ValueError):
    """The loss type is not one the policies know."""


@dataclass(frozen=True, slots=True)
class Citation:
    """A passage cited by a policy check, with the role it plays: coverage, deductible, limit or endorsement."""

    role: str
    passage: CitedPassage

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the role and the passage's fields."""
        return {"role": self.role, **self.passage.to_dict()}


@dataclass(frozen=True, slots=True)
class PolicyCheck:
    """Whether a policy answers for a loss, and on what terms, with the clauses that say so.

    ``found`` is False when the register does not hold the number (or holds it
    for another tenant); then nothing is in force or covered. ``limit`` and
    ``deductible`` are the schedule's for the loss type, whether or not it is
    covered, and None when the product has no cover of that type.
    """

    policy_number: str
    loss_type: str
    loss_date: date
    found: bool
    in_force: bool
    covered: bool
    limit: float | None
    deductible: float | None
    product: str | None
    reasons: tuple[str, ...]
    citations: tuple[Citation, ...]

    def citation(self, role: str) -> CitedPassage | None:
        """The passage cited for ``role``, if any."""
        return next((c.passage for c in self.citations if c.role == role), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the keys of the stand-in ``policy_check`` tool and more."""
        return {
            "policy_number": self.policy_number,
            "loss_type": self.loss_type,
            "loss_date": self.loss_date.isoformat(),
            "found": self.found,
            "in_force": self.in_force,
            "covered": self.covered,
            "limit": self.limit,
            "deductible": self.deductible,
            "product": self.product,
            "reasons": list(self.reasons),
            "citations": [c.to_dict() for c in self.citations],
        }


class PolicyRetriever:
    """Searches the wordings and checks policies against the register. Build once; it is read-only after."""

    def __init__(
        self,
        policies_dir: Path = POLICIES_DIR,
        *,
        register: PolicyRegister | None = None,
        synthesise_unknown: bool = False,
    ) -> None:
        self.passages = tuple(load_wordings(policies_dir))
        self.index = HybridIndex(self.passages)
        self.register = register if register is not None else PolicyRegister.load(policies_dir / "register.json")
        self.synthesise_unknown = synthesise_unknown
        self.products = tuple(sorted({p.doc_id for p in self.passages}))

    def search(self, query: str, k: int = 5, *, doc_id: str | None = None) -> list[CitedPassage]:
        """The ``k`` clauses that best answer ``query``, best first, each citable."""
        return self.index.search(query, k, doc_id=doc_id)

    def clause(self, product: str, loss_type: str, kind: str) -> CitedPassage | None:
        """The clause of ``product`` of ``kind`` (cover, deductible, limit, ...) for ``loss_type``, if it has one."""
        found = self.index.search(
            LOSS_QUERIES.get(loss_type, loss_type), 1, doc_id=product, kinds=(kind,), loss_type=loss_type
        )
        return found[0] if found else None

    def standard_schedule(self, product: str) -> dict[str, ScheduleEntry]:
        """The excess and limit the wording of ``product`` states for each loss type it covers."""
        schedule: dict[str, ScheduleEntry] = {}
        for loss_type in LOSS_TYPES:
            if self.clause(product, loss_type, "cover") is None:
                continue
            deductible = self._amount(product, loss_type, "deductible")
            limit = self._amount(product, loss_type, "limit")
            if deductible is not None and limit is not None:
                schedule[loss_type] = ScheduleEntry(limit=limit, deductible=deductible)
        return schedule

    def _amount(self, product: str, loss_type: str, kind: str) -> float | None:
        cited = self.clause(product, loss_type, kind)
        passage = self._passage(cited) if cited else None
        return standard_amount(passage, kind) if passage else None

    def _passage(self, cited: CitedPassage) -> Passage:
        return next(p for p in self.passages if p.doc_id == cited.doc_id and p.clause == cited.clause)

    def check_policy(
        self, policy_number: str, loss_type: str, loss_date: date | str, *, tenant_id: str | None = None
    ) -> PolicyCheck:
        """Whether ``policy_number`` covers a ``loss_type`` loss on ``loss_date``, with limit, deductible and citations.

        In force: the loss date falls in the policy period and before any
        lapse. Covered: in force, the product's wording has a cover clause for
        the loss type, and no endorsement on the policy excludes it. With
        ``tenant_id``, a policy held by another tenant is treated as unknown.
        """
        if loss_type not in LOSS_TYPES:
            raise UnknownLossType(f"unknown loss type {loss_type!r}; known: {', '.join(LOSS_TYPES)}")
        day = date.fromisoformat(loss_date) if isinstance(loss_date, str) else loss_date
        record = self.register.get(policy_number)
        if record is None and self.synthesise_unknown:
            schedule = self.standard_schedule(product_for(policy_number, loss_type))
            record = synthesise_record(policy_number, tenant_id or "", loss_type, day, schedule)
        if record is None or (tenant_id is not None and record.tenant_id != tenant_id):
            why = "is not in the policy register" if record is None else f"is not held by tenant {tenant_id}"
            return PolicyCheck(
                policy_number,
                loss_type,
                day,
                False,
                False,
                False,
                None,
                None,
                None,
                (f"policy {policy_number} {why}",),
                (),
            )
        return self._check(record, loss_type, day)

    def _check(self, record: PolicyRecord, loss_type: str, day: date) -> PolicyCheck:
        reasons: list[str] = []
        citations: list[Citation] = []
        in_force = record.in_force_on(day)
        if day < record.inception:
            reasons.append(f"loss on {day} is before the policy incepted on {record.inception}")
        elif day > record.expiry:
            reasons.append(f"loss on {day} is after the policy expired on {record.expiry}")
        elif record.lapsed_on is not None and day >= record.lapsed_on:
            reasons.append(f"policy lapsed on {record.lapsed_on}, before the loss on {day}")

        cover = self.clause(record.product, loss_type, "cover")
        if cover is None:
            reasons.append(f"product {record.product} has no cover for {loss_type}")
        else:
            citations.append(Citation("coverage", cover))
        excluded = False
        for code in record.endorsements:
            endorsement = next(
                (p for p in self.passages if p.doc_id == record.product and p.code == code and loss_type in p.excludes),
                None,
            )
            if endorsement is not None:
                excluded = True
                reasons.append(f"endorsement {code} excludes {loss_type}")
                citations.append(Citation("endorsement", _cited(endorsement)))

        entry = record.schedule.get(loss_type)
        limit = deductible = None
        if cover is not None:
            deductible_clause = self.clause(record.product, loss_type, "deductible")
            limit_clause = self.clause(record.product, loss_type, "limit")
            citations += [
                Citation(role, c) for role, c in (("deductible", deductible_clause), ("limit", limit_clause)) if c
            ]
            # The schedule is what the policyholder bought; the wording's figure is the standard one.
            deductible = entry.deductible if entry else self._amount(record.product, loss_type, "deductible")
            limit = entry.limit if entry else self._amount(record.product, loss_type, "limit")
        covered = in_force and cover is not None and not excluded
        if covered:
            reasons.append(f"{loss_type} covered by {record.product} §{cover.clause if cover else ''}")
        return PolicyCheck(
            policy_number=record.policy_number,
            loss_type=loss_type,
            loss_date=day,
            found=True,
            in_force=in_force,
            covered=covered,
            limit=limit,
            deductible=deductible,
            product=record.product,
            reasons=tuple(reasons),
            citations=tuple(citations),
        )


def _cited(passage: Passage) -> CitedPassage:
    return CitedPassage(
        passage.doc_id, passage.doc_title, passage.section, passage.clause, passage.title, passage.text, 1.0
    )


@lru_cache(maxsize=1)
def default_retriever() -> PolicyRetriever:
    """The retriever over the shipped wordings and register, built once per process."""
    return PolicyRetriever()

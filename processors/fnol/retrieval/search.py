"""Hybrid search over clauses: BM25 and vectors, fused by reciprocal rank, then reranked.

1. BM25 (Okapi, ``rank-bm25``) over the stems of each clause's titles and text.
2. Cosine similarity of hashed-feature vectors (``vectors.py``).
3. Reciprocal rank fusion of the two rankings (k = 60): robust to their
   scores being on different scales, and a clause strong on either side
   surfaces.
4. A rerank of the fused candidates by cross features of query and clause:
   the fused score, how many of the query's terms and concepts the clause
   holds and whether its titles name them (both weighted by the terms' rarity), whether its loss types are the ones
   the query is about, and how many of the query's intents (is it covered,
   the excess, the limit, documents, exclusions) its kind answers.

Everything is deterministic: ties break on document id and clause number.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rank_bm25 import BM25Okapi

from processors.fnol.retrieval.documents import Passage
from processors.fnol.retrieval.text import INTENTS, concepts, loss_types_of, stems
from processors.fnol.retrieval.vectors import HashedEmbedder

__all__ = ["CitedPassage", "HybridIndex"]

RRF_K = 60
CANDIDATES = 20
MIN_COSINE = 0.05
# Rerank weights; the fused rank carries most, the cross features break its near-ties
# and demote clauses that match words but not the question's subject or intent.
WEIGHTS = {"fused": 0.35, "coverage": 0.25, "title": 0.10, "loss_type": 0.15, "intent": 0.15}


@dataclass(frozen=True, slots=True)
class CitedPassage:
    """A retrieved clause with what is needed to cite it, and its rerank score."""

    doc_id: str
    doc_title: str
    section: str
    clause: str
    title: str
    text: str
    score: float

    @property
    def citation(self) -> str:
        """How to cite it: "motor_comprehensive §2.3 Windscreen and glass"."""
        return f"{self.doc_id} §{self.clause} {self.title}"

    def to_dict(self) -> dict[str, str | float]:
        """JSON-ready fields, for step outputs and decisions."""
        return {
            "doc_id": self.doc_id,
            "doc_title": self.doc_title,
            "section": self.section,
            "clause": self.clause,
            "title": self.title,
            "text": self.text,
            "score": self.score,
        }


class HybridIndex:
    """The index of a fixed set of passages; built once, searched many times."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        if not passages:
            raise ValueError("nothing to index")
        self.passages = tuple(passages)
        bodies = [f"{p.doc_title} {p.section} {p.title} {p.text}" for p in self.passages]
        self._stems = [stems(body) for body in bodies]
        self._terms = [set(s) | set(concepts(s)) for s in self._stems]
        self._title_terms = [self._terms_of(f"{p.section} {p.title}") for p in self.passages]
        self._term_df = Counter(term for terms in self._terms for term in terms)
        self._bm25 = BM25Okapi(self._stems)
        self._embedder = HashedEmbedder(bodies)
        self._vectors = self._embedder.embed_all(bodies)

    def _weight(self, term: str) -> float:
        # Inverse document frequency over the clauses: a rare word ("lodgers")
        # says more about what a question is about than a common one ("cover").
        return math.log((1 + len(self.passages)) / (1 + self._term_df.get(term, 0))) + 1.0

    @staticmethod
    def _terms_of(text: str) -> set[str]:
        stemmed = stems(text)
        return set(stemmed) | set(concepts(stemmed))

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        doc_id: str | None = None,
        kinds: Sequence[str] = (),
        loss_type: str | None = None,
    ) -> list[CitedPassage]:
        """The ``k`` best clauses for ``query``, optionally only of one document, of some kinds, or for a loss type."""
        if k <= 0:
            return []
        query_stems = stems(query)
        if not query_stems:
            return []
        allowed = [
            i
            for i, p in enumerate(self.passages)
            if (doc_id is None or p.doc_id == doc_id)
            and (not kinds or set(kinds) & set(p.kinds))
            and (loss_type is None or loss_type in p.loss_types)
        ]
        if not allowed:
            return []

        bm25 = np.asarray(self._bm25.get_scores(query_stems), dtype=np.float64)
        cosine = self._vectors @ self._embedder.embed(query)
        fused: dict[int, float] = {}
        # A cosine under MIN_COSINE is hashing noise (colliding n-grams), not similarity.
        for scores, floor in ((bm25, 0.0), (cosine, MIN_COSINE)):
            ranked = sorted((i for i in allowed if scores[i] > floor), key=lambda i: (-scores[i], i))
            for rank, i in enumerate(ranked[:CANDIDATES], start=1):
                fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank)
        if not fused:
            return []

        query_concepts = set(concepts(query_stems))
        query_terms = set(query_stems) | query_concepts
        query_weight = sum(self._weight(t) for t in query_terms)
        wanted_losses = loss_types_of(query_concepts)
        intents = [INTENTS[c] for c in sorted(query_concepts) if c in INTENTS]
        best = max(fused.values())
        scored: list[tuple[float, int]] = []
        for i, rrf in fused.items():
            passage = self.passages[i]
            features = {
                "fused": rrf / best,
                "coverage": sum(self._weight(t) for t in query_terms & self._terms[i]) / query_weight,
                "title": sum(self._weight(t) for t in query_terms & self._title_terms[i]) / query_weight,
                "loss_type": _loss_type_match(wanted_losses, set(passage.loss_types)),
                "intent": sum(1 for kinds in intents if kinds & set(passage.kinds)) / len(intents) if intents else 0.0,
            }
            scored.append((round(sum(WEIGHTS[name] * value for name, value in features.items()), 6), i))
        scored.sort(key=lambda item: (-item[0], self.passages[item[1]].doc_id, _clause_key(self.passages[item[1]])))
        return [_cite(self.passages[i], score) for score, i in scored[:k]]


def _loss_type_match(wanted: set[str], have: set[str]) -> float:
    if not wanted or not have:
        return 0.0
    return 1.0 if wanted & have else -1.0  # a clause about another loss type is an answer to another question


def _clause_key(passage: Passage) -> tuple[int, ...]:
    return tuple(int(part) for part in passage.clause.split("."))


def _cite(passage: Passage, score: float) -> CitedPassage:
    return CitedPassage(
        doc_id=passage.doc_id,
        doc_title=passage.doc_title,
        section=passage.section,
        clause=passage.clause,
        title=passage.title,
        text=passage.text,
        score=score,
    )

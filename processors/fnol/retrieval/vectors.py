"""The vector side: a deterministic hashed-feature embedding, computed with numpy. No learned model.

A text becomes a 2,048-dimensional unit vector by hashing weighted features
into it (the "hashing trick"), each feature weighted by its inverse document
frequency over the indexed passages:

- word stems (weight 1.0) and stem bigrams (0.5): lexical overlap and phrases;
- character 4-grams of each word (0.25, shared over the word's grams): close
  spellings and word forms ("windshield" ~ "windscreen", typos);
- thesaurus concepts (1.5): synonyms a claims handler would treat as one
  ("deductible" ~ "excess", "burst pipe" ~ "escape of water").

Why not a learned embedding: the light, offline options on PyPI either need
torch (sentence-transformers models) or download weights from a model hub at
run time (model2vec); this one installs nothing, is exact across machines
and processes (blake2b, not Python's salted ``hash``), and on a corpus of a
few dozen clauses written in one register it is what does the work anyway.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from processors.fnol.retrieval.text import concepts, stems, words

__all__ = ["DIMENSIONS", "HashedEmbedder", "features"]

DIMENSIONS = 2048
Vector = npt.NDArray[np.float32]


def features(text: str) -> dict[str, float]:
    """The weighted features of ``text`` before hashing."""
    stemmed = stems(text)
    found: defaultdict[str, float] = defaultdict(float)
    for stem in stemmed:
        found[f"w:{stem}"] += 1.0
    for left, right in pairwise(stemmed):
        found[f"b:{left}_{right}"] += 0.5
    for word in words(text):
        padded = f"#{word}#"
        grams = [padded[i : i + 4] for i in range(max(1, len(padded) - 3))]
        for gram in grams:
            found[f"c:{gram}"] += 0.25 * 4 / max(4, len(grams))
    for concept in concepts(stemmed):
        found[f"k:{concept}"] += 1.5
    return dict(found)


@lru_cache(maxsize=65536)
def _slot(feature: str) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    # One bit picks the sign, so colliding features cancel on average instead of adding up.
    return value % DIMENSIONS, 1.0 if (value >> 63) & 1 else -1.0


class HashedEmbedder:
    """Embeds texts into unit vectors; fitted once on the corpus for its feature IDF."""

    def __init__(self, corpus: Sequence[str]) -> None:
        self._documents = len(corpus)
        frequency: Counter[str] = Counter()
        for text in corpus:
            frequency.update(set(features(text)))
        self._df = frequency

    def _idf(self, feature: str) -> float:
        return math.log((1 + self._documents) / (1 + self._df.get(feature, 0))) + 1.0

    def embed(self, text: str) -> Vector:
        """The unit vector of ``text`` (all zeros for a text without features)."""
        vector = np.zeros(DIMENSIONS, dtype=np.float32)
        for feature, weight in features(text).items():
            index, sign = _slot(feature)
            vector[index] += sign * weight * self._idf(feature)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    def embed_all(self, texts: Iterable[str]) -> npt.NDArray[np.float32]:
        """A matrix with one unit row per text."""
        return np.vstack([self.embed(text) for text in texts])

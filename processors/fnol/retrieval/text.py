"""Text normalisation shared by both retrieval sides: tokens, stems and a small insurance thesaurus."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType

import snowballstemmer

__all__ = ["CONCEPT_LOSS_TYPES", "INTENTS", "concepts", "loss_types_of", "stems", "words"]

_STEMMER = snowballstemmer.stemmer("english")
_STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be been by can do does for from had has have how i if in into is it its me my of on "
        "or our so that the their them then there they this to under was we were what when where which while "
        "who will with would you your",
    )
)

# Words that mean the same thing to a claims handler, grouped under one concept.
# This is what lets "windshield" find "windscreen", "deductible" find "excess"
# and "burst pipe" find "escape of water": the vector side matches concepts,
# the reranker infers the loss type and the question's intent from them.
_THESAURUS: Mapping[str, tuple[str, ...]] = {
    "glass": ("windscreen", "windshield", "glass", "chip", "crack", "sunroof"),
    "excess": ("excess", "deductible", "deduct"),
    "limit": ("limit", "maximum", "most", "much", "indemnity", "cap"),
    "theft": ("theft", "steal", "stolen", "stole", "burglar", "burglary", "thief", "robbery", "robbed"),
    "water": ("water", "pipe", "burst", "leak", "leaking", "escape", "tank", "radiator", "plumber"),
    "fire": ("fire", "smoke", "burn", "burnt", "blaze", "lightning", "explosion"),
    "collision": ("collision", "crash", "collide", "accident", "accidental", "hit", "dent", "bump"),
    "injury": ("injury", "injured", "injure", "slip", "slipped", "trip", "fall", "hurt", "visitor", "liability"),
    "documents": ("document", "documents", "send", "report", "evidence", "photo", "photos", "receipt", "proof"),
    "exclusion": ("exclude", "excluded", "exclusion", "except"),
    "cover": ("cover", "covered", "insured", "insure", "protect"),
    "vehicle": ("car", "vehicle", "motor", "van", "driver", "drive"),
    "home": ("home", "house", "building", "buildings", "contents", "flat", "premises", "kitchen", "bathroom"),
}
_CONCEPT_OF_STEM: Mapping[str, str] = MappingProxyType(
    {_STEMMER.stemWord(word): concept for concept, group in _THESAURUS.items() for word in group}
)

# Which loss types a concept points to (theft needs a second concept to pick motor or home).
CONCEPT_LOSS_TYPES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "glass": ("auto_glass",),
        "collision": ("auto_collision",),
        "water": ("property_water",),
        "fire": ("property_fire",),
        "injury": ("liability",),
        "theft": ("auto_theft", "property_theft"),
    }
)
# Concepts that say what a question asks for, and the clause kinds that answer it
# ("is it covered?" is answered by a cover clause or by an exclusion).
INTENTS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "cover": frozenset({"cover", "exclusion"}),
        "excess": frozenset({"deductible"}),
        "limit": frozenset({"limit"}),
        "documents": frozenset({"documents"}),
        "exclusion": frozenset({"exclusion"}),
    }
)


def words(text: str) -> list[str]:
    """Lowercase words and numbers, stopwords dropped ("£2,000" gives "2000")."""
    return [w for w in re.findall(r"[a-z0-9]+", text.lower().replace(",", "")) if w not in _STOPWORDS]


@lru_cache(maxsize=4096)
def _stem(word: str) -> str:
    return str(_STEMMER.stemWord(word))


def stems(text: str) -> list[str]:
    """Snowball (Porter 2) stems of ``words(text)``."""
    return [_stem(w) for w in words(text)]


def concepts(stemmed: list[str]) -> list[str]:
    """The thesaurus concepts of a list of stems, in order, with repeats."""
    return [_CONCEPT_OF_STEM[s] for s in stemmed if s in _CONCEPT_OF_STEM]


def loss_types_of(found: set[str]) -> set[str]:
    """Loss types a set of concepts points to; theft is narrowed to motor or home when the text says which."""
    result: set[str] = set()
    for concept in found:
        result.update(CONCEPT_LOSS_TYPES.get(concept, ()))
    if "theft" in found and ("vehicle" in found) != ("home" in found):
        result.discard("property_theft" if "vehicle" in found else "auto_theft")
    return result

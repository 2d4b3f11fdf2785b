"""Policy wordings: Markdown documents chunked into one passage per numbered clause.

A wording is ``# Title``, then ``## N Section`` headings, then ``### N.M Clause``
headings each followed by a tag comment and the clause text::

    ### 2.3 Windscreen and glass
    <!-- clause: kinds=cover,deductible,limit; loss_types=auto_glass -->
    We cover damage to the windscreen ...

Tag keys: ``kinds`` (cover, exclusion, deductible, limit, documents,
condition, definition, endorsement), ``loss_types``, and for endorsements
``code`` and ``excludes`` (the loss types the endorsement removes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DocumentError", "Passage", "load_wordings", "parse_wording", "standard_amount"]

_TAG = re.compile(r"<!--\s*clause:(?P<body>.*?)-->", re.DOTALL)
_AMOUNT = re.compile(r"£\s?(\d[\d,]*(?:\.\d+)?)")


class DocumentError(ValueError):
    """A policy wording does not follow the expected layout."""


@dataclass(frozen=True, slots=True)
class Passage:
    """One clause of one wording: the unit that is indexed, retrieved and cited."""

    doc_id: str
    doc_title: str
    section: str
    clause: str
    title: str
    text: str
    kinds: tuple[str, ...]
    loss_types: tuple[str, ...]
    code: str = ""
    excludes: tuple[str, ...] = ()

    @property
    def citation(self) -> str:
        """How the passage is cited: "motor_comprehensive §2.3 Windscreen and glass"."""
        return f"{self.doc_id} §{self.clause} {self.title}"


def parse_wording(path: Path) -> list[Passage]:
    """The clauses of one wording file; ``DocumentError`` if its layout is broken."""
    doc_id = path.stem
    doc_title = ""
    section = ""
    passages: list[Passage] = []
    current: tuple[str, str] | None = None
    body: list[str] = []

    def flush() -> None:
        if current is not None:
            passages.append(_passage(doc_id, doc_title, section, current, "\n".join(body)))

    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            flush()
            number, _, title = line[4:].strip().partition(" ")
            if not re.fullmatch(r"\d+\.\d+", number) or not title:
                raise DocumentError(f"{path.name}: clause heading {line!r} is not '### N.M Title'")
            current, body = (number, title.strip()), []
        elif line.startswith("## "):
            flush()
            current, body = None, []
            section = line[3:].strip()
        elif line.startswith("# "):
            doc_title = line[2:].strip()
        elif current is not None:
            body.append(line)
    flush()
    if not doc_title or not passages:
        raise DocumentError(f"{path.name}: a wording needs a '# Title' and at least one '### N.M' clause")
    return passages


def _passage(doc_id: str, doc_title: str, section: str, heading: tuple[str, str], raw: str) -> Passage:
    tags: dict[str, str] = {}
    match = _TAG.search(raw)
    if match:
        for item in match.group("body").split(";"):
            key, _, value = item.partition("=")
            if key.strip():
                tags[key.strip()] = value.strip()
    text = " ".join(_TAG.sub("", raw).split())

    def listed(key: str) -> tuple[str, ...]:
        return tuple(v.strip() for v in tags.get(key, "").split(",") if v.strip())

    return Passage(
        doc_id=doc_id,
        doc_title=doc_title,
        section=section,
        clause=heading[0],
        title=heading[1],
        text=text,
        kinds=listed("kinds") or ("general",),
        loss_types=listed("loss_types"),
        code=tags.get("code", ""),
        excludes=listed("excludes"),
    )


def load_wordings(directory: Path) -> list[Passage]:
    """Every clause of every ``*.md`` wording in ``directory``, in file then clause order."""
    files = sorted(directory.glob("*.md"))
    if not files:
        raise DocumentError(f"no policy wordings (*.md) in {directory}")
    return [passage for path in files for passage in parse_wording(path)]


def standard_amount(passage: Passage, kind: str) -> float | None:
    """The standard excess (``kind="deductible"``) or limit (``kind="limit"``) a clause states, if it states one.

    Read from the sentence that names it: the first "£" amount in a sentence
    about the excess, or about the most we pay; "no excess" reads as 0.
    """
    cue = ("excess", "deductible") if kind == "deductible" else ("most we pay",)
    for sentence in re.split(r"(?<=\.)\s+", passage.text):
        lowered = sentence.lower()
        if not any(c in lowered for c in cue):
            continue
        found = _AMOUNT.search(sentence)
        if found:
            return float(found.group(1).replace(",", ""))
        if kind == "deductible" and "no excess" in lowered:
            return 0.0
    return None

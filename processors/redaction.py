"""Free-text redaction: the one place that finds personal data in text and takes it out.

Every way in (``durable produce``, the HTTP gateway, the demo) scrubs free
text here before Kafka, and the evaluator's ``no_personal_data`` gate asks
:func:`kinds` the same question of the outputs, so what is redacted at the
edge and what the gate looks for cannot drift apart.

The detectors are Presidio's pattern recognizers, run directly (no
``AnalyzerEngine``, so no spaCy model and nothing downloaded): emails, phone
numbers (Google's ``phonenumbers``, national and international formats),
UK National Insurance numbers, IBANs (checksum-validated), payment cards
(Luhn-validated), UK postcodes and vehicle registrations; plus three pattern
recognizers of ours on Presidio's :class:`PatternRecognizer`: street
addresses ("12 Acacia Avenue"), phone-shaped digit runs that
``phonenumbers`` finds invalid (a careless upstream's typo is still a phone
number to a reader) and names introduced the way people write them ("my
name is Jane Doe"). The claimant's own name, and each of its parts, is a
deny list: found wherever it appears, in any case.

A report's own values (name, email, phone, plate) become the same keyed
tokens as its structured fields (``[name:pii_...]``), so a reader can still
tell "the claimant" apart from a stranger; anything else found becomes its
kind in brackets (``[phone]``). Overlapping findings are merged, so a
number that is both phone-shaped and a card number is taken out whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

from presidio_analyzer import Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    PhoneRecognizer,
    UkNinoRecognizer,
    UkPostcodeRecognizer,
)

from processors import pii

# Which kind wins where findings overlap: a known value first (it carries its token), then the most specific.
PRIORITY = ("card", "iban", "nino", "email", "phone", "address", "postcode", "plate", "name")
KINDS = frozenset(PRIORITY)

# What an email field must look like (the intake validates claimant.email with it).
EMAIL_SHAPE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")

_STREET_TYPES = (
    "street|st|road|rd|avenue|ave|lane|ln|drive|dr|close|way|crescent|cres|place|pl|court|ct|terrace|gardens|"
    "grove|hill|row|square|sq|mews|walk|parade|park|rise|view|green|wharf|yard|boulevard|highway"
)
# "12 Acacia Avenue", "Flat 3, 27b Long Lane", "221B Baker St": a house number, one to four words, a street type.
_ADDRESS = (
    r"\b(?:(?:flat|apartment|apt|unit)\s+\d+[a-z]?,?\s+)?\d{1,4}[a-z]?,?\s+"
    rf"(?:[a-z][a-z'-]*\s+){{1,4}}(?:{_STREET_TYPES})\b\.?"
)
# UK numbers as people type them, valid or not: +44 / 0044 / 0, then 9 or 10 more digits with spaces, dashes, (0).
_PHONE_SHAPE = r"(?<![\w+])(?:(?:\+|00)\d{1,3}[ .-]?(?:\(0\)[ .-]?)?|\(?0)\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}(?![\w])"
_PLATE = r"\b[a-z]{2}\d{2}\s?[a-z]{3}\b"
# A raw name introduced the way claimants write it: the intro in any case, the name capitalised.
_NAMED = r"\b(?i:i am|i'm|my name is)\s+[A-Z][a-z]+(?:[ -][A-Z][a-z]+)+"
_CASE_BLIND = re.DOTALL | re.MULTILINE | re.IGNORECASE


@dataclass(frozen=True, order=True)
class Finding:
    """One span of ``text[start:end]`` that is personal data of ``kind`` (``label`` replaces it)."""

    start: int
    end: int
    kind: str
    label: str


class _OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer without its top-level-domain check.

    That check (tldextract) fetches the public suffix list over the network on
    first use; a redactor must work offline, and taking out something shaped
    like an email at an unknown domain is the safe side.
    """

    def validate_result(self, pattern_text: str) -> bool | None:
        """Neither confirm nor refute: keep the pattern's score."""
        return None


@cache
def _recognizers() -> tuple[tuple[str, PatternRecognizer | PhoneRecognizer], ...]:
    """The detectors, built once per process (compiling Presidio's patterns costs milliseconds)."""
    return (
        ("email", _OfflineEmailRecognizer()),
        # GB for national formats; an international number (+33 ...) is parsed whatever the region.
        ("phone", PhoneRecognizer(supported_regions=("GB",), leniency=1)),
        ("phone", PatternRecognizer("PHONE_SHAPE", patterns=[Pattern("phone shape", _PHONE_SHAPE, 0.4)])),
        ("nino", UkNinoRecognizer()),
        ("iban", IbanRecognizer()),
        ("card", CreditCardRecognizer()),
        ("postcode", UkPostcodeRecognizer()),
        (
            "address",
            PatternRecognizer(
                "STREET_ADDRESS", patterns=[Pattern("street", _ADDRESS, 0.5)], global_regex_flags=_CASE_BLIND
            ),
        ),
        ("plate", PatternRecognizer("UK_PLATE", patterns=[Pattern("plate", _PLATE, 0.5)], global_regex_flags=_CASE_BLIND)),
        (
            "name",
            PatternRecognizer(
                "INTRODUCED_NAME",
                patterns=[Pattern("introduced", _NAMED, 0.5)],
                global_regex_flags=re.DOTALL | re.MULTILINE,
            ),
        ),
    )


# Every detector above needs one of these to find anything: a digit (phone, card, IBAN, NINO, postcode, plate,
# house number), an "@" (email) or a name's introduction. Text without any is skipped: most strings a gate checks
# (queues, severities, document names) are such, and the ten recognizers cost ~20 % of an FNOL worker's time.
_COULD_HOLD = re.compile(r"\d|@|\b(?:i am|i'm|my name is)\s", re.IGNORECASE)


def _detected(text: str) -> Iterable[Finding]:
    if not _COULD_HOLD.search(text):
        return
    for kind, recognizer in _recognizers():
        for r in recognizer.analyze(text, recognizer.supported_entities):
            yield Finding(r.start, r.end, kind, f"[{kind}]")


def _known(text: str, known: Mapping[str, str], tenant: str) -> Iterable[Finding]:
    """The report's own values, each labelled with its keyed token; the name's parts count as the name."""
    for kind, value in known.items():
        value = value.strip() if value else ""
        if not value:
            continue
        label = f"[{kind}:{pii.token(kind, value, tenant)}]"
        terms = [value]
        if kind == "name":
            terms += [part for part in re.split(r"[\s,]+", value) if len(part) >= 3]
        recognizer = PatternRecognizer(kind.upper(), deny_list=terms, global_regex_flags=_CASE_BLIND)
        for r in recognizer.analyze(text, recognizer.supported_entities):
            yield Finding(r.start, r.end, kind, label)


def _rank(f: Finding) -> tuple[int, int]:
    # A known value's token wins over a bare kind; then the more specific kind.
    return (0 if ":" in f.label else 1, PRIORITY.index(f.kind) if f.kind in KINDS else len(PRIORITY))


def _merged(findings: Iterable[Finding]) -> list[Finding]:
    """Overlapping findings as one span (their union), labelled by the best ranked of them."""
    out: list[Finding] = []
    for f in sorted(findings):
        if out and f.start < out[-1].end:
            last = out[-1]
            best = min((last, f), key=_rank)
            out[-1] = Finding(last.start, max(last.end, f.end), best.kind, best.label)
        else:
            out.append(f)
    return out


def find(text: str, known: Mapping[str, str] | None = None, tenant: str = "") -> list[Finding]:
    """Every span of personal data in ``text``, merged and in order (``known``: kind -> the report's own value)."""
    if not text:
        return []
    findings = list(_detected(text))
    if known:
        findings += _known(text, known, tenant)
    return _merged(findings)


def redact(text: str, known: Mapping[str, str] | None = None, tenant: str = "") -> str:
    """``text`` with each finding replaced by its label (own values by their token of ``tenant``)."""
    out, at = [], 0
    for f in find(text, known, tenant):
        out += [text[at : f.start], f.label]
        at = f.end
    out.append(text[at:])
    return "".join(out)


def kinds(text: str, ignore: Iterable[str] = ()) -> set[str]:
    """The kinds of personal data in ``text`` (for gates that refuse rather than redact)."""
    skip = set(ignore)
    return {f.kind for f in _merged(_detected(text)) if f.kind not in skip} if text else set()


__all__ = ["EMAIL_SHAPE", "KINDS", "Finding", "find", "kinds", "redact"]

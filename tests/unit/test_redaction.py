"""The redaction corpus: every kind of personal data the edge must take out of free text, and what it must leave."""

from __future__ import annotations

import json

import pytest

from processors import pii, redaction
from processors.engine import InputRejected
from processors.fnol.evaluator import personal_data
from processors.fnol.intake import accept

# kind -> raw values as careless upstreams write them (each must vanish from any free text it is put in).
CORPUS: dict[str, list[str]] = {
    "email": ["jane.doe@example.co.uk", "J.Doe+claims@mail.example.com"],
    "phone": ["+44 (0)20 7946 0958", "07700-900123", "07700 900123", "+44 7700 900123", "020 7946 0958", "+33 1 23 45 67 89"],
    "nino": ["AB 12 34 56 C", "AB123456C", "ab123456c"],
    "iban": ["GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432", "DE89 3704 0044 0532 0130 00"],
    "card": ["4111 1111 1111 1111", "4111-1111-1111-1111", "5555555555554444", "3782 822463 10005"],
    "address": ["12 Acacia Avenue", "Flat 3, 27b Long Lane", "221B Baker Street"],
    "postcode": ["SW1A 2AA", "EH1 1YZ", "M1 1AE"],
    "plate": ["AB12 CDE", "ef79efk"],
}
FRAMES = [
    "{v}",
    "Reach me at {v} after 6pm.",
    "({v})",
    "details:{v};end",
    "The other driver gave {v} and drove off",
]
NAME = "Priya Raman-Okafor"
NAME_FORMS = ["Priya Raman-Okafor", "PRIYA RAMAN-OKAFOR", "priya", "Raman-Okafor", "Ms Raman-Okafor said"]
NOT_PERSONAL = [
    "Reserve 5,600.00 GBP on 2026-11-01, claim CLM-000123, policy POL-348759.",
    "Card ending 4111 1111 1111 1112 was declined",  # fails Luhn: not a card number
    "The windscreen cracked at 60 mph on the M25 near junction 12.",
    "Queue motor_fast_track; documents: police_report, repair_estimate",
]


@pytest.mark.parametrize("kind", sorted(CORPUS))
def test_every_kind_in_every_frame_is_taken_out(kind: str) -> None:
    for value in CORPUS[kind]:
        for frame in FRAMES:
            text = frame.format(v=value)
            out = redaction.redact(text)
            assert value not in out and value.lower() not in out.lower(), (text, out)
            assert "[" in out, (text, out)


def test_the_claimants_own_values_become_their_tokens() -> None:
    known = {"name": NAME, "email": "priya@example.com", "phone": "07700 900456", "plate": "EF79 EFK"}
    for form in NAME_FORMS:
        out = redaction.redact(f"Witness statement: {form} saw it.", known, "acme")
        assert f"[name:{pii.token('name', NAME, 'acme')}]" in out, out
        assert "priya" not in out.lower() and "okafor" not in out.lower(), out
    out = redaction.redact("mail priya@example.com or ring 07700 900456; car EF79 EFK", known, "acme")
    for kind in ("email", "phone", "plate"):
        assert f"[{kind}:{pii.token(kind, known[kind], 'acme')}]" in out, out


def test_text_without_personal_data_is_left_as_it_is() -> None:
    for text in NOT_PERSONAL:
        assert redaction.redact(text) == text
        assert redaction.kinds(text, ("postcode",)) == set(), text


def test_overlapping_findings_are_taken_out_whole() -> None:
    out = redaction.redact("pay 4111 1111 1111 1111 now")
    assert out == "pay [card] now"
    assert redaction.kinds("IBAN GB82 WEST 1234 5698 7654 32") == {"iban"}


def _report(**changes: object) -> dict[str, object]:
    report: dict[str, object] = {
        "claim_id": "CLM-R1",
        "tenant_id": "acme",
        "policy_number": "POL-1",
        "reported_at": "2026-11-27T10:15:00Z",
        "loss_date": "2026-11-26",
        "loss_type": "auto_glass",
        "description": "",
        "location": {"postcode": "SW1A 1AA", "country": "GB"},
        "claimant": {"name": NAME, "email": "priya@example.com", "phone": "+44 7700 900456"},
        "vehicle": {"plate": "EF79 EFK", "make": "Ford", "model": "Focus", "year": 2019},
        "estimated_amount": 100.0,
        "currency": "GBP",
    }
    report.update(changes)
    return report


def test_intake_scrubs_every_free_text_field_and_tokenises_the_structured_ones() -> None:
    every = "; ".join(v for values in CORPUS.values() for v in values) + f"; signed {NAME}"
    record = accept(
        _report(description=every, vehicle={"plate": "EF79 EFK", "make": "Ford AB123456C", "model": "jo@x.io Focus"})
    )
    dumped = json.dumps(record)
    for value in [*(v for values in CORPUS.values() for v in values), NAME, "priya@example.com", "+44 7700 900456"]:
        assert value not in dumped and value.lower() not in dumped.lower(), value
    assert record["claimant"]["name_token"].startswith("pii_")
    assert personal_data(record) == []  # what the edge lets through, the gate finds clean


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("claim_id", "CLM-4111111111111111"),
        ("policy_number", "AB123456C"),
        ("location", {"postcode": "4111111111111111", "country": "GB"}),
        ("photos", [{"uri": "https://img.example.com/jane.doe@example.co.uk.jpg", "labels": []}]),
        ("location", {"postcode": "SW1A 1AA", "country": "jane.doe@example.co.uk"}),
    ],
)
def test_an_identifier_holding_personal_data_is_refused_without_echoing_it(field: str, value: object) -> None:
    with pytest.raises(InputRejected) as caught:
        accept(_report(**{field: value}))
    reason = str(caught.value)
    assert field in reason
    for raw in ("4111111111111111", "AB123456C", "jane.doe@example.co.uk"):
        assert raw not in reason, reason


def test_the_gate_finds_each_kind_in_outputs() -> None:
    for kind, values in CORPUS.items():
        if kind == "postcode":
            continue  # a postcode alone is location, kept raw in the report on purpose
        found = personal_data({"route": {"note": f"call about {values[0]}"}})
        assert found, (kind, values[0])


def test_skipping_text_without_a_digit_an_at_or_an_introduction_misses_nothing() -> None:
    """The shortcut in front of the recognizers finds exactly what running every recognizer finds."""
    from processors.fnol.intake import SAMPLES

    texts = [f.format(v=v) for values in CORPUS.values() for v in values for f in FRAMES]
    texts += ["my name is Jane Doe", "I'm Jane Doe-Smith", "I AM Jane Doe", "standard_claims", "MEDIUM", "\uff10\uff17\uff17\uff10\uff10 \uff19\uff10\uff10\uff11\uff12\uff13"]  # full-width digits
    for line in SAMPLES.read_text().splitlines():
        report = json.loads(line)
        texts += [str(v) for v in report.values() if isinstance(v, str)]
    for text in texts:
        everything = sorted(
            (r.start, r.end, kind)
            for kind, recognizer in redaction._recognizers()
            for r in recognizer.analyze(text, recognizer.supported_entities)
        )
        assert sorted((f.start, f.end, f.kind) for f in redaction._detected(text)) == everything, text

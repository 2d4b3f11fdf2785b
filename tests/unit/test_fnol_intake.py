"""FNOL intake: the JSON-line contract, line-numbered rejections, and no personal data on Kafka."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from processors import pii
from processors.engine.inputs import Accepted, Rejected, parse_lines
from processors.fnol import FNOL
from processors.fnol.intake import FnolReport, tokenise
from schemas import from_bytes, to_bytes
from schemas.fnol.models import FnolReported

SAMPLES = Path(__file__).resolve().parents[2] / "processors" / "fnol" / "samples"
GOOD_FILE = SAMPLES / "fnol.jsonl"
MALFORMED_FILE = SAMPLES / "fnol_malformed.jsonl"


def _parse(path: Path) -> list[Accepted | Rejected]:
    with path.open("rb") as f:
        return list(parse_lines(FNOL, f))


def _raw_claims(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- the sample files


def test_every_sample_line_is_good() -> None:
    results = _parse(GOOD_FILE)
    bad = [r for r in results if isinstance(r, Rejected)]
    assert bad == []
    good = [r for r in results if isinstance(r, Accepted)]
    assert len(good) >= 50
    assert [g.line_no for g in good] == list(range(1, len(good) + 1))
    raw = _raw_claims(GOOD_FILE)
    assert [g.record["claim_id"] for g in good] == [c["claim_id"] for c in raw]
    assert all(g.run_id == f"fnol:{g.record['tenant_id']}:{g.record['claim_id']}" for g in good)
    assert len({g.run_id for g in good}) == len(good)


def test_samples_cover_every_loss_type() -> None:
    loss_types = {g.record["loss_type"] for g in _parse(GOOD_FILE) if isinstance(g, Accepted)}
    assert loss_types == {
        "auto_collision",
        "auto_theft",
        "auto_glass",
        "property_water",
        "property_fire",
        "property_theft",
        "liability",
    }


# Line number -> words the reason must contain (the field at fault, or why the line is not a report).
MALFORMED_REASONS: dict[int, list[str]] = {
    2: ["not JSON"],
    3: ["policy_number", "reported_at", "loss_date"],
    4: ["loss_type"],
    5: ["reported_at"],
    6: ["estimated_amount"],
    7: ["JSON object", "list"],
    8: ["claim_id", "claimant.email", "currency"],
    9: ["not JSON"],
}


def test_malformed_file_rejects_each_bad_line_with_its_number_and_field() -> None:
    results = _parse(MALFORMED_FILE)
    good = [r for r in results if isinstance(r, Accepted)]
    bad = {r.line_no: r.reason for r in results if isinstance(r, Rejected)}
    assert [g.line_no for g in good] == [1]
    assert sorted(bad) == sorted(MALFORMED_REASONS)
    for line_no, words in MALFORMED_REASONS.items():
        for word in words:
            assert word in bad[line_no], f"line {line_no}: {bad[line_no]!r} does not mention {word!r}"


def test_reason_does_not_blame_fields_that_are_fine() -> None:
    bad = {r.line_no: r.reason for r in _parse(MALFORMED_FILE) if isinstance(r, Rejected)}
    assert "claim_id" not in bad[4] and "currency" not in bad[6] and "loss_type" not in bad[5]


def test_blank_lines_are_skipped_but_still_counted() -> None:
    line = GOOD_FILE.read_text().splitlines()[0]
    results = list(parse_lines(FNOL, ["", "   ", line, "\n", "{oops"]))
    assert [(type(r).__name__, r.line_no) for r in results] == [("Accepted", 3), ("Rejected", 5)]


def test_str_and_bytes_lines_parse_the_same() -> None:
    line = GOOD_FILE.read_text().splitlines()[0]
    [as_str] = parse_lines(FNOL, [line])
    [as_bytes] = parse_lines(FNOL, [line.encode()])
    assert as_str == as_bytes


def test_oversized_line_is_rejected_without_parsing() -> None:
    claim = _raw_claims(GOOD_FILE)[0]
    claim["padding"] = "x" * (256 * 1024)
    [result] = parse_lines(FNOL, [json.dumps(claim)])
    assert isinstance(result, Rejected) and "larger than" in result.reason


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    claim = _raw_claims(GOOD_FILE)[0]
    claim["new_upstream_field"] = {"anything": [1, 2]}
    [result] = parse_lines(FNOL, [json.dumps(claim)])
    assert isinstance(result, Accepted)


def test_not_json_reason_points_at_the_column_where_the_line_breaks() -> None:
    line = '{"claim_id": "CLM-900006", "truncated": \n'
    [result] = parse_lines(FNOL, [line])
    assert isinstance(result, Rejected)
    # The value is missing just past the last character of the line (newline excluded).
    assert f"column {len(line.rstrip(chr(10))) + 1}" in result.reason


# ---------------------------------------------------------------- personal data


def _pii_values(claim: dict[str, Any]) -> list[str]:
    c = claim["claimant"]
    values = [c["name"], *(part for part in c["name"].split() if len(part) >= 3)]
    for value in (c.get("email"), c.get("phone"), (claim.get("vehicle") or {}).get("plate")):
        if value:
            values.append(value)
    for value in (c.get("phone"), (claim.get("vehicle") or {}).get("plate")):
        if value:
            values.append(value.replace(" ", ""))
    return values


GOOD_CLAIMS = _raw_claims(GOOD_FILE)
MALFORMED_GOOD_CLAIMS = [json.loads(MALFORMED_FILE.read_text().splitlines()[0])]


@pytest.mark.parametrize("claim", GOOD_CLAIMS + MALFORMED_GOOD_CLAIMS, ids=lambda c: c["claim_id"])
def test_kafka_bytes_hold_no_personal_data(claim: dict[str, Any]) -> None:
    record = tokenise(FnolReport.model_validate(claim))
    data = to_bytes(record).decode("utf-8", errors="replace").casefold()
    for value in _pii_values(claim):
        assert value.casefold() not in data, f"{value!r} reached Kafka"
    # Tokens stand in for each personal value, and the record is still usable.
    assert record.claimant.name_token.startswith("pii_")
    assert (record.claimant.email_token is not None) == bool(claim["claimant"].get("email"))
    assert (record.claimant.phone_token is not None) == bool(claim["claimant"].get("phone"))
    plate = (claim.get("vehicle") or {}).get("plate")
    if plate:
        assert record.vehicle is not None and record.vehicle.plate_token == pii.token("plate", plate, claim["tenant_id"])
    assert from_bytes(to_bytes(record), FnolReported) == record


def test_pii_check_is_not_vacuous() -> None:
    """The samples really do put personal data in the free text, which the scrubber then removes."""
    with_name = [c for c in GOOD_CLAIMS if c["claimant"]["name"] in c["description"]]
    with_phone = [c for c in GOOD_CLAIMS if c["claimant"].get("phone", "-") in c["description"]]
    with_email = [c for c in GOOD_CLAIMS if c["claimant"].get("email", "-") in c["description"]]
    with_plate = [c for c in GOOD_CLAIMS if c.get("vehicle") and c["vehicle"]["plate"] in c["description"]]
    assert with_name and with_phone and with_email and with_plate


def test_scrub_catches_personal_data_written_differently() -> None:
    claim = GOOD_CLAIMS[0]
    name, phone, plate = claim["claimant"]["name"], claim["claimant"]["phone"], claim["vehicle"]["plate"]
    text = f"{name.upper()} here; {phone.replace(' ', '')}; plate {plate.replace(' ', '').lower()}"
    claim = dict(claim, description=text)
    data = to_bytes(tokenise(FnolReport.model_validate(claim))).decode("utf-8", errors="replace").casefold()
    for value in _pii_values(claim):
        assert value.casefold() not in data


def test_tokens_are_stable_and_normalised() -> None:
    claim = GOOD_CLAIMS[0]
    first = tokenise(FnolReport.model_validate(claim))
    again = tokenise(FnolReport.model_validate(json.loads(json.dumps(claim))))
    assert first == again
    assert pii.token("name", "Bilal Garcia", "acme") == pii.token("name", "  bilal   GARCIA ", "acme")
    assert pii.token("name", "Bilal Garcia", "acme") != pii.token("email", "Bilal Garcia", "acme")
    assert pii.token("name", "Bilal Garcia", "acme") != pii.token("name", "Bilal Garcia2", "acme")


def test_tokens_depend_on_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    claim = GOOD_CLAIMS[0]
    monkeypatch.setenv("DURABLE_PII_KEY", pii.DEMO_KEY)
    dev = tokenise(FnolReport.model_validate(claim))
    monkeypatch.setenv("DURABLE_PII_KEY", "tenant-secret-1")
    keyed = tokenise(FnolReport.model_validate(claim))
    keyed_again = tokenise(FnolReport.model_validate(claim))
    monkeypatch.setenv("DURABLE_PII_KEY", "tenant-secret-2")
    other = tokenise(FnolReport.model_validate(claim))
    assert keyed == keyed_again
    for a, b in ((dev, keyed), (keyed, other)):
        assert a.claimant.name_token != b.claimant.name_token
        assert a.claimant.email_token != b.claimant.email_token
        assert a.claimant.phone_token != b.claimant.phone_token
        assert a.vehicle is not None and b.vehicle is not None
        assert a.vehicle.plate_token != b.vehicle.plate_token
    # Everything that is not personal data is unaffected by the key.
    assert dev.claim_id == other.claim_id and dev.estimated_amount == other.estimated_amount


# ---------------------------------------------------------------- the stricter contract (no coercion, sane values)


def _one() -> dict[str, Any]:
    first: dict[str, Any] = _raw_claims(GOOD_FILE)[0]
    return first


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"estimated_amount": True}, "estimated_amount"),  # a boolean is not an amount
        ({"estimated_amount": "3200"}, "estimated_amount"),  # nor is a string of digits
        ({"estimated_amount": float("nan")}, "estimated_amount"),
        ({"loss_date": "9999-12-31"}, "loss_date"),
        ({"loss_date": "0001-01-01"}, "loss_date"),
        ({"reported_at": "2026-11-03T09:01:00"}, "reported_at"),  # an instant needs its time zone
        ({"loss_date": "2027-11-03"}, None),  # a loss a year after its report
        ({"currency": "XXX"}, "currency"),  # ISO 4217 says "no currency"
        ({"currency": "ABC"}, "currency"),
        ({"location": {"postcode": "EH1 1YZ", "country": "zz"}}, "location.country"),
        ({"photos": [{"uri": "javascript:alert(1)", "labels": []}]}, "photos.0.uri"),
        ({"photos": [{"uri": "s3://b/k.jpg", "labels": ["x" * 65]}]}, "photos.0.labels.0"),
        ({"vehicle": {"plate": "AB12 CDE", "make": "M" * 65}}, "vehicle.make"),
        ({"vehicle": {"plate": "AB12 CDE", "year": "2019"}}, "vehicle.year"),
        ({"tenant_id": "x[/bold]"}, "tenant_id"),
        ({"tenant_id": "acme\nx"}, "tenant_id"),
        ({"claim_id": "CLM/1"}, "claim_id"),
        ({"policy_number": "POL 1; DROP"}, "policy_number"),
    ],
)
def test_the_contract_refuses_lax_or_absurd_values(change: dict[str, Any], field: str | None) -> None:
    from processors.engine import InputRejected
    from processors.fnol.intake import accept

    with pytest.raises(InputRejected) as caught:
        accept({**_one(), **change})
    assert caught.value.field == field, caught.value


def test_a_loss_the_day_after_its_report_is_within_the_time_zone_grace() -> None:
    from processors.fnol.intake import accept

    claim = {**_one(), "reported_at": "2026-11-03T00:30:00Z", "loss_date": "2026-11-04"}
    assert accept(claim)["loss_date"] == "2026-11-04"


def test_the_kafka_form_is_held_to_the_same_contract() -> None:
    from processors.engine import InputRejected
    from processors.fnol.intake import accept, check

    record = accept(_one())
    check(record)  # what the intake produced meets it
    for bad in (
        {"claimant": {**record["claimant"], "name_token": "Bilal Garcia"}},  # a raw name where a token belongs
        {"claimant": {**record["claimant"], "email_token": "bilal@example.com"}},
        {"tenant_id": "x[/bold]"},
        {"claim_id": "CLM/1"},
        {"estimated_amount": -1.0},
        {"loss_date": "2027-12-01"},
    ):
        with pytest.raises(InputRejected):
            check({**record, **bad})


def test_run_ids_do_not_collide_across_tenants() -> None:
    a = next(iter(parse_lines(FNOL, [json.dumps({**_one(), "tenant_id": "acme-x", "claim_id": "CLM-1"})])))
    b = next(iter(parse_lines(FNOL, [json.dumps({**_one(), "tenant_id": "acme", "claim_id": "x-CLM-1"})])))
    assert isinstance(a, Accepted) and isinstance(b, Accepted)
    assert a.run_id == "fnol:acme-x:CLM-1" and b.run_id == "fnol:acme:x-CLM-1"


def test_a_deeply_nested_line_is_reported_not_raised() -> None:
    deep = "[" * 5000 + "]" * 5000
    results = list(parse_lines(FNOL, [json.dumps(_one()), deep, '{"a": ' * 3000 + "1" + "}" * 3000]))
    assert [type(r).__name__ for r in results] == ["Accepted", "Rejected", "Rejected"]
    assert [r.line_no for r in results] == [1, 2, 3]
    assert all("nested too deeply" in r.reason for r in results if isinstance(r, Rejected))

"""Policy retrieval: cited answers to coverage questions from the shipped wordings, and a policy check that
reaches the same decisions as the stand-in policy_check tool on every sample claim."""

from __future__ import annotations

import importlib.util
import json
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from processors.fnol import tools
from processors.fnol.retrieval import (
    LOSS_TYPES,
    POLICIES_DIR,
    DocumentError,
    PolicyRegister,
    PolicyRetriever,
    UnknownLossType,
    default_retriever,
)
from processors.fnol.retrieval.documents import parse_wording

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = [
    json.loads(line) for line in (ROOT / "processors" / "fnol" / "samples" / "fnol.jsonl").read_text().splitlines() if line
]


@pytest.fixture(scope="module")
def retriever() -> PolicyRetriever:
    return default_retriever()


@pytest.mark.parametrize(
    ("question", "doc_id", "clause", "says"),
    [
        ("is windscreen damage covered and what is the excess?", "motor_comprehensive", "2.3", "£100"),
        ("windshield cracked by a stone, what is my deductible?", "motor_comprehensive", "2.3", "£100"),
        ("what is the excess for escape of water from a burst pipe?", "home_contents_buildings", "6.1", "£1,000"),
        ("how much will you pay for fire damage to my house?", "home_contents_buildings", "7.1", "£250,000"),
        ("my car was stolen, what documents do I need to send?", "motor_comprehensive", "7.3", "police report"),
        ("what documents do I need for a fire claim?", "home_contents_buildings", "8.3", "fire service report"),
        ("is flood covered?", "home_contents_buildings", "5.5", "flood extension"),
        ("are things stolen by lodgers covered?", "home_contents_buildings", "5.3", "lodgers"),
    ],
)
def test_the_top_passage_answers_the_coverage_question(
    retriever: PolicyRetriever, question: str, doc_id: str, clause: str, says: str
) -> None:
    top = retriever.search(question, k=3)[0]
    assert (top.doc_id, top.clause) == (doc_id, clause), [h.citation for h in retriever.search(question, k=3)]
    assert says in top.text


def test_a_passage_comes_with_its_citation(retriever: PolicyRetriever) -> None:
    top = retriever.search("is windscreen damage covered and what is the excess?", k=1)[0]
    assert top.citation == "motor_comprehensive §2.3 Windscreen and glass"
    assert top.doc_title == "Motor Comprehensive Policy Wording"
    assert top.section == "2 Section A: Damage to your vehicle"
    assert "<!--" not in top.text  # the clause tags are metadata, not text
    assert top.score > 0
    assert top.to_dict()["clause"] == "2.3"


def test_search_can_be_limited_to_one_wording(retriever: PolicyRetriever) -> None:
    hits = retriever.search(
        "what is the limit of indemnity for injury to a member of the public?", k=3, doc_id="liability"
    )
    assert [h.doc_id for h in hits] == ["liability"] * 3
    assert hits[0].clause == "5.1" and "£100,000" in hits[0].text


def test_an_exclusion_answers_a_conditional_question(retriever: PolicyRetriever) -> None:
    top = retriever.search("is theft covered if I left the keys in the car?", k=2)[0]
    assert (top.doc_id, top.clause) == ("motor_comprehensive", "4.2")


def test_the_vector_side_finds_words_the_wordings_never_use(retriever: PolicyRetriever) -> None:
    assert not any("windshield" in p.text.lower() for p in retriever.passages)  # BM25 alone has nothing to match
    top = retriever.search("windshield", k=1)[0]
    assert top.citation == "motor_comprehensive §2.3 Windscreen and glass"


def test_scores_are_ranked_and_nonsense_finds_nothing(retriever: PolicyRetriever) -> None:
    hits = retriever.search("what is the excess for a stolen car?", k=5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert retriever.search("zzzz qqqq", k=5) == []
    assert retriever.search("the of and", k=5) == []


def stand_in(claim: dict[str, Any]) -> dict[str, Any]:
    """The rule the policy system followed before retrieval (and the register encodes): numbers ending in 0
    lapsed; liability is endorsed out of numbers ending in 9; limits and deductibles per loss type."""
    number, loss_type = claim["policy_number"], claim["loss_type"]
    in_force = not number.endswith("0")
    covered = in_force and not (loss_type == "liability" and number.endswith("9"))
    return {"in_force": in_force, "covered": covered, **tools.COVERAGE[loss_type]}


@pytest.mark.parametrize("claim", SAMPLES, ids=[c["claim_id"] for c in SAMPLES])
def test_check_policy_agrees_with_the_policy_rule_on_every_sample(
    retriever: PolicyRetriever, claim: dict[str, Any]
) -> None:
    expected = stand_in(claim)
    check = retriever.check_policy(
        claim["policy_number"], claim["loss_type"], claim["loss_date"], tenant_id=claim["tenant_id"]
    )
    assert check.found
    got = {"in_force": check.in_force, "covered": check.covered, "limit": check.limit, "deductible": check.deductible}
    assert got == {k: expected[k] for k in got}, check.reasons
    assert check.citation("coverage") is not None
    assert check.citation("deductible") is not None and check.citation("limit") is not None


def test_the_samples_include_the_interesting_cases() -> None:
    outcomes = {(stand_in(c)["in_force"], stand_in(c)["covered"]) for c in SAMPLES}
    assert outcomes == {(True, True), (False, False), (True, False)}


def test_a_lapsed_policy_is_not_in_force_and_says_why(retriever: PolicyRetriever) -> None:
    check = retriever.check_policy("POL-258030", "auto_glass", "2026-11-03")
    assert check.found and not check.in_force and not check.covered
    assert any("lapsed on" in reason for reason in check.reasons)
    assert (check.limit, check.deductible) == (2000.0, 100.0)  # what the schedule shows, for the record
    cover = check.citation("coverage")
    assert cover is not None and cover.citation == "motor_comprehensive §2.3 Windscreen and glass"


def test_cover_runs_only_within_the_policy_period(retriever: PolicyRetriever) -> None:
    record = retriever.register.get("POL-348759")
    assert record is not None
    assert retriever.check_policy("POL-348759", "auto_theft", record.inception).in_force
    assert retriever.check_policy("POL-348759", "auto_theft", record.expiry).in_force
    before = retriever.check_policy("POL-348759", "auto_theft", date.fromordinal(record.inception.toordinal() - 1))
    assert not before.in_force and "before the policy incepted" in before.reasons[0]
    after = retriever.check_policy("POL-348759", "auto_theft", date.fromordinal(record.expiry.toordinal() + 1))
    assert not after.in_force and "after the policy expired" in after.reasons[0]


def test_an_endorsement_excludes_liability_and_is_cited(retriever: PolicyRetriever) -> None:
    check = retriever.check_policy("POL-297059", "liability", "2026-11-16")
    assert check.in_force and not check.covered
    assert "endorsement LX excludes liability" in check.reasons
    endorsement = check.citation("endorsement")
    assert endorsement is not None and "LX" in endorsement.title


def test_an_unknown_policy_is_reported_as_not_found(retriever: PolicyRetriever) -> None:
    check = retriever.check_policy("POL-000001", "auto_glass", "2026-11-03")
    assert (check.found, check.in_force, check.covered, check.limit, check.citations) == (False, False, False, None, ())
    assert check.reasons == ("policy POL-000001 is not in the policy register",)


def test_a_policy_of_another_tenant_is_not_found(retriever: PolicyRetriever) -> None:
    check = retriever.check_policy("POL-348759", "auto_theft", "2026-11-02", tenant_id="globex")
    assert not check.found and not check.covered
    assert "not held by tenant globex" in check.reasons[0]


def test_unknown_policies_can_be_synthesised_by_the_register_rule() -> None:
    synthetic = PolicyRetriever(synthesise_unknown=True)
    ok = synthetic.check_policy("POL-123453", "property_water", "2026-11-03", tenant_id="acme")
    assert (ok.found, ok.in_force, ok.covered, ok.product) == (True, True, True, "home_contents_buildings")
    assert (ok.limit, ok.deductible) == (
        tools.COVERAGE["property_water"]["limit"],
        tools.COVERAGE["property_water"]["deductible"],
    )
    lapsed = synthetic.check_policy("POL-123450", "auto_theft", "2026-11-03")
    assert lapsed.found and not lapsed.in_force


def test_an_unknown_loss_type_is_refused(retriever: PolicyRetriever) -> None:
    with pytest.raises(UnknownLossType, match="meteor_strike"):
        retriever.check_policy("POL-348759", "meteor_strike", "2026-11-02")


def test_the_wordings_state_the_standard_excess_and_limits(retriever: PolicyRetriever) -> None:
    stated = {
        **retriever.standard_schedule("motor_comprehensive"),
        **retriever.standard_schedule("home_contents_buildings"),
    }
    for loss_type in LOSS_TYPES:
        entry = stated[loss_type]
        assert {"limit": entry.limit, "deductible": entry.deductible} == tools.COVERAGE[loss_type], loss_type


def test_the_shipped_register_is_what_make_register_generates() -> None:
    spec = importlib.util.spec_from_file_location("make_register", POLICIES_DIR / "make_register.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated = module.build([ROOT / "processors" / "fnol" / "samples" / "fnol.jsonl"])
    shipped = PolicyRegister.load(POLICIES_DIR / "register.json")
    assert shipped.numbers() == tuple(sorted(generated))
    assert all(shipped.get(n) == record for n, record in generated.items())


def test_results_are_deterministic_across_builds() -> None:
    first, second = PolicyRetriever(), PolicyRetriever()
    for question in ("is windscreen damage covered and what is the excess?", "what documents for a burglary?"):
        assert first.search(question, k=5) == second.search(question, k=5)
    for claim in SAMPLES:
        args = (claim["policy_number"], claim["loss_type"], claim["loss_date"])
        assert first.check_policy(*args).to_dict() == second.check_policy(*args).to_dict()


def test_a_query_is_fast_once_the_index_is_built(retriever: PolicyRetriever) -> None:
    started = time.perf_counter()
    for claim in SAMPLES[:20]:
        retriever.check_policy(claim["policy_number"], claim["loss_type"], claim["loss_date"])
    per_check_ms = (time.perf_counter() - started) * 1000 / 20
    assert per_check_ms < 50, f"{per_check_ms:.1f} ms per check"  # measured ~2 ms; the bound is 25x slack


def test_a_broken_wording_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_text("# Title\n\n## 1 Section\n\n### Clause without a number\ntext\n")
    with pytest.raises(DocumentError, match=r"N\.M"):
        parse_wording(bad)

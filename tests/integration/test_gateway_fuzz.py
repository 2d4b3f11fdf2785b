"""Property-based fuzzing of the gateway's OpenAPI document with schemathesis, against a live gateway.

Every operation gets a bounded number of generated requests, valid ones and
invalid ones, sent with an operator's key: none may be answered 5xx, and
every answer must match the document (status, content type, headers, body
schema). Not asked: that every schema-valid report is accepted; the intake's
rules go past what JSON Schema says (a loss date after the report, a currency
ISO 4217 does not have), and those answers are 422 as documented. Driven through schemathesis's Hypothesis strategies (its pytest
plugin does not run under this pytest).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import positive_data_acceptance

from streams.config import Settings
from tests.gateway_helpers import LiveGateway

pytestmark = pytest.mark.integration
EXAMPLES = 8  # per operation and generation mode: bounded, so the whole fuzz stays well under a minute


def test_no_5xx_and_every_answer_matches_the_schema(settings: Settings) -> None:
    rates = {"default": {"per_second": 10_000, "burst": 10_000}}  # fuzzing is not what the limits are for
    with LiveGateway(settings, rates=rates) as gw:
        key = gw.key()
        schema = schemathesis.openapi.from_url(f"{gw.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 12, [op.label for op in operations]
        tried: list[str] = []
        for op in operations:
            for mode in schemathesis.GenerationMode:
                try:
                    strategy = op.as_strategy(generation_mode=mode)
                except Exception:  # an operation with nothing to make invalid has no negative strategy
                    continue

                @given(case=strategy, _=st.just(None))
                @hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
                def check(case: schemathesis.Case, _: None) -> None:
                    case.call_and_validate(
                        base_url=gw.url, headers={"Authorization": f"Bearer {key}"}, excluded_checks=[positive_data_acceptance]
                    )

                try:
                    check()
                except Unsatisfiable:
                    # Nothing of this operation can be made invalid (no parameters, no body): no negative case.
                    assert mode is schemathesis.GenerationMode.NEGATIVE, op.label
                    continue
                tried.append(f"{op.label} {mode.value}")
        assert any("POST /api/v1/agent/run positive" in t for t in tried), tried

"""What `make demo` runs: the FNOL agent on the sample claims, with the fraud service flaky on purpose.

``durable demo`` (the generic runner in :mod:`streams.cli.demo`) loads
``processors.fnol.demo:FNOL_DEMO`` by default: the FNOL workflow with 30 % of
fraud-service calls failing, so the demo shows retries with backoff beside
the happy path (and the two sample claims without contact details show a
compensated saga).
"""

from __future__ import annotations

from processors.fnol.workflow import fnol_workflow

FRAUD_FAILURE_RATE = 0.3

FNOL_DEMO = fnol_workflow(fraud_failure_rate=FRAUD_FAILURE_RATE)

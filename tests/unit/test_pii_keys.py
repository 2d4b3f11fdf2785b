"""The PII key: generated privately when none is given, required in production; tokens are per tenant."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from processors import pii
from processors.fnol.intake import FnolReport, tokenise

SAMPLE = Path(__file__).resolve().parents[2] / "processors" / "fnol" / "samples" / "fnol.jsonl"


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No DURABLE_PII_KEY, state under tmp_path; the key cache emptied before and after."""
    monkeypatch.delenv(pii.KEY_ENV, raising=False)
    monkeypatch.delenv(pii.KEY_FILE_ENV, raising=False)
    monkeypatch.delenv(pii.PRODUCTION_ENV, raising=False)
    monkeypatch.setenv("DURABLE_STATE_DIR", str(tmp_path / ".durable" / "state"))
    pii._loaded.clear()
    yield tmp_path / ".durable" / "pii.key"
    pii._loaded.clear()


def test_without_a_key_one_is_generated_private_and_reused(no_key: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert not no_key.exists()
    with caplog.at_level(logging.WARNING, logger="processors.pii"):
        first = pii.token("phone", "+44 7700 900123", "acme")
    assert no_key.exists()
    assert stat.S_IMODE(no_key.stat().st_mode) == 0o600
    assert len(no_key.read_text().strip()) == 64  # 32 random bytes, hex
    assert [r.getMessage() for r in caplog.records if "generated a random PII key" in r.getMessage()]
    caplog.clear()
    written = no_key.read_text()
    pii._loaded.clear()  # as a new process would: read the file again
    with caplog.at_level(logging.WARNING, logger="processors.pii"):
        again = pii.token("phone", "+44 7700 900123", "acme")
    assert again == first
    assert no_key.read_text() == written  # reused, not regenerated
    assert not caplog.records  # said once, when it was generated
    assert not list(no_key.parent.glob(".pii.key.*"))  # no temporary file left behind


def test_the_key_file_can_be_named_and_an_unsafe_one_is_refused(
    no_key: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    named = tmp_path / "secrets" / "pii.key"
    monkeypatch.setenv(pii.KEY_FILE_ENV, str(named))
    pii.token("name", "Ada Lovelace", "acme")
    assert named.exists() and not no_key.exists()
    loose = tmp_path / "loose.key"
    loose.write_text("x" * 64)
    loose.chmod(0o644)
    monkeypatch.setenv(pii.KEY_FILE_ENV, str(loose))
    with pytest.raises(pii.PiiKeyError, match="chmod 600"):
        pii.token("name", "Ada Lovelace", "acme")


def test_a_random_key_differs_from_the_demo_key(no_key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generated = pii.token("name", "Ada Lovelace", "acme")
    monkeypatch.setenv(pii.KEY_ENV, pii.DEMO_KEY)
    assert pii.token("name", "Ada Lovelace", "acme") != generated


def test_tokens_are_per_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pii.KEY_ENV, "k" * 40)
    phone = "+44 7700 900123"
    assert pii.token("phone", phone, "acme") != pii.token("phone", phone, "globex")
    assert pii.token("phone", phone, "acme") == pii.token("phone", " +44 7700  900123 ", "acme")
    # Through the FNOL intake: one claimant reported to two tenants gets unlinkable tokens.
    raw = json.loads(SAMPLE.read_text(encoding="utf-8").splitlines()[0])
    a = tokenise(FnolReport.model_validate({**raw, "tenant_id": "acme"}))
    b = tokenise(FnolReport.model_validate({**raw, "tenant_id": "globex"}))
    assert a.claimant.name_token != b.claimant.name_token
    assert a.claimant.phone_token is not None and a.claimant.phone_token != b.claimant.phone_token
    assert a.claimant.email_token != b.claimant.email_token
    if "[name:" in a.description:  # free text is scrubbed with the tenant's tokens too
        assert a.description != b.description


def test_production_mode_needs_an_explicit_key(no_key: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(pii.PRODUCTION_ENV, "production")
    with pytest.raises(pii.PiiKeyError, match="DURABLE_PII_KEY"):
        pii.require_explicit_key()
    with pytest.raises(pii.PiiKeyError, match="no PII key"):
        pii.token("name", "Ada Lovelace", "acme")  # and nothing is generated behind its back
    assert not no_key.exists()
    monkeypatch.setenv(pii.KEY_ENV, pii.DEMO_KEY)
    with pytest.raises(pii.PiiKeyError, match="demo key"):
        pii.require_explicit_key()
    monkeypatch.setenv(pii.KEY_ENV, "short")
    with pytest.raises(pii.PiiKeyError, match="32 or more"):
        pii.require_explicit_key()
    monkeypatch.setenv(pii.KEY_ENV, "a-real-secret-from-the-vault-0123456789")
    pii.require_explicit_key()
    monkeypatch.delenv(pii.KEY_ENV)
    keyfile = tmp_path / "prod.key"
    keyfile.write_text("f" * 64)
    keyfile.chmod(0o600)
    monkeypatch.setenv(pii.KEY_FILE_ENV, str(keyfile))
    pii.require_explicit_key()


def test_the_history_table_finds_every_sample_claimant_under_the_demo_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from processors.fnol import history

    monkeypatch.setenv(pii.KEY_ENV, pii.DEMO_KEY)
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    claimants = history.table()["claimants"]
    for raw in rows:
        assert tokenise(FnolReport.model_validate(raw)).claimant.name_token in claimants, raw["claim_id"]
    # Under any other key (production's), nobody in the table is found.
    monkeypatch.setenv(pii.KEY_ENV, "another-key-" + "0" * 32)
    assert not any(tokenise(FnolReport.model_validate(raw)).claimant.name_token in claimants for raw in rows)


@pytest.mark.parametrize("command", [["worker"], ["produce", "fnol", "-"]])
def test_production_commands_refuse_to_start_without_a_key(command: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (pii.KEY_ENV, pii.KEY_FILE_ENV)}
    env.update({pii.PRODUCTION_ENV: "production", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", *command], cwd=tmp_path, env=env, input="", capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "DURABLE_PII_KEY" in done.stderr and "production" in done.stderr
    assert not list(tmp_path.rglob("pii.key")), "a key was generated in production mode"

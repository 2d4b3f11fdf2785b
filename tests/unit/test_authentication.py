"""The worker MAC: it covers a record's value, its id and its topic; old secrets verify until removed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streams import authentication as auth

OLD = b"old-worker-secret-0123456789-0123456789"
NEW = b"new-worker-secret-0123456789-0123456789"
TOPIC = "main.step.results"
VALUE = b"\xc3\x01 the record's bytes"


def _headers(
    secret: bytes, topic: str = TOPIC, record_id: str = "run/a/1", value: bytes = VALUE
) -> list[tuple[str, str | bytes | None]]:
    return [("traceparent", b"00-x"), auth.header(topic, record_id, value, secret)]


def test_a_record_signed_under_the_secret_verifies() -> None:
    name, text = auth.header(TOPIC, "run/a/1", VALUE, NEW)
    assert name == "durable-mac" and text.startswith(b"v1=") and len(text) == 3 + 64
    auth.verify(TOPIC, "run/a/1", VALUE, _headers(NEW), [NEW])


@pytest.mark.parametrize(
    ("topic", "record_id", "value"),
    [
        (TOPIC, "run/a/1", VALUE + b"!"),  # content altered
        (TOPIC, "run/a/2", VALUE),  # moved to another attempt
        ("main.runs.control", "run/a/1", VALUE),  # moved to the other kind of record
        ("other.step.results", "run/a/1", VALUE),  # moved to another namespace
    ],
)
def test_the_mac_covers_content_id_and_topic(topic: str, record_id: str, value: bytes) -> None:
    with pytest.raises(auth.Unauthenticated, match="does not verify"):
        auth.verify(topic, record_id, value, _headers(NEW), [NEW])


def test_missing_malformed_wrong_or_doubled_macs_are_refused() -> None:
    with pytest.raises(auth.Unauthenticated, match="no durable-mac header"):
        auth.verify(TOPIC, "run/a/1", VALUE, [("traceparent", b"00-x")], [NEW])
    with pytest.raises(auth.Unauthenticated, match="no durable-mac header"):
        auth.verify(TOPIC, "run/a/1", VALUE, None, [NEW])
    with pytest.raises(auth.Unauthenticated, match="is not 'v1="):
        auth.verify(TOPIC, "run/a/1", VALUE, [("durable-mac", b"v1=deadbeef")], [NEW])
    with pytest.raises(auth.Unauthenticated, match="does not verify"):
        auth.verify(TOPIC, "run/a/1", VALUE, [("durable-mac", b"v1=" + b"0" * 64)], [NEW])
    with pytest.raises(auth.Unauthenticated, match="does not verify"):
        auth.verify(TOPIC, "run/a/1", VALUE, _headers(b"a-guessed-secret"), [NEW])
    with pytest.raises(auth.Unauthenticated, match="2 durable-mac headers"):
        auth.verify(TOPIC, "run/a/1", VALUE, [*_headers(NEW), *_headers(NEW)], [NEW])


def test_rotation_an_old_secret_verifies_until_it_is_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auth.SECRET_ENV, NEW.decode())
    monkeypatch.setenv(auth.OLD_SECRETS_ENV, f" {OLD.decode()} , another-old-one")
    assert auth.signing_secret() == NEW
    assert auth.verifying_secrets() == [NEW, OLD, b"another-old-one"]
    signed_before = _headers(OLD)
    auth.verify(TOPIC, "run/a/1", VALUE, signed_before)  # written before the rotation, still in flight
    assert auth.header(TOPIC, "run/a/1", VALUE) == auth.header(TOPIC, "run/a/1", VALUE, NEW)  # the new one signs
    monkeypatch.delenv(auth.OLD_SECRETS_ENV)
    with pytest.raises(auth.Unauthenticated, match="does not verify"):
        auth.verify(TOPIC, "run/a/1", VALUE, signed_before)


def test_without_a_setting_a_private_secret_is_generated_once_and_reused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(auth.SECRET_ENV, raising=False)
    monkeypatch.delenv(auth.SECRET_FILE_ENV, raising=False)
    monkeypatch.setenv("DURABLE_STATE_DIR", str(tmp_path / "state"))
    first = auth.signing_secret()
    path = tmp_path / "worker.key"
    assert path.read_text().strip().encode() == first and len(first) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    auth._loaded.clear()
    assert auth.signing_secret() == first


def test_production_refuses_a_generated_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(auth.SECRET_ENV, raising=False)
    monkeypatch.delenv(auth.SECRET_FILE_ENV, raising=False)
    monkeypatch.setenv("DURABLE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DURABLE_ENV", "production")
    with pytest.raises(auth.WorkerSecretError, match="no worker secret"):
        auth.require_explicit_secret()
    with pytest.raises(auth.WorkerSecretError, match="no worker secret"):
        auth.signing_secret()
    assert not (tmp_path / "worker.key").exists()
    monkeypatch.setenv(auth.SECRET_ENV, "short")
    with pytest.raises(auth.WorkerSecretError, match="32 or more"):
        auth.require_explicit_secret()
    monkeypatch.setenv(auth.SECRET_ENV, NEW.decode())
    auth.require_explicit_secret()


def test_a_secret_file_readable_by_others_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "shared.key"
    path.write_text("x" * 64)
    path.chmod(0o644)
    monkeypatch.delenv(auth.SECRET_ENV, raising=False)
    monkeypatch.setenv(auth.SECRET_FILE_ENV, str(path))
    with pytest.raises(auth.WorkerSecretError, match="readable by others"):
        auth.signing_secret()

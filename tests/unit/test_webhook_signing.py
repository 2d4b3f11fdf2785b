"""Webhook signatures: what a receiver accepts and what it refuses."""

from __future__ import annotations

from connectors.sinks.webhook.signing import sign, verify

SECRET = b"s3cret-s3cret-s3cret"
BODY = b'{"decision_id":"d1","run_id":"fnol:acme:C1"}'


def test_a_signed_body_verifies_within_the_replay_window() -> None:
    header = sign(SECRET, BODY, 1_800_000_000)
    assert header.startswith("t=1800000000,v1=")
    assert verify(SECRET, BODY, header, now=1_800_000_000 + 299)


def test_a_changed_body_another_secret_or_an_old_timestamp_is_refused() -> None:
    header = sign(SECRET, BODY, 1_800_000_000)
    assert not verify(SECRET, BODY + b" ", header, now=1_800_000_000)
    assert not verify(b"other-secret-other", BODY, header, now=1_800_000_000)
    assert not verify(SECRET, BODY, header, now=1_800_000_000 + 301), "a replay outside the window"
    assert not verify(SECRET, BODY, "garbage", now=1_800_000_000)
    forged = header.replace("t=1800000000", "t=1800000100")
    assert not verify(SECRET, BODY, forged, now=1_800_000_100), "the timestamp is signed too"


def test_the_readme_verification_snippet_agrees() -> None:
    import hashlib
    import hmac

    header = sign(SECRET, BODY, 1_800_000_000)
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(SECRET, parts["t"].encode() + b"." + BODY, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"])

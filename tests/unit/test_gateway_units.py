"""The gateway's pure parts: API keys, Prefer: wait, rate configuration, the intake's screen."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.gateway.config import GatewayConfig, GatewayConfigError, _rates
from connectors.gateway.keys import KeyStore, Role
from connectors.gateway.routes_submit import prefer_wait
from processors.engine.errors import InputRejected
from processors.engine.inputs import screen


def test_a_key_is_checked_against_its_hash_and_refused_once_revoked(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    key, record = store.create("acme", Role.VIEWER, "ci")
    assert key not in (tmp_path / "keys.json").read_text(), "only the hash is stored"
    assert store.check(key) == record
    assert store.check(key[:-1] + ("x" if key[-1] != "x" else "y")) is None, "a wrong secret is refused"
    assert store.check("dk_nothing") is None and store.check("") is None, "a malformed key is refused"
    other = KeyStore(tmp_path / "keys.json")  # another process (the CLI) revokes; the gateway sees it
    other.revoke(record.key_id)
    assert store.check(key) is None
    with pytest.raises(ValueError):
        store.create("Not A Tenant", Role.VIEWER)


def test_prefer_wait_is_parsed_and_capped() -> None:
    assert prefer_wait(None, 10) is None and prefer_wait("respond-async", 10) is None
    assert prefer_wait("wait=3", 10) == 3 and prefer_wait("respond-async, wait=2.5", 10) == 2.5
    assert prefer_wait("wait=600", 10) == 10


def test_rate_limits_merge_tenant_over_default_and_refuse_nonsense(tmp_path: Path) -> None:
    config = GatewayConfig(state_dir=tmp_path, rates=_rates('{"default": {"burst": 20}, "acme": {"per_second": 2}}'))
    assert config.rate_of("acme").per_second == 2 and config.rate_of("acme").burst == 20
    assert config.rate_of("globex").per_second == 50
    for bad in ('{"acme": {"per_second": -1}}', '{"acme": {"speed": 1}}', "[1]", "{"):
        with pytest.raises(GatewayConfigError):
            _rates(bad)


def test_the_intake_screen_names_the_field_of_a_control_character_or_deep_nesting() -> None:
    screen({"description": "two lines\nand a tab\t"})
    with pytest.raises(InputRejected) as control:
        screen({"claimant": {"name": "a\x1b[2Jb"}})
    assert control.value.field == "claimant.name"
    deep: dict[str, object] = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]  # type: ignore[assignment]
    with pytest.raises(InputRejected) as nested:
        screen({"photos": [deep]})
    assert str(nested.value.field).startswith("photos.0.x")


def test_a_gateway_with_signing_on_and_no_key_to_verify_with_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.gateway.app import create_app
    from streams import signing
    from streams.config import Settings
    from streams.workflows import load_workflows

    settings = Settings(bootstrap_servers="127.0.0.1:1", namespace="t", state_dir=tmp_path)
    wfs = load_workflows(["processors.fnol.workflow:FNOL"])
    monkeypatch.setenv(signing.KEY_ENV, str(tmp_path / "absent.key"))
    monkeypatch.delenv(signing.VERIFY_ENV, raising=False)
    with pytest.raises(signing.SigningKeyError, match=r"no public keys to verify decisions.*DURABLE_VERIFY_KEYS"):
        create_app(settings, GatewayConfig(state_dir=tmp_path), wfs)
    # A public keyring alone is enough (a gateway holds no private key), and signing off needs none.
    pub = tmp_path / "ring.pem"
    pub.write_text(signing.public_pem(signing.generate(tmp_path / "k.key").public))
    monkeypatch.setenv(signing.VERIFY_ENV, str(pub))
    assert create_app(settings, GatewayConfig(state_dir=tmp_path), wfs).state.gateway.decisions.keyring is not None
    monkeypatch.delenv(signing.VERIFY_ENV)
    monkeypatch.setenv(signing.SIGNING_ENV, "off")
    assert create_app(settings, GatewayConfig(state_dir=tmp_path), wfs).state.gateway.decisions.keyring is None

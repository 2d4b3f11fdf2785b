"""Signing keys for decisions: Ed25519, one private key signs, a keyring of public keys verifies.

Where the keys come from:

- ``DURABLE_SIGNING=off`` turns signing off (a worker then writes unsigned
  outputs, and says so at start). Otherwise a worker needs a private key and
  refuses to start without one (:class:`SigningKeyError`).
- ``DURABLE_SIGNING_KEY``: the private key file (PKCS#8 PEM, owner-only),
  default ``signing.key`` next to the state directory. ``durable keys
  generate`` writes one; nothing generates one silently.
- ``DURABLE_VERIFY_KEYS``: comma-separated PEM files of further public keys
  that still verify (rotation: the previous signing keys), each file may hold
  several keys. The signing key's own public key always verifies.

A key id is the first 16 bytes of SHA-256 over the raw 32-byte public key, in
hex: anyone holding the public key computes it, no registry is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from processors import keyfiles

SIGNING_ENV = "DURABLE_SIGNING"
KEY_ENV = "DURABLE_SIGNING_KEY"
VERIFY_ENV = "DURABLE_VERIFY_KEYS"


class SigningKeyError(RuntimeError):
    """No usable signing key: missing (with signing on), unsafe permissions, or not an Ed25519 key."""


def key_id(public: Ed25519PublicKey) -> str:
    """The fingerprint that names a public key: SHA-256 of its raw bytes, first 16 bytes, hex."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:16].hex()


def public_pem(public: Ed25519PublicKey) -> str:
    """The public key as SubjectPublicKeyInfo PEM."""
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def public_jwk(public: Ed25519PublicKey) -> dict[str, str]:
    """The public key as an RFC 8037 OKP JWK, with its key id as ``kid``."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": key_id(public), "use": "sig", "alg": "EdDSA"}


@dataclass(frozen=True)
class Signer:
    """The private key that signs, and its key id."""

    private: Ed25519PrivateKey
    key_id: str

    @classmethod
    def of(cls, private: Ed25519PrivateKey) -> Signer:
        return cls(private, key_id(private.public_key()))

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 signature: deterministic (RFC 8032), so re-writing a record after a crash repeats it exactly."""
        return self.private.sign(message)


@dataclass(frozen=True)
class Keyring:
    """Public keys that verify, by key id."""

    keys: dict[str, Ed25519PublicKey]

    def verify(self, kid: str, signature: bytes, message: bytes) -> str | None:
        """None if ``signature`` is ``kid``'s over ``message``; else why not."""
        public = self.keys.get(kid)
        if public is None:
            return f"unknown key id {kid!r} (not in the keyring)"
        try:
            public.verify(signature, message)
        except InvalidSignature:
            return f"bad signature under key {kid}"
        return None

    def to_json(self) -> dict[str, object]:
        """The keyring as a JWK set (``keys``), each with its PEM too."""
        return {"keys": [{**public_jwk(k), "pem": public_pem(k)} for k in self.keys.values()]}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Keyring:
        """The keyring of :meth:`to_json` (each entry's PEM is read; its kid is recomputed, never trusted)."""
        keys = data.get("keys")
        if not isinstance(keys, list):
            raise ValueError("a keyring is a JSON object with a list of keys")
        return cls.of([_load_public(str(k["pem"]).encode()) for k in keys])

    @classmethod
    def of(cls, publics: list[Ed25519PublicKey]) -> Keyring:
        return cls({key_id(k): k for k in publics})


def signing_on() -> bool:
    """False when ``DURABLE_SIGNING=off`` (or 0/false/no)."""
    return os.environ.get(SIGNING_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def key_file() -> Path:
    """Where the private key is: ``DURABLE_SIGNING_KEY``, else ``signing.key`` next to the state directory."""
    explicit = os.environ.get(KEY_ENV, "").strip()
    return Path(explicit) if explicit else keyfiles.state_root_file("signing.key")


def generate(path: Path) -> Signer:
    """Write a new private key to ``path`` (owner-only; refuses to overwrite one) and return its signer."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # an existing key is never replaced
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return Signer.of(private)


def load(path: Path) -> Signer:
    """The signer of the private key file ``path``; :class:`SigningKeyError` if unsafe or not Ed25519."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SigningKeyError(
            f"no signing key at {path}: run `durable keys generate` (or set {KEY_ENV}), "
            f"or set {SIGNING_ENV}=off to write unsigned decisions"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(f"signing key {path} is readable by others (mode {stat.S_IMODE(mode):o}): chmod 600 it")
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a {type(private).__name__}, not an Ed25519 private key")
    return Signer.of(private)


_loaded: dict[Path, Signer] = {}


def signer_from_env() -> Signer | None:
    """The signer this process uses, None when signing is off; :class:`SigningKeyError` if it has none."""
    if not signing_on():
        return None
    path = key_file()
    if path not in _loaded:
        _loaded[path] = load(path)
    return _loaded[path]


def _load_public(pem: bytes) -> Ed25519PublicKey:
    public = serialization.load_pem_public_key(pem)
    if not isinstance(public, Ed25519PublicKey):
        raise SigningKeyError(f"not an Ed25519 public key: {type(public).__name__}")
    return public


def read_publics(path: Path) -> list[Ed25519PublicKey]:
    """Every public key in a file: PEM blocks, or a keyring JSON (``durable keys public --json``)."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        return list(Keyring.from_json(json.loads(text)).keys.values())
    end = "-----END PUBLIC KEY-----"
    begin = "-----BEGIN PUBLIC KEY-----"
    blocks = [b[b.index(begin) :] + end for b in text.split(end) if begin in b]  # comment lines around them skipped
    return [_load_public(b.encode()) for b in blocks]


def keyring_from_env() -> Keyring:
    """Every key that verifies: the signing key's public key (if there is one) and those of ``DURABLE_VERIFY_KEYS``."""
    publics: list[Ed25519PublicKey] = []
    if key_file().exists():
        publics.append(load(key_file()).public)
    for name in os.environ.get(VERIFY_ENV, "").split(","):
        if name.strip():
            publics.extend(read_publics(Path(name.strip())))
    return Keyring.of(publics)


def use_fresh_key(directory: Path) -> Signer:
    """Generate a throwaway key in ``directory`` and make it this process's (and its children's) signing key.

    For the demo, tests and benchmarks, whose state is temporary; never for a production worker.
    """
    path = directory / "signing.key"
    signer = generate(path)
    os.environ[KEY_ENV] = str(path)
    return signer


def verifying_keyring(otherwise: str = "") -> Keyring | None:
    """The public keys a reader of decisions (a sink, the gateway) verifies with; None with signing off.

    :class:`SigningKeyError` when signing is on and there is no key: such a reader refuses to start rather
    than pass on decisions it cannot check. ``otherwise`` ends the message (what signing off would mean).
    """
    if not signing_on():
        return None
    ring = keyring_from_env()
    if not ring.keys:
        raise SigningKeyError(
            f"no public keys to verify decisions: set {VERIFY_ENV} to the output of `durable keys public`, "
            f"or {SIGNING_ENV}=off{otherwise}"
        )
    return ring

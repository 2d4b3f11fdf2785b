"""Kafka client security settings, from one place, for every client the project creates.

Two sources, both optional, the environment winning over the file:

- a client properties file named by ``DURABLE_KAFKA_CONFIG`` (Java-style
  ``key=value`` lines, ``#`` or ``!`` comments), e.g.::

      security.protocol=SASL_SSL
      sasl.mechanism=SCRAM-SHA-512
      sasl.username=orchestrator
      sasl.password=...
      ssl.ca.location=/etc/kafka/ca.pem

- ``KAFKA_``-prefixed environment variables, the librdkafka name upper-cased
  with ``_`` for ``.``: ``KAFKA_SECURITY_PROTOCOL=SASL_SSL`` is
  ``security.protocol``, ``KAFKA_SASL_PASSWORD`` is ``sasl.password``. Only
  ``KAFKA_SECURITY_*``, ``KAFKA_SASL_*`` and ``KAFKA_SSL_*`` are read, so
  unrelated variables (``KAFKA_BOOTSTRAP_SERVERS``, ``KAFKA_HOME``) are not
  mistaken for client settings.

Only security settings are accepted (``security.protocol``, ``sasl.*``,
``ssl.*``, ``enable.ssl.certificate.verification``); anything else is a
:class:`KafkaConfigError` naming the line, because a silently ignored typo
in a security file means a client that quietly talks PLAINTEXT.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONFIG_FILE_ENV = "DURABLE_KAFKA_CONFIG"
_ENV_PREFIXES = ("KAFKA_SECURITY_", "KAFKA_SASL_", "KAFKA_SSL_")
_KEY_PREFIXES = ("sasl.", "ssl.")
_KEYS = frozenset({"security.protocol", "enable.ssl.certificate.verification"})
PROTOCOLS = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
MECHANISMS = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"})


class KafkaConfigError(ValueError):
    """A Kafka client setting (file line or environment variable) is malformed or not a security setting."""


def _allowed(key: str) -> bool:
    return key in _KEYS or key.startswith(_KEY_PREFIXES)


def _check(key: str, value: str, where: str) -> tuple[str, str]:
    if not _allowed(key):
        raise KafkaConfigError(
            f"{where}: {key!r} is not a Kafka security setting "
            "(allowed: security.protocol, sasl.*, ssl.*, enable.ssl.certificate.verification; "
            "bootstrap servers come from KAFKA_BOOTSTRAP_SERVERS)"
        )
    if key == "security.protocol":
        value = value.upper()
        if value not in PROTOCOLS:
            raise KafkaConfigError(f"{where}: security.protocol {value!r} is not one of {sorted(PROTOCOLS)}")
    if key in ("sasl.mechanism", "sasl.mechanisms"):
        value = value.upper()
        if value not in MECHANISMS:
            raise KafkaConfigError(f"{where}: {key} {value!r} is not one of {sorted(MECHANISMS)}")
    return key, value


def parse_properties(text: str, source: str = "properties") -> dict[str, str]:
    """Security settings from Java-style ``key=value`` text; raises :class:`KafkaConfigError` on any bad line."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        where = f"{source} line {number}"
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or any(c.isspace() for c in key):
            raise KafkaConfigError(f"{where}: expected key=value, got {raw.strip()!r}")
        if key == "sasl.jaas.config":
            # The Java client's way; librdkafka wants the parts as separate keys.
            raise KafkaConfigError(f"{where}: sasl.jaas.config is Java-only; use sasl.username and sasl.password")
        k, v = _check(key, value, where)
        out[k] = v
    return out


def from_environment(env: Mapping[str, str]) -> dict[str, str]:
    """Security settings from ``KAFKA_SECURITY_*``, ``KAFKA_SASL_*`` and ``KAFKA_SSL_*`` variables."""
    out: dict[str, str] = {}
    for name in sorted(env):
        if name.startswith(_ENV_PREFIXES):
            key = name[len("KAFKA_") :].lower().replace("_", ".")
            k, v = _check(key, env[name], f"environment variable {name}")
            out[k] = v
    return out


def security_config(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The security settings every client gets: the ``DURABLE_KAFKA_CONFIG`` file, then the environment over it."""
    env = os.environ if env is None else env
    out: dict[str, str] = {}
    path = env.get(CONFIG_FILE_ENV, "").strip()
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise KafkaConfigError(f"{CONFIG_FILE_ENV}={path}: cannot read it: {exc}") from exc
        out.update(parse_properties(text, source=path))
    out.update(from_environment(env))
    if out.get("security.protocol", "PLAINTEXT").startswith("SASL") and not (
        out.get("sasl.mechanism") or out.get("sasl.mechanisms")
    ):
        raise KafkaConfigError(f"security.protocol {out['security.protocol']} needs sasl.mechanism")
    return out


def client_config(bootstrap: str, env: Mapping[str, str] | None = None, /, **conf: Any) -> dict[str, Any]:
    """A librdkafka config: bootstrap servers, the security settings, then the client's own ``conf``.

    Every Producer, Consumer and AdminClient is built from this, so a secured
    cluster needs no change anywhere else.
    """
    return {"bootstrap.servers": bootstrap, **security_config(env), **conf}


def redacted(conf: Mapping[str, Any]) -> dict[str, Any]:
    """``conf`` with passwords hidden, for logs and error messages."""
    return {k: ("***" if "password" in k or "secret" in k else v) for k, v in conf.items()}

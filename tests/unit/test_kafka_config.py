"""Kafka client security settings: one source (file and environment), every client factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from streams import kafka
from streams.config import Settings
from streams.kafka_config import KafkaConfigError, client_config, parse_properties, security_config

SASL_SSL_ENV = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "orchestrator",
    "KAFKA_SASL_PASSWORD": "s3cret",
    "KAFKA_SSL_CA_LOCATION": "/etc/kafka/ca.pem",
}


def _record_clients(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """Replace the librdkafka constructors in streams.kafka by recorders of the config they get."""
    seen: dict[str, dict[str, Any]] = {}

    def recorder(kind: str) -> Any:
        def build(conf: dict[str, Any]) -> object:
            seen[kind] = conf
            return object()

        return build

    monkeypatch.setattr(kafka, "Producer", recorder("producer"))
    monkeypatch.setattr(kafka, "Consumer", recorder("consumer"))
    monkeypatch.setattr(kafka, "AdminClient", recorder("admin"))
    return seen


def _build_all(seen: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    settings = Settings(bootstrap_servers="kafka:9093", namespace="t")
    out: dict[str, dict[str, Any]] = {}
    kafka.producer(settings)
    out["producer"] = seen["producer"]
    kafka.consumer(settings, "t.orchestrator")
    out["consumer"] = seen["consumer"]
    kafka.reader(settings)
    out["reader"] = seen["consumer"]
    kafka.admin(settings)
    out["admin"] = seen["admin"]
    kafka.admin_for("kafka:9093")
    out["admin_for"] = seen["admin"]
    return out


def test_environment_settings_reach_every_client(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SASL_SSL_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DURABLE_KAFKA_CONFIG", raising=False)
    monkeypatch.setenv("KAFKA_HOME", "/opt/kafka")  # unrelated KAFKA_ variables are not settings
    built = _build_all(_record_clients(monkeypatch))
    assert set(built) == {"producer", "consumer", "reader", "admin", "admin_for"}
    for kind, conf in built.items():
        assert conf["bootstrap.servers"] == "kafka:9093", kind
        assert conf["security.protocol"] == "SASL_SSL", kind
        assert conf["sasl.mechanism"] == "SCRAM-SHA-512", kind
        assert conf["sasl.username"] == "orchestrator", kind
        assert conf["sasl.password"] == "s3cret", kind
        assert conf["ssl.ca.location"] == "/etc/kafka/ca.pem", kind
        assert "home" not in conf, kind
    # The clients' own settings are kept next to the security ones.
    assert built["producer"]["enable.idempotence"] is True
    assert built["consumer"]["group.id"] == "t.orchestrator"


def test_a_properties_file_reaches_every_client_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    props = tmp_path / "client.properties"
    props.write_text(
        "# a Java-style client file\n"
        "security.protocol=ssl\n"
        "! another comment style\n"
        "\n"
        "ssl.ca.location = /etc/kafka/ca.pem\n"
        "ssl.certificate.location=/etc/kafka/worker.pem\n"
        "ssl.key.location=/etc/kafka/worker.key\n"
        "ssl.key.password=pa=ss\n",  # only the first '=' splits
        encoding="utf-8",
    )
    for name in SASL_SSL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DURABLE_KAFKA_CONFIG", str(props))
    monkeypatch.setenv("KAFKA_SSL_KEY_LOCATION", "/run/secrets/worker.key")
    for kind, conf in _build_all(_record_clients(monkeypatch)).items():
        assert conf["security.protocol"] == "SSL", kind
        assert conf["ssl.ca.location"] == "/etc/kafka/ca.pem", kind
        assert conf["ssl.certificate.location"] == "/etc/kafka/worker.pem", kind
        assert conf["ssl.key.location"] == "/run/secrets/worker.key", kind
        assert conf["ssl.key.password"] == "pa=ss", kind


def test_no_settings_means_plain_clients() -> None:
    assert security_config({}) == {}
    assert client_config("b:9092", {}, **{"group.id": "g"}) == {"bootstrap.servers": "b:9092", "group.id": "g"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("security.protocol SASL_SSL\n", "line 1: expected key=value"),
        ("ssl.ca.location=/ca.pem\nthis is not a setting\n", "line 2: expected key=value"),
        ("bootstrap.servers=kafka:9092\n", "'bootstrap.servers' is not a Kafka security setting"),
        ("sasl.usrname=bob\nsecurity.protocl=SSL\n", "line 2: 'security.protocl' is not a Kafka security setting"),
        ("security.protocol=SASL_TLS\n", "security.protocol 'SASL_TLS' is not one of"),
        ("sasl.mechanism=SCRAM-SHA-1\n", "sasl.mechanism 'SCRAM-SHA-1' is not one of"),
        ('sasl.jaas.config=org.apache.kafka...ScramLoginModule required username="a";\n', "Java-only"),
        ("=x\n", "expected key=value"),
    ],
)
def test_garbage_lines_are_refused_with_the_line(text: str, message: str) -> None:
    with pytest.raises(KafkaConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_properties(text, source="client.properties")


def test_bad_environment_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(KafkaConfigError, match="environment variable KAFKA_SECURITY_PROTOCOL"):
        security_config({"KAFKA_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(KafkaConfigError, match=r"needs sasl\.mechanism"):
        security_config({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    with pytest.raises(KafkaConfigError, match="cannot read it"):
        security_config({"DURABLE_KAFKA_CONFIG": str(tmp_path / "missing.properties")})


def test_librdkafka_accepts_every_key_we_pass() -> None:
    # Building a real client validates the key names; nothing is sent (no broker at that address is used).
    conf = client_config("127.0.0.1:9", {**SASL_SSL_ENV, "KAFKA_SSL_CA_LOCATION": ""}, log_level=0)
    conf.pop("ssl.ca.location")  # a missing CA file fails at construction, which is librdkafka checking the path
    Producer(conf).flush(0)

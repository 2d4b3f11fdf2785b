"""How ``durable dlq redrive`` redrives the webhook sink's ``delivery`` letters, without the CLI importing this layer.

Registered under the ``durable.redrive`` entry point group (pyproject.toml) as
:data:`HANDLER`; :mod:`streams.deadletters` loads it by the letter's kind. The
CLI writes the signed request (a ``RunControl``, action ``redrive``) to
:func:`redrive_topic`, which the sink consumes (:mod:`.app`), and asks
:meth:`DeliveryRedrive.applied` whether the sink took it: the delivery's
latest state on the table's changelog names the request. Light on purpose
(no Faust): the CLI imports it at start.
"""

from __future__ import annotations

import json

from schemas.models import RunControl
from streams.config import Settings
from streams.reading import read_all

SINK = "webhook"
TABLE = "deliveries"


def app_id(namespace: str) -> str:
    """The sink's Faust app id (its consumer group)."""
    return f"{namespace}.sink.{SINK}"


def redrive_topic(namespace: str) -> str:
    """Where redrive requests for the sink's delivery letters go (partitioned like the decisions topic)."""
    return f"{namespace}.sink.{SINK}.redrives"


def changelog_topic(namespace: str) -> str:
    """The delivery table's changelog, as Faust names it."""
    return f"{app_id(namespace)}-{TABLE}-changelog"


def state_key(decision_id: str) -> bytes:
    """A delivery's key on the changelog: the decision id as Faust writes a ``str`` table key (JSON)."""
    return json.dumps(decision_id).encode()


class DeliveryRedrive:
    """The ``delivery`` kind's redrive: a request on the sink's redrive topic, applied when its table says so."""

    kind = "delivery"

    def topic(self, namespace: str) -> str:
        return redrive_topic(namespace)

    def applied(self, settings: Settings, control: RunControl) -> bool:
        from connectors.sinks.webhook.delivery import decision_of

        key = state_key(decision_of(control.dead_letter_id or ""))
        latest: bytes | None = None
        for msg in read_all(settings, changelog_topic(settings.namespace)):
            if msg.key() == key:
                latest = msg.value()
        if not latest:
            return False
        try:
            return bool(json.loads(latest).get("redrive") == control.control_id)
        except (ValueError, AttributeError):
            return False


HANDLER = DeliveryRedrive()

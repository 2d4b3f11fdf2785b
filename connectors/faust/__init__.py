"""Our records for your own Faust apps: the codec of our Avro records, typed records, settings that hold.

A user's agent over the decisions topic, typed::

    import faust
    from connectors.faust import RoutedDecision, app_settings

    app = faust.App("billing", **app_settings())
    decisions = app.topic("main.decisions", value_type=RoutedDecision, value_serializer="durable")

    @app.agent(decisions)
    async def bill(stream):
        async for decision in stream:
            print(decision.run_id, decision.status, decision.reserve)

Importing this package registers the ``durable`` codec with Faust. It reads
any record of ours (Avro single-object encoding: the schema fingerprint in
the header picks the writer schema, old versions included) and writes the
records below with their current schema. :func:`app_settings` gives the
broker (``KAFKA_BOOTSTRAP_SERVERS``, else the embedded broker ``durable
broker`` runs) and the consumer settings that join fast and stay stable on
the embedded broker (DESIGN.md): Faust's defaults take 30 s to join it.
"""

from connectors.faust.codec import CODEC_NAME, DurableCodec
from connectors.faust.records import (
    ClaimantTokens,
    DeadLetter,
    FnolReported,
    Location,
    Photo,
    RoutedDecision,
    Vehicle,
)
from connectors.faust.settings import app_settings, brokers, free_port

__all__ = [
    "CODEC_NAME",
    "ClaimantTokens",
    "DeadLetter",
    "DurableCodec",
    "FnolReported",
    "Location",
    "Photo",
    "RoutedDecision",
    "Vehicle",
    "app_settings",
    "brokers",
    "free_port",
]

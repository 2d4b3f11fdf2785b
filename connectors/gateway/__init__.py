"""The HTTP gateway: FNOL reports in over HTTP, runs, traces and dead letters out, per tenant and role.

- :mod:`.app`: the app factory (:func:`create_app`) and its lifespan
- :mod:`.config`: the gateway's settings (limits, thresholds, where keys live)
- :mod:`.keys`: API keys per tenant and role, stored as hashes; :mod:`.auth` checks them per request
- :mod:`.problems`: errors as RFC 9457 problem details
- :mod:`.ratelimit`, :mod:`.backpressure`: 429 per tenant, 503 when the orchestrator falls behind
- :mod:`.body`: the request body's size, type and JSON, before the workflow's intake sees it
- :mod:`.idempotency`: one run per claim, 409 for the same claim with another body
- :mod:`.producer`, :mod:`.tail`: the long-lived input writer and the live journal reader
- :mod:`.routes_submit`, :mod:`.routes_runs`, :mod:`.routes_deadletters`, :mod:`.routes_health`: the API
- :mod:`.cli`: ``durable gateway`` and ``durable apikeys``
"""

from connectors.gateway.app import create_app

__all__ = ["create_app"]

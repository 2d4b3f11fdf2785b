"""The README's Faust agent: a user's own app reading typed decisions (run it: ``python -m connectors.faust.example worker``).

It reads ``$DURABLE_NAMESPACE.decisions`` (default ``main.decisions``) on the broker ``durable`` uses.
"""

import os

import faust

from connectors.faust import RoutedDecision, app_settings

namespace = os.environ.get("DURABLE_NAMESPACE", "main")
app = faust.App(f"{namespace}.billing", **app_settings())
decisions = app.topic(f"{namespace}.decisions", value_type=RoutedDecision, value_serializer="durable")


@app.agent(decisions)
async def bill(stream: faust.StreamT[RoutedDecision]) -> None:
    async for decision in stream:
        print(f"decision {decision.run_id} {decision.status} {decision.reserve}")


if __name__ == "__main__":
    app.main()

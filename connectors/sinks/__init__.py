"""Downstream sinks: Faust apps that keep other systems in step with a namespace's decisions topic.

- :mod:`connectors.sinks.decisions`: what a record on the decisions topic is (a decision, or a bad record and why).
- :mod:`connectors.sinks.faust_app`: the Faust app settings that join fast and stay stable on the embedded broker.
- :mod:`connectors.sinks.postgres`: ``durable sink postgres``, decisions into PostgreSQL.
- :mod:`connectors.sinks.cli`: the ``durable sink`` commands (found by the CLI through the
  ``durable.commands`` entry point group, so the runtime never imports this layer).
"""

"""``durable sink postgres``: a namespace's decisions kept in a PostgreSQL database.

- :mod:`.migrate`: the versioned SQL files in ``migrations/``, applied once each, in order, at start.
- :mod:`.store`: the upsert of a decision (psycopg 3, a connection pool), one transaction per record.
- :mod:`.app`: the Faust app that reads the decisions topic and acknowledges a record only after
  its transaction committed, so committed offsets never run ahead of the database.
"""

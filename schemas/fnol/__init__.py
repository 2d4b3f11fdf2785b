"""The FNOL workload's records: reported claims and routed decisions.

Importing this package makes their schemas (this directory, frozen versions
in ``versions/``) known to the codec.
"""

from pathlib import Path

from schemas.codec import register

SCHEMA_DIR = Path(__file__).resolve().parent
register(SCHEMA_DIR)

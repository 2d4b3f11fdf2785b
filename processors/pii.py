"""Personal data never reaches Kafka raw: it is replaced by stable keyed tokens.

A token is ``pii_`` + the first 16 hex digits of HMAC-SHA256(key, kind:value),
so the same person gives the same token (joins and fraud history still work)
and nobody without the key can reverse it. The key comes from
``DURABLE_PII_KEY``; the built-in development key is for local use only.
Free text is scrubbed of the report's own personal values and of anything
shaped like an email, phone number or UK number plate.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

DEV_KEY = "durable-dev-only-key"

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"(?<!\w)\+?\d[\d ()-]{7,}\d(?!\w)")
UK_PLATE = re.compile(r"\b[A-Z]{2}\d{2}\s?[A-Z]{3}\b", re.IGNORECASE)


def _key() -> bytes:
    return os.environ.get("DURABLE_PII_KEY", DEV_KEY).encode()


def token(kind: str, value: str) -> str:
    """A stable keyed token for one personal value (normalised: trimmed, case-folded)."""
    norm = " ".join(value.split()).casefold()
    digest = hmac.new(_key(), f"{kind}:{norm}".encode(), hashlib.sha256).hexdigest()
    return f"pii_{digest[:16]}"


def scrub(text: str, known: dict[str, str]) -> str:
    """Replace each known personal value (kind -> value) and PII-shaped text in ``text``."""
    out = text
    for kind, value in sorted(known.items(), key=lambda kv: -len(kv[1])):
        if value and value.strip():
            out = re.sub(re.escape(value.strip()), f"[{kind}:{token(kind, value)}]", out, flags=re.IGNORECASE)
            if kind == "name":
                for part in value.split():
                    if len(part) >= 3:
                        out = re.sub(
                            rf"\b{re.escape(part)}\b", f"[name:{token('name', value)}]", out, flags=re.IGNORECASE
                        )
    out = EMAIL.sub("[email]", out)
    out = PHONE.sub("[phone]", out)
    out = UK_PLATE.sub("[plate]", out)
    return out

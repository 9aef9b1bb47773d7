"""Keys derived from a per-deployment secret: one HKDF-Expand block (RFC 5869) with the secret as
PRK and a label naming the purpose as ``info``. Each purpose has its own label, so a value derived
for one purpose gives away neither the secret nor the value of any other purpose. The fal webhook
URL (services/webhook_link.py) and the users' App Store account tokens (domain/account_token.py)
both derive their keys here."""

from __future__ import annotations

import hashlib
import hmac


def expand(key: bytes, info: bytes) -> bytes:
    """One HKDF-Expand block: ``HMAC-SHA256(key, info || 0x01)`` (32 bytes)."""
    return hmac.new(key, info + b"\x01", hashlib.sha256).digest()

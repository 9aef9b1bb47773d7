"""Each user's ``app_account_token``: the UUID the app hands the store at purchase time (StoreKit
``appAccountToken``, Play Billing ``obfuscatedAccountId``), so that a verified purchase names the
user it was bought for.

``token = UUIDv8(HMAC-SHA256(expand(secret, LABEL), user_id)[:16])``: keyed by a key derived from
the deployment's secret (domain/keys.py, the same derivation as the fal webhook URL's keys, under
its own label), so it is stable for a user, differs between deployments, and neither reveals the
user id nor can be computed for another user without the secret. The layout is RFC 9562's
version 8 ("custom"): 122 bits of the MAC, the version nibble 8 and the variant bits ``10`` set.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

from videogen.domain.keys import expand

LABEL = b"videogen/app-store/account-token/v1"


def app_account_token(secret: str, user_id: str) -> str:
    """The account token of ``user_id`` under ``secret``: a lower-case UUID string (36 chars)."""
    if not secret:
        raise ValueError("an account token needs the deployment secret")
    if not user_id:
        raise ValueError("an account token needs a user id")
    key = expand(secret.encode(), LABEL)
    raw = bytearray(hmac.new(key, user_id.encode(), hashlib.sha256).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8
    raw[8] = (raw[8] & 0x3F) | 0x80  # variant 10xx (RFC 9562)
    return str(uuid.UUID(bytes=bytes(raw)))


def normalized(token: str | None) -> str | None:
    """A token as the store reports it, in our form (lower-case, hyphenated); None for none or a
    value that is not a UUID (then it names nobody)."""
    if not token:
        return None
    try:
        return str(uuid.UUID(token))
    except ValueError:
        return None

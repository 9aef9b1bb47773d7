"""Local stand-in for the HTTP API's JWT authorizer.

Issues RS256 tokens with a signing key made at start, and checks them the way
API Gateway's JWT authorizer does: signature, ``iss``, ``aud`` (or ``client_id``),
``exp`` and ``nbf``. Development only.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

LOCAL_ISSUER = "http://127.0.0.1/local-issuer"
LOCAL_AUDIENCE = "videogen-local"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


class AuthError(Exception):
    pass


class LocalAuthority:
    def __init__(self, issuer: str = LOCAL_ISSUER, audience: str = LOCAL_AUDIENCE, kid: str = "local-1") -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = kid
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def issue(self, sub: str, ttl_s: int = 24 * 3600, **claims: Any) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "iat": now,
            "nbf": now - 5,
            "exp": now + ttl_s,
            **claims,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """Claims of a valid ``Bearer`` token, else :class:`AuthError` (the gateway answers 401)."""
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError("missing bearer token")
        token = authorization.removeprefix("Bearer ").strip()
        try:
            head_b64, body_b64, sig_b64 = token.split(".")
            header = json.loads(_unb64(head_b64))
            claims = json.loads(_unb64(body_b64))
            signature = _unb64(sig_b64)
        except (ValueError, json.JSONDecodeError):
            raise AuthError("malformed token") from None
        if header.get("alg") != "RS256" or header.get("kid") != self.kid:
            raise AuthError("unknown key or algorithm")
        try:
            self._key.public_key().verify(
                signature, f"{head_b64}.{body_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            raise AuthError("bad signature") from None
        now = time.time()
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud, claims.get("client_id")]
        if claims.get("iss") != self.issuer:
            raise AuthError("wrong issuer")
        if self.audience not in audiences:
            raise AuthError("wrong audience")
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= now:
            raise AuthError("expired")
        if isinstance(claims.get("nbf"), int | float) and claims["nbf"] > now + 5:
            raise AuthError("not yet valid")
        return {k: str(v) if not isinstance(v, str) else v for k, v in claims.items()}

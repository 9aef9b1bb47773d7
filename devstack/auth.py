"""Local stand-in for the HTTP API's JWT authorizer, on PyJWT.

Issues RS256 tokens and checks them the way API Gateway's JWT authorizer does: the
signature with the algorithm pinned to RS256 and the key id known, ``iss``, ``aud`` (only a
token without ``aud`` is judged by ``client_id``), ``exp``, ``nbf`` and ``iat`` not in the
future (each a NumericDate: a JSON number), and ``sub`` a string that is not blank. A refusal
names its reason in ``www-authenticate`` (:attr:`AuthError.challenge`), as the authorizer does.
The signing key is made at start, or read from (and first written to, mode 0600) ``key_path``
so tokens outlive a restart. Development only.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

LOCAL_ISSUER = "http://127.0.0.1/local-issuer"
LOCAL_AUDIENCE = "videogen-local"
ALGORITHM = "RS256"


class AuthError(Exception):
    """A refused token; ``description`` is what the 401's ``www-authenticate`` header says."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    @property
    def challenge(self) -> str:
        """The ``www-authenticate`` value, in the form API Gateway's JWT authorizer sends (its
        documented example: ``Bearer scope="" error="invalid_token" error_description="the token
        does not have a valid audience"``); a request without a bearer token gets ``Bearer``."""
        if self.description == NO_TOKEN:
            return "Bearer"
        return f'Bearer scope="" error="invalid_token" error_description="{self.description}"'


NO_TOKEN = "no bearer token"
# PyJWT's refusals in the authorizer's words (the audience one is AWS's published wording).
_DESCRIPTIONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidIssuerError, "the token does not have a valid issuer"),
    (jwt.InvalidSignatureError, "the token does not have a valid signature"),
    (jwt.InvalidAlgorithmError, "the token is not signed with an accepted algorithm"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim"),
)
_TIME_CLAIMS = ("exp", "nbf", "iat")


def _description(exc: jwt.PyJWTError) -> str:
    return next((text for kind, text in _DESCRIPTIONS if isinstance(exc, kind)), "the token is malformed")


def _is_numeric_date(value: Any) -> bool:
    """RFC 7519's NumericDate: a JSON number (not a string of digits, not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    """The RSA key stored at ``path``; made and stored there (owner-only) when absent. Two stacks
    starting at once agree on one key: it is written aside and linked in, never overwritten."""
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # another start stored its key first: use that one
        finally:
            aside.unlink()
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    stored = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(stored, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return stored


class LocalAuthority:
    def __init__(
        self,
        issuer: str = LOCAL_ISSUER,
        audience: str = LOCAL_AUDIENCE,
        kid: str = "local-1",
        key_path: Path | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = kid
        self._key = (
            load_or_create_key(key_path) if key_path else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )

    def issue(self, sub: str, ttl_s: int = 24 * 3600, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "iat": now,
            "nbf": now - 5,
            "exp": now + ttl_s,
            **claims,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """Claims of a valid ``Bearer`` token, else :class:`AuthError` (the gateway answers 401)."""
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError(NO_TOKEN)
        token = authorization.removeprefix("Bearer ").strip()
        try:
            if jwt.get_unverified_header(token).get("kid") != self.kid:
                raise AuthError("the token is not signed by a known key")
            # A time claim must be a number before PyJWT reads it: it takes "9999999999" too.
            unverified = jwt.decode(token, options={"verify_signature": False})
            if any(name in unverified and not _is_numeric_date(unverified[name]) for name in _TIME_CLAIMS):
                raise AuthError("the token's exp, nbf and iat must be NumericDates")
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                options={"require": ["exp", "iss", "sub"], "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(_description(exc)) from None
        if "aud" in claims:
            aud = claims["aud"]
            audiences = aud if isinstance(aud, list) else [aud]
        else:
            audiences = [claims.get("client_id")]
        if self.audience not in audiences:
            raise AuthError("the token does not have a valid audience")
        if not isinstance(claims["sub"], str) or not claims["sub"].strip():
            raise AuthError("the token does not have a valid subject")
        return {k: str(v) if not isinstance(v, str) else v for k, v in claims.items()}

"""The webhook signing keys: ED25519 keys, their JWKS, and the signature of one delivery."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class Keyring:
    """The keys the simulator signs with (the newest) and publishes (all kept ones)."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self._lock = threading.Lock()
        self._keys: list[tuple[str, Ed25519PrivateKey]] = []

    def ensure_key(self) -> None:
        with self._lock:
            empty = not self._keys
        if empty:
            self.rotate()

    def rotate(self, keep_old: bool = True) -> str:
        """Sign with a new key from now on; the JWKS keeps the old ones unless ``keep_old`` is False."""
        kid = f"falsim-{secrets.token_hex(6)}"
        key = Ed25519PrivateKey.generate()
        with self._lock:
            self._keys = [*self._keys, (kid, key)] if keep_old else [(kid, key)]
        return kid

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        with self._lock:
            return self._keys[-1][1]

    @property
    def signing_kid(self) -> str:
        with self._lock:
            return self._keys[-1][0]

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            keys = list(self._keys)
        out = []
        for kid, key in keys:
            raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
            out.append({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"})
        return {"keys": out}

    def sign(self, request_id: str, timestamp: str, body: bytes) -> str:
        """Hex signature of one delivery, exactly as docs/fal.md describes."""
        message = f"{request_id}\n{self.user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        return self.signing_key.sign(message).hex()

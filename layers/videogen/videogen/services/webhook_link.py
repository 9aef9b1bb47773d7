"""The webhook URL we hand fal for one job, and the checks of what comes back on it.

Two values travel in the URL, both derived from the deployment's webhook secret (never the secret
itself, so a URL seen in fal's dashboard or a log gives away neither the secret nor the key of
any other job's URL):

* ``token``: ``HMAC-SHA256(secret, "videogen/fal-webhook/url-token/v1")`` — the same for every
  job of the deployment; a request without it is refused before the signature is even checked;
* ``mac``: ``HMAC-SHA256(HMAC-SHA256(secret, "videogen/fal-webhook/job-mac/v1"), job_id)`` — binds
  the URL to ONE job: a delivery whose request id the job never recorded (our submit's answer was
  lost) may still settle the job, but only on a URL we built for that very job.

The two keys are separate HKDF-style expansions of one secret (RFC 5869 with the secret as PRK,
one block, the label as ``info``), so neither value can be computed from the other.
Values are base64url without padding (43 characters).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from videogen.domain.keys import expand as _expand

_URL_TOKEN = b"videogen/fal-webhook/url-token/v1"
_JOB_MAC = b"videogen/fal-webhook/job-mac/v1"
MAX_JOB_ID = 64


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _same(sent: str, expected: str) -> bool:
    return hmac.compare_digest(sent.encode(), expected.encode())


class WebhookLinks:
    """Builds and checks the fal webhook URL of a job. ``secret`` is read on each use (the
    deployment secret, cached by its provider), so a rotated secret takes effect without a deploy."""

    def __init__(self, secret: Callable[[], str]) -> None:
        self._secret = secret

    def token(self) -> str:
        """The URL token of this deployment; empty when no secret is configured."""
        secret = self._secret()
        return _b64(_expand(secret.encode(), _URL_TOKEN)) if secret else ""

    def mac(self, job_id: str) -> str:
        """The per-job MAC of ``job_id``; empty when no secret is configured."""
        secret = self._secret()
        if not secret:
            return ""
        key = _expand(secret.encode(), _JOB_MAC)
        return _b64(hmac.new(key, job_id.encode(), hashlib.sha256).digest())

    def url(self, base_url: str, job_id: str) -> str | None:
        """Where fal reports back for ``job_id``: our webhook with the token, the job id and its MAC.
        None without a public base URL (a local run against the real fal: the poll loop finishes jobs)."""
        if not base_url:
            return None
        query = {"token": self.token(), "job_id": job_id, "mac": self.mac(job_id)}
        return f"{base_url.rstrip('/')}/webhooks/fal?{urlencode(query)}"

    def token_ok(self, query: Mapping[str, str]) -> bool:
        expected = self.token()
        return bool(expected) and _same(query.get("token", ""), expected)

    def mac_ok(self, query: Mapping[str, str]) -> bool:
        """The URL was built by us for the job it names."""
        job_id, sent = query.get("job_id", ""), query.get("mac", "")
        if not job_id or not sent or len(job_id) > MAX_JOB_ID:
            return False
        expected = self.mac(job_id)
        return bool(expected) and _same(sent, expected)

"""fal.ai queue API client: the :class:`videogen.ports.FalGateway` adapter.

Follows ``docs/fal.md``: submit to ``{base}/{model_id}``, then use ONLY the three URLs fal
returned (status, response, cancel); they are stored and never rebuilt.

Error classification (see :func:`classify_status`):

* 2xx: success.
* 408, 409, 429, 5xx, transport errors, timeouts, unreadable answers: :class:`FalTransientError`
  (retryable; its class name is matched by the Step Functions ``Retry``).
* any other 4xx (400, 401, 403, 404, 422, ...): :class:`FalRejectedError` (final).

Retries: ``submit`` never retries in-process. fal has no idempotency key, so a retried submit
may create a second generation; Step Functions owns that decision. ``status``, ``result`` and
``cancel`` are safe to repeat and retry transient errors up to ``max_attempts`` times with
jittered exponential backoff, honouring ``Retry-After``. A ``Retry-After`` longer than
``max_retry_after_s`` is not slept through: the error is raised at once (carrying
``retry_after_s``) so the caller's own retry schedule takes over.

Protocol errors: a 2xx answer that cannot be used (not JSON, a submit answer missing
``request_id``/``status_url``/``response_url``/``cancel_url``, an unknown status value) is a
:class:`FalTransientError` with ``error_type="protocol_error"``. For submit this is the same
ambiguity as a submit that timed out (a job may or may not exist at fal); a rare duplicate from
the workflow's bounded retry is cheaper than refunding a job that fal still runs and charges for.

Result calls: a 401/403 says nothing about the request (our key is wrong or the account is
locked), so it raises :class:`FalRejectedError` instead of reporting the job as failed; every
other non-transient 4xx (400, 404 expired result, 422 validation) is the request's failure and
comes back as ``FalResult(error=..., code=..., field=...)``: what it means for the job is decided
by :func:`videogen.domain.endings.fal_failure` (so is a refused submit's, carried on the
``FalRejectedError``, and an ``ERROR`` webhook's).

The key comes from a ``key_provider`` callable on every call (Powertools caches it), is sent
only in the ``Authorization`` header, and never appears in a log line or an error message.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from videogen import jsonbody
from videogen.domain.endings import Failure, fal_failure
from videogen.domain.errors import BadRequest, FalRejectedError, FalTransientError
from videogen.domain.models import FalRequest
from videogen.ports import CancelOutcome, FalDelivery, FalResult, FalStatus

__all__ = [
    "FalClient",
    "classify_status",
    "fal_key_provider",
    "parse_delivery",
    "parse_retry_after",
    "result_from_payload",
    "status_from_payload",
]

TRANSIENT_STATUSES = frozenset({408, 409, 429})
# Transient answers that say fal took nothing (request timeout, rate limit, no runner): a submit
# answered so created no generation. Other 5xx (500, 502, 504) and transport errors after the
# request went out may hide an accepted one.
REFUSED_STATUSES = frozenset({408, 429, 503})
_STATUSES = ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
_URL_FIELDS = ("status_url", "response_url", "cancel_url")
_ENDPOINT_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")
_MAX_DETAIL = 300
_USER_AGENT = "videogen-fal-client/1"
# Bounds on what a status answer may carry into our table: fal's numbers are untrusted (a
# DynamoDB number has 38 digits; a position past this is as good as "very far back").
MAX_QUEUE_POSITION = 1_000_000
_MAX_LOG_ENTRIES = 50


def classify_status(status: int) -> Literal["ok", "transient", "rejected"]:
    """How an HTTP status of fal's queue API is handled."""
    if 200 <= status < 300:
        return "ok"
    if status in TRANSIENT_STATUSES or status >= 500:
        return "transient"
    return "rejected"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class FalClient:
    """The FalGateway adapter over fal's queue API (one pooled ``requests.Session``)."""

    def __init__(
        self,
        base_url: str,
        key_provider: Callable[[], str],
        timeout_s: float = 10,
        session: requests.Session | None = None,
        max_attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        *,
        backoff_base_s: float = 0.25,
        max_backoff_s: float = 2.0,
        max_retry_after_s: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self._base = base_url.rstrip("/")
        self._key_provider = key_provider
        self._timeout = (min(3.05, timeout_s), timeout_s)  # (connect, read)
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._backoff_base_s = backoff_base_s
        self._max_backoff_s = max_backoff_s
        self._max_retry_after_s = max_retry_after_s
        self._rng = rng or random.Random()
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self._session = session

    # -- FalGateway -------------------------------------------------------------------

    def _same_origin(self, url: object) -> bool:
        return isinstance(url, str) and "@" not in url and _origin(url) == _origin(self._base)

    def submit(self, endpoint: str, payload: dict[str, Any], webhook_url: str | None) -> FalRequest:
        """Queue one generation. Never retried here (a retry may create a second job)."""
        endpoint = endpoint.strip("/")
        if not _ENDPOINT_RE.match(endpoint) or any(part in {".", ".."} for part in endpoint.split("/")):
            raise ValueError(f"not a fal model id: {endpoint!r}")
        params = {"fal_webhook": webhook_url} if webhook_url else None
        resp = self._call("POST", f"{self._base}/{endpoint}", params=params, json_body=payload)
        if classify_status(resp.status_code) != "ok":
            raise self._error_for(resp)
        body = _json_object(resp)
        fields = {name: body.get(name) for name in ("request_id", "status_url", "response_url", "cancel_url")}
        missing = [name for name, value in fields.items() if not isinstance(value, str) or not value]
        # The key goes with every call to these URLs: they must be on the queue's own origin.
        bad_urls = [n for n in _URL_FIELDS if n not in missing and not self._same_origin(fields[n])]
        if missing or bad_urls:
            raise FalTransientError(
                f"submit answer unusable (missing {missing or 'nothing'}, bad urls {bad_urls or 'none'})",
                status=resp.status_code,
                error_type="protocol_error",
            )
        return FalRequest(**fields)

    def status(self, request: FalRequest) -> FalStatus:
        """One status poll (``?logs=1``); 200 and 202 are both answers."""
        resp = self._call_with_retries("GET", request.status_url, params={"logs": "1"})
        if classify_status(resp.status_code) != "ok":
            raise self._error_for(resp)
        return status_from_payload(_json_object(resp))

    def result(self, request: FalRequest) -> FalResult:
        """The finished request's outcome: its video URL, or its error."""
        resp = self._call_with_retries("GET", request.response_url)
        kind = classify_status(resp.status_code)
        if kind == "transient":
            raise self._error_for(resp)
        if kind == "rejected":
            if resp.status_code in {401, 403}:
                raise self._error_for(resp)
            return FalResult.failed(_failure_of(resp))
        return result_from_payload(_json_object(resp))

    def cancel(self, request: FalRequest) -> CancelOutcome:
        """Ask fal to cancel; queued jobs are removed, running ones only signalled."""
        resp = self._call_with_retries("PUT", request.cancel_url)
        body: dict[str, Any] = {}
        try:
            parsed = resp.json()
            body = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            pass
        status = str(body.get("status") or "").upper()
        if status == "ALREADY_COMPLETED":
            return "already_completed"
        if resp.status_code == 404 or status == "NOT_FOUND":
            return "not_found"
        if classify_status(resp.status_code) == "ok":
            return "requested"
        raise self._error_for(resp)

    # -- HTTP ---------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        try:
            key = self._key_provider()
        except Exception as exc:  # noqa: BLE001 - the provider talks to AWS; its failures are worth a retry
            raise FalTransientError(
                f"fal key unavailable ({type(exc).__name__})", error_type="key_unavailable", refused=True
            ) from None
        if not key:
            raise FalRejectedError(401, "missing_key", "no fal key configured")
        return {"Authorization": f"Key {key}", "Accept": "application/json", "User-Agent": _USER_AGENT}

    def _call(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
    ) -> requests.Response:
        headers = self._headers()
        try:
            resp = self._session.request(
                method, url, params=params, json=json_body, headers=headers, timeout=self._timeout
            )
            resp.content  # noqa: B018 - read the (small) body now so transport errors surface here
        except requests.RequestException as exc:
            # Never put the exception text in the message: it can hold the URL (webhook token).
            kind = "timeout" if isinstance(exc, requests.Timeout) else "transport_error"
            raise FalTransientError(
                f"fal {method} failed: {type(exc).__name__}",
                error_type=kind,
                refused=isinstance(exc, requests.ConnectTimeout),  # never connected: nothing was sent
            ) from None
        return resp

    def _call_with_retries(self, method: str, url: str, *, params: dict[str, str] | None = None) -> requests.Response:
        attempt = 1
        while True:
            try:
                resp = self._call(method, url, params=params)
                if classify_status(resp.status_code) != "transient":
                    if method == "GET" and 200 <= resp.status_code < 300:
                        _json_object(resp)  # an unreadable 2xx body is worth another try
                    return resp
                error = self._transient_for(resp)
            except FalTransientError as exc:
                error = exc
            if attempt >= self._max_attempts:
                raise error
            if error.retry_after_s is not None:
                if error.retry_after_s > self._max_retry_after_s:
                    raise error
                delay = error.retry_after_s
            else:
                ceiling = min(self._max_backoff_s, self._backoff_base_s * 2 ** (attempt - 1))
                delay = self._rng.uniform(ceiling / 2, ceiling)
            self._sleep(delay)
            attempt += 1

    def _error_for(self, resp: requests.Response) -> FalTransientError | FalRejectedError:
        if classify_status(resp.status_code) == "transient":
            return self._transient_for(resp)
        error_type, detail = _error_info(resp)
        return FalRejectedError(resp.status_code, error_type, self._scrub(detail), _failure_of(resp))

    def _transient_for(self, resp: requests.Response) -> FalTransientError:
        error_type, detail = _error_info(resp)
        return FalTransientError(
            _short(f"fal answered {resp.status_code} {error_type or ''}: {self._scrub(detail)}"),
            status=resp.status_code,
            error_type=error_type,
            retry_after_s=parse_retry_after(resp.headers.get("Retry-After")),
            refused=resp.status_code in REFUSED_STATUSES,
        )

    def _scrub(self, text: str) -> str:
        try:
            key = self._key_provider()
        except Exception:  # noqa: BLE001 - scrubbing must never mask the original error
            return text
        return text.replace(key, "***") if key and len(key) >= 4 else text


def status_from_payload(body: Mapping[str, Any]) -> FalStatus:
    """A status answer's fields, bounded: an unknown status is a protocol error; the queue
    position is a whole number in ``0..MAX_QUEUE_POSITION`` (a larger one is clamped, a negative
    or non-finite one dropped); only the last ``_MAX_LOG_ENTRIES`` log entries are kept."""
    status = body.get("status")
    if status not in _STATUSES:
        raise FalTransientError(f"unknown fal status {str(status)[:40]!r}", error_type="protocol_error")
    logs = body.get("logs")
    error = body.get("error")
    error_type = body.get("error_type")
    return FalStatus(
        status=status,
        queue_position=_queue_position(body.get("queue_position")),
        logs=[entry for entry in logs if isinstance(entry, dict)][-_MAX_LOG_ENTRIES:] if isinstance(logs, list) else [],
        error=_short(str(error)) if error else None,
        error_type=str(error_type)[:100] if error_type else None,
    )


def _queue_position(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return None if value < 0 else int(min(value, MAX_QUEUE_POSITION))


def result_from_payload(payload: object, payload_error: object = None) -> FalResult:
    """A finished request's output (the result answer, or a webhook's ``payload``) → FalResult.

    The ONE reader of fal's output shape: ``{"video": {"url": ..., "content_type": ...}}``.
    """
    body = payload if isinstance(payload, Mapping) else {}
    video = body.get("video")
    url = video.get("url") if isinstance(video, Mapping) else None
    if not isinstance(url, str) or not url:
        error = payload_error or body.get("payload_error")
        if error:
            return FalResult(error=_short(f"payload error: {error}"))
        return FalResult(error="no video in result")
    content_type = video.get("content_type") if isinstance(video, Mapping) else None
    return FalResult(video_url=url, content_type=content_type if isinstance(content_type, str) else None)


def parse_delivery(raw_body: bytes) -> FalDelivery | None:
    """A fal webhook body → FalDelivery; None for a status we ignore; BadRequest if it is not one.

    Implements :class:`videogen.ports.DeliveryParser`. ``status`` is ``OK`` (``payload`` holds the
    same output as the result answer) or ``ERROR`` (``error`` says why).
    """
    try:
        body = jsonbody.loads(raw_body)
    except jsonbody.JsonRejected as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    except ValueError:  # not UTF-8 or not JSON at all
        raise BadRequest("body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("request_id"), str) or not body["request_id"]:
        raise BadRequest("body is not a fal webhook (request_id missing)")
    status = body.get("status")
    if status == "OK":
        return FalDelivery(body["request_id"], result_from_payload(body.get("payload"), body.get("payload_error")))
    if status == "ERROR":
        return FalDelivery(body["request_id"], FalResult.failed(_delivery_failure(body)))
    return None


def _delivery_failure(body: Mapping[str, Any]) -> Failure:
    """An ERROR webhook's failure: ``error`` says fal's status (``Invalid status code: 422``) and
    ``payload`` holds the result's error body (``{"detail": [...]}`` or ``{"detail", "error_type"}``)."""
    error = str(body.get("error") or "") or "generation failed"
    payload = body.get("payload")
    payload = payload if isinstance(payload, Mapping) else {}
    error_type = payload.get("error_type")
    detail = payload.get("detail")
    text = _detail_text(detail)
    return fal_failure(
        _short(f"{error}: {text}" if text and text != error else error),
        error_type=str(error_type)[:100] if isinstance(error_type, str) and error_type else None,
        detail=detail,
    )


def _failure_of(resp: requests.Response) -> Failure:
    """What a final error answer of fal means for the job (``endings.fal_failure``)."""
    error_type, detail = _error_info(resp)
    label = f"{resp.status_code} {error_type}" if error_type else str(resp.status_code)
    try:
        body = resp.json()
    except ValueError:
        body = None
    raw = body.get("detail") if isinstance(body, dict) else None
    return fal_failure(_short(f"{label}: {detail}"), http_status=resp.status_code, error_type=error_type, detail=raw)


def fal_key_provider(settings: Any, max_age_s: int = 300) -> Callable[[], str]:
    """A callable returning FAL_KEY: ``settings.fal_key`` when set (local), else the secret.

    ``settings.fal_key_parameter`` names a Secrets Manager secret when it starts with
    ``arn:aws:secretsmanager`` (read with ``parameters.get_secret``), otherwise an SSM
    SecureString (``parameters.get_parameter(decrypt=True)``). Powertools caches the value
    for ``max_age_s``. A JSON secret ``{"FAL_KEY": "..."}`` (or ``fal_key`` / ``key``) is
    unwrapped.
    """
    if settings.fal_key:
        local_key: str = settings.fal_key
        return lambda: local_key
    name: str = settings.fal_key_parameter
    if not name:
        raise ValueError("neither FAL_KEY nor FAL_KEY_PARAMETER is set")

    def provide() -> str:
        from aws_lambda_powertools.utilities import parameters

        if name.startswith("arn:aws:secretsmanager"):
            value = parameters.get_secret(name, max_age=max_age_s)
        else:
            value = parameters.get_parameter(name, decrypt=True, max_age=max_age_s)
        return _unwrap_key(value)

    return provide


def _unwrap_key(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, dict):
        data: object = value
    elif isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            data = None
    else:
        return str(value or "").strip()
    if isinstance(data, dict):
        for field in ("FAL_KEY", "fal_key", "key"):
            if isinstance(data.get(field), str):
                return str(data[field]).strip()
    raise ValueError("the fal key secret holds JSON without a FAL_KEY field")


# -- helpers ---------------------------------------------------------------------------


def _json_object(resp: requests.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        raise FalTransientError(
            f"fal answered {resp.status_code} with a body that is not JSON",
            status=resp.status_code,
            error_type="protocol_error",
        ) from None
    if not isinstance(body, dict):
        raise FalTransientError(
            f"fal answered {resp.status_code} with JSON that is not an object",
            status=resp.status_code,
            error_type="protocol_error",
        )
    return body


def _error_info(resp: requests.Response) -> tuple[str | None, str]:
    """(error_type, short detail) from a fal error answer."""
    error_type = resp.headers.get("X-Fal-Error-Type")
    detail: str = resp.reason or f"HTTP {resp.status_code}"
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if not error_type and isinstance(body.get("error_type"), str):
            error_type = body["error_type"]
        detail = _detail_text(body.get("detail")) or (body["status"] if isinstance(body.get("status"), str) else detail)
    return (error_type[:100] if error_type else None), _short(detail)


def _detail_text(raw: object) -> str:
    """fal's ``detail`` as one short line: a string as is, validation items as ``loc: msg; ...``."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and raw:
        return "; ".join(_validation_item(item) for item in raw[:3])
    return ""


def _validation_item(item: object) -> str:
    if not isinstance(item, dict):
        return str(item)
    loc = item.get("loc")
    where = ".".join(str(part) for part in loc) if isinstance(loc, list) else ""
    msg = str(item.get("msg") or item.get("type") or "invalid")
    return f"{where}: {msg}" if where else msg


def _short(text: str, limit: int = _MAX_DETAIL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()

"""What the chaos run's simulated apps do besides submitting: register their devices for push
(``PUT /v1/devices/{id}``, some removed mid-run with ``DELETE``, some whose token the push service
starts reporting invalid: ``POST /_local/push/disable``) and upload photos through the
presigned POST (``POST /v1/uploads``, the bytes straight to S3, then ``GET /v1/uploads/{id}`` until
the S3 event's check decided), and what each saw (:class:`AppObservations`, wall-clock times: the
audit compares them with the stack's notification times on the same machine)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from devstack.chaos.plan import REJECTED, DevicePlan, User
from devstack.sample_files import png

MAX_ATTEMPTS = 10  # a 5xx or a lost answer is retried, as an app would
RATE_LIMIT_WAIT_CAP_S = 1.0  # a 429's Retry-After is waited, at most this long (the run is short)
CHECK_WAIT_S = 30  # how long an app waits for its upload's check
NOT_THE_DECLARED_TYPE = b"GIF89a" + b"\x00" * 200  # declared image/png: the check rejects it (type_mismatch)


@dataclass
class DeviceSeen:
    user_id: str
    device_id: str
    registered_at: float | None = None  # wall clock when PUT answered 200 (None: never registered)
    delete_sent_at: float | None = None  # wall clock when the DELETE was sent
    deleted_at: float | None = None  # wall clock when the DELETE answered 204
    invalid_sent_at: float | None = None  # wall clock when its token was made invalid (endpoint disabled)
    invalid_at: float | None = None  # ... and when that was answered

    def registered_throughout(self, since: float) -> bool:
        """Registered before ``since``, never deleted and its token never invalid during the run."""
        return (
            self.registered_at is not None
            and self.registered_at < since
            and self.delete_sent_at is None
            and self.invalid_sent_at is None
        )


@dataclass
class UploadSeen:
    upload_id: str
    user_id: str
    source: str  # plan.UPLOAD / plan.REJECTED: what the app meant to send
    status: str  # what GET /v1/uploads/{id} said last ("pending" when the check never decided)
    error_code: str | None = None


@dataclass
class AppObservations:
    lock: threading.Lock = field(default_factory=threading.Lock)
    devices: dict[tuple[str, str], DeviceSeen] = field(default_factory=dict)  # (user, device) ->
    uploads: dict[str, UploadSeen] = field(default_factory=dict)  # upload id ->
    upload_by_key: dict[str, str] = field(default_factory=dict)  # idempotency key -> its upload id
    failures: list[str] = field(default_factory=list)  # app calls that never succeeded
    rate_limited: list[str] = field(default_factory=list)  # app calls still 429 after their retries (correct)


class Apps:
    """The app side of each user; ``call(method, url, token, **kw)`` sends one request (the
    driver's :class:`~devstack.chaos.driver.Client`)."""

    def __init__(self, client: Any, seen: AppObservations, rng_seed: int) -> None:
        self.client = client
        self.seen = seen
        self._rng = random.Random(rng_seed)
        self._rng_lock = threading.Lock()

    def _retry(self, what: str, send: Callable[[], requests.Response], ok: int) -> requests.Response | None:
        """``send()`` until it answers ``ok``; a 5xx, a 409 or no answer is retried, a 429 after its
        ``Retry-After`` (capped: the run is short) as an app does (None: never). A user still over
        their request budget at the end was answered correctly: not a failure of the system."""
        reply: requests.Response | None = None
        for attempt in range(MAX_ATTEMPTS):
            try:
                reply = send()
            except requests.RequestException:
                reply = None
            if reply is not None and reply.status_code == ok:
                return reply
            if reply is not None and reply.status_code == 429:
                wait = float(reply.headers.get("Retry-After") or 1)
                time.sleep(min(RATE_LIMIT_WAIT_CAP_S, wait) + random.uniform(0, 0.2))
                continue
            if reply is not None and reply.status_code < 500 and reply.status_code != 409:
                break  # an answer retrying cannot change
            time.sleep(random.uniform(0.05, min(2.0, 0.2 * 2**attempt)))
        with self.seen.lock:
            if reply is not None and reply.status_code == 429:
                self.seen.rate_limited.append(what)
            else:
                self.seen.failures.append(f"{what}: {reply.status_code if reply is not None else 'no answer'}")
        return None

    # --- devices ---------------------------------------------------------------------------

    def register(self, user: User, device: DevicePlan) -> None:
        seen = DeviceSeen(user.user_id, device.device_id)
        with self.seen.lock:
            self.seen.devices[(user.user_id, device.device_id)] = seen
        reply = self._retry(
            f"PUT /v1/devices/{device.device_id}",
            lambda: self.client.call(
                "PUT",
                f"/v1/devices/{device.device_id}",
                user.token,
                json={"platform": device.platform, "token": device.token},
            ),
            200,
        )
        if reply is not None:
            seen.registered_at = time.time()

    def delete(self, user: User, device: DevicePlan) -> None:
        seen = self.seen.devices[(user.user_id, device.device_id)]
        if seen.registered_at is None:
            return
        seen.delete_sent_at = time.time()
        reply = self._retry(
            f"DELETE /v1/devices/{device.device_id}",
            lambda: self.client.call("DELETE", f"/v1/devices/{device.device_id}", user.token),
            204,
        )
        if reply is not None:
            seen.deleted_at = time.time()

    def invalidate(self, user: User, device: DevicePlan) -> None:
        """The push service starts rejecting the device's token (its SNS endpoint disabled)."""
        seen = self.seen.devices[(user.user_id, device.device_id)]
        if seen.registered_at is None:
            return
        seen.invalid_sent_at = time.time()
        reply = self._retry(
            f"POST /_local/push/disable {device.device_id}",
            lambda: self.client.call(
                "POST", "/_local/push/disable", json={"user_id": user.user_id, "device_id": device.device_id}
            ),
            200,
        )
        if reply is not None:
            seen.invalid_at = time.time()

    def schedule_device_changes(self, users: list[User]) -> list[threading.Timer]:
        """Start a timer per device the plan deletes or whose token goes invalid mid-run (from
        now); the caller joins them."""
        timers = []
        for user in users:
            for device in user.devices:
                for after_s, change in (
                    (device.delete_after_s, self.delete),
                    (device.invalid_after_s, self.invalidate),
                ):
                    if after_s is not None:
                        timer = threading.Timer(after_s, change, (user, device))
                        timer.daemon = True
                        timer.start()
                        timers.append(timer)
        return timers

    # --- uploads ---------------------------------------------------------------------------

    def upload_photo(self, user: User, key: str, source: str) -> str | None:
        """Upload a photo (a real PNG; for ``REJECTED`` bytes that are not one, declared
        image/png) and wait for its check. The upload id, None when the app could not upload."""
        with self._rng_lock:
            width, height = self._rng.randint(8, 96), self._rng.randint(8, 96)
        data = NOT_THE_DECLARED_TYPE if source == REJECTED else png(width, height)
        created = self._retry(
            "POST /v1/uploads",
            lambda: self.client.call(
                "POST", "/v1/uploads", user.token, json={"content_type": "image/png", "size_bytes": len(data)}
            ),
            201,
        )
        if created is None:
            return None
        body = created.json()
        upload_id = str(body["upload"]["id"])
        sent = self._retry(
            f"POST the bytes of {upload_id} to S3",
            lambda: self.client.http.post(
                body["url"], data=body["fields"], files={"file": ("photo.png", data, "image/png")}, timeout=30
            ),
            204,
        )
        seen = UploadSeen(upload_id, user.user_id, source, "pending")
        with self.seen.lock:
            self.seen.uploads[upload_id] = seen
            self.seen.upload_by_key[key] = upload_id
        if sent is None:
            return upload_id
        deadline = time.monotonic() + CHECK_WAIT_S
        while time.monotonic() < deadline:
            try:
                got = self.client.call("GET", f"/v1/uploads/{upload_id}", user.token)
            except requests.RequestException:
                got = None
            if got is not None and got.status_code == 200:
                upload = got.json()
                seen.status = str(upload["status"])
                seen.error_code = (upload.get("error") or {}).get("code")
                if seen.status != "pending":
                    break
            time.sleep(0.2)
        return upload_id

"""The notifier: on "Job Completed" / "Job Failed", one notification per device of the job's owner.

At most once per job and device. The record of a (job, device) notification is written BEFORE the
publish, with a condition (absent): a duplicate or redelivered event, or a concurrent invocation,
finds it and sends nothing. After the publish it is marked ``sent``. When the publish certainly did
not send (SNS answered an error), the record is released, so the invocation's retry (Lambda's
asynchronous retries) can send it. When the outcome is unknown (a crash or a timeout between the
record and SNS's answer) the record stays ``sending`` and the message is NOT sent again: a lost
notification is the lesser harm than a duplicate, and it is not silent — the unknown outcome is
logged and counted (``PushOutcomeUnknown``), and the record says ``sending`` for good.

A completed job's notification waits for its poster up to ``poster_wait_s`` (the media function
cuts it after the same event), then goes without it. A device whose endpoint SNS reports disabled
or deleted is removed; one device failing never stops the others.

A device is sent to only while it owns its token (domain/devices.py): the claim's write checks the
token's ownership item (a ConditionCheck in the same transaction). A device whose token another
device registered since (the phone is signed in as another user now) is removed, its endpoint
kept: the endpoint is the token's, and the token's new owner is sent to through it. A registration
landing between that check and the publish is the one window left (one notification at most).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable

from videogen.domain.devices import NOTIFIED, Device, Notification, notification_for
from videogen.domain.errors import DeviceChanged, DeviceNotFound, PushEndpointGone, PushUnavailable, TokenMoved
from videogen.domain.models import JobStatus
from videogen.observability import count, logger
from videogen.ports import DeviceStore, JobStore, PosterLookup, PushGateway, VideoStore


class NotifyIncomplete(Exception):
    """Some devices could not be sent to now; raised after trying all of them, so the invocation
    is retried (the devices already sent to are skipped by their records)."""


class Notifier:
    def __init__(
        self,
        devices: DeviceStore,
        push: PushGateway,
        posters: PosterLookup,
        *,
        poster_wait_s: float,
        poster_poll_s: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._devices = devices
        self._push = push
        self._posters = posters
        self._wait_s = poster_wait_s
        self._poll_s = poster_poll_s
        self._sleep = sleep
        self._clock = clock

    def job_ended(self, job_id: str, user_id: str, status: JobStatus) -> dict[str, int]:
        """Notify every device of ``user_id`` about ``job_id``; the outcomes counted by kind."""
        if status not in NOTIFIED:
            return {}
        devices = [d for d in self._devices.list_devices(user_id) if self._push.enabled(d.platform)]
        if not devices:
            return {}
        poster = self._wait_for_poster(job_id) if status == JobStatus.COMPLETED else None
        notification = notification_for(job_id, status, poster)
        outcomes: Counter[str] = Counter()
        for device in devices:
            try:
                outcome = self._send(device, notification)
            except PushUnavailable:
                outcome = "unavailable"
            except Exception:  # noqa: BLE001 - one device's failure never stops the others
                logger.exception("notifying a device failed", extra={"job_id": job_id, "device_id": device.id})
                outcome = "error"
            outcomes[outcome] += 1
            count(f"Push_{outcome}")
        logger.info("job notified", extra={"job_id": job_id, **outcomes})
        if outcomes["unavailable"] or outcomes["error"]:
            raise NotifyIncomplete(f"{outcomes['unavailable'] + outcomes['error']} device(s) not notified yet")
        return dict(outcomes)

    def _wait_for_poster(self, job_id: str) -> str | None:
        deadline = self._clock() + self._wait_s
        while True:
            url = self._posters.poster_url(job_id)
            if url:
                return url
            remaining = deadline - self._clock()
            if remaining <= 0:
                count("PushPosterWaitExhausted")
                return None
            self._sleep(min(self._poll_s, remaining))

    def _send(self, device: Device, notification: Notification) -> str:
        job_id = notification.job_id
        try:
            endpoint = device.endpoint_arn or self._endpoint(device)
        except PushEndpointGone:  # the service rejected the token
            self._remove(device, None)
            return "removed"
        try:
            claim = self._devices.claim_notification(job_id, device)
        except TokenMoved:  # the token is another device's now: never send this one the job
            self._remove(device, None)
            return "moved"
        if claim is None:
            return "duplicate"
        try:
            message_id = self._push.publish(device.platform, endpoint, notification)
        except PushEndpointGone:
            self._devices.release_notification(job_id, device.id, claim)
            self._remove(device, endpoint)
            return "removed"
        except PushUnavailable:
            self._devices.release_notification(job_id, device.id, claim)
            raise
        except Exception:
            # SNS may or may not have taken it (a timeout after the request went out): keep the claim
            logger.warning("push outcome unknown; not sent again", extra={"job_id": job_id, "device_id": device.id})
            count("PushOutcomeUnknown")
            raise
        self._devices.notification_sent(job_id, device.id, claim, message_id)
        return "sent"

    def _endpoint(self, device: Device) -> str:
        """A device registered while push was off (or SNS did not answer) gets its endpoint now."""
        arn = self._push.ensure_endpoint(device.platform, device.token, None)
        with contextlib.suppress(DeviceChanged):  # re-registered meanwhile: this send still goes to its token
            self._devices.set_endpoint(device, arn)
        return arn

    def _remove(self, device: Device, endpoint: str | None) -> None:
        """Remove the device while it holds its token; and the SNS endpoint, when given (never for
        a moved token: the new owner's notifications go through it)."""
        count("PushDeviceRemoved")
        try:
            self._devices.delete_device(device.user_id, device.id, token=device.token)
        except (DeviceChanged, DeviceNotFound):
            return  # re-registered with a new token (keep it) or removed already
        if endpoint:
            self._push.delete_endpoint(endpoint)
        logger.info("device removed: its push endpoint is disabled or its token moved", extra={"device_id": device.id})


class JobPosters:
    """:class:`videogen.ports.PosterLookup` on the job record: the poster exists once the media
    function stored ``video.media`` (with its ``poster_key``) on the completed job (coord note of
    s15-media); presigned like the video."""

    def __init__(self, store: JobStore, videos: VideoStore, ttl_s: int) -> None:
        self._store = store
        self._videos = videos
        self._ttl_s = ttl_s

    def poster_url(self, job_id: str) -> str | None:
        job = self._store.get_job(job_id)
        media = getattr(job.video, "media", None) if job else None
        key = getattr(media, "poster_key", None)
        return self._videos.presign(key, self._ttl_s).url if isinstance(key, str) and key else None

"""The services wired to the fakes, as ``videogen.wiring`` wires them to AWS and fal."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.fal import FakeFal
from tests.fakes.jobs import make_job
from tests.fakes.media import FakeMediaSource, FakeVideoStore
from tests.fakes.store import FakeStore
from tests.fakes.workflow import FakeEvents, FakeWorkflow
from videogen.adapters.fal import parse_delivery
from videogen.domain.models import Job, JobStatus
from videogen.domain.registry import Registry
from videogen.services.cancel import CancelJob
from videogen.services.completion import JobFinisher, video_key
from videogen.services.expiry import ExpireJob
from videogen.services.fal_check import CheckJob
from videogen.services.fal_poll import FalPoller
from videogen.services.fal_submit import SubmitToFal
from videogen.services.reconcile import Reconciler
from videogen.services.webhook import WebhookService

WEBHOOK_TOKEN = "hook-token"
CANCELLED = "Request was cancelled"  # what fal reports for a request a cancel removed from its queue
GRACE_S = 120


class AcceptingVerifier:
    """A signature verifier that accepts every delivery, or refuses them all with ``error``."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.verified = 0

    def verify(self, headers: Any, raw_body: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.verified += 1


class System:
    """The services wired to fakes, as wiring.py wires them to AWS and fal."""

    def __init__(self, *, batch: int = 50) -> None:
        self.store = FakeStore()
        self.priced = True  # the teardown audit checks every charge against the registry's price
        self.fal = FakeFal()
        self.media = FakeMediaSource()
        self.videos = FakeVideoStore()
        self.events = FakeEvents()
        self.workflow = FakeWorkflow()
        self.verifier = AcceptingVerifier()
        self.registry = Registry()
        self.finisher = JobFinisher(self.store, self.media, self.videos, self.events)
        self.poller = FalPoller(self.store, self.fal, self.finisher)
        self.submit = SubmitToFal(
            self.store,
            self.registry,
            self.fal,
            self.finisher,
            lambda job_id: f"https://api.test/webhooks/fal?token={WEBHOOK_TOKEN}&job_id={job_id}",
        )
        self.check = CheckJob(self.store, self.poller)
        self.expire = ExpireJob(self.store, self.fal, self.poller, self.finisher)
        self.cancel = CancelJob(self.store, self.poller, self.finisher)
        self.webhooks = WebhookService(self.store, self.finisher, self.verifier, lambda: WEBHOOK_TOKEN, parse_delivery)
        self.reconciler = Reconciler(
            self.store,
            self.registry,
            self.workflow,
            self.poller,
            self.expire,
            self.finisher,
            grace_s=GRACE_S,
            batch=batch,
            time_scale=1.0,
        )

    def given_job(self, status: JobStatus = JobStatus.QUEUED, **fields: Any) -> Job:
        """A job as the real paths leave it (charged once, its slot held, refunded if it failed,
        its video stored if it completed)."""
        job = make_job(status, **fields)
        if {"credits", "model"} & fields.keys():
            self.priced = False  # seeded at a cost or for a model the registry does not price so
        if status == JobStatus.COMPLETED and job.video is None:
            job = job.model_copy(update={"video": self.videos.put(video_key(job), f"video of {job.id}".encode())})
        return self.store.put_job(job)

    def deliver_cancelled(self, job: Job) -> dict[str, Any]:
        """fal's ERROR webhook for the job's request after a cancel removed it from the queue
        (docs/fal.md: delivered at once, often before the cancel call's answer is acted on)."""
        assert job.fal is not None
        body: dict[str, Any] = {"request_id": job.fal.request_id, "status": "ERROR", "error": CANCELLED}
        body["payload"] = {"detail": CANCELLED}
        query = {"token": WEBHOOK_TOKEN, "job_id": job.id}
        return self.webhooks.handle({}, query, json.dumps(body).encode())

    def job(self, job_id: str) -> Job:
        return self.store.job(job_id)

    def assert_invariants(self) -> None:
        result = self.store.audit(self.videos, priced=self.priced)
        assert result.ok, result.problems

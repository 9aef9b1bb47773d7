"""The services wired to the fakes, as ``videogen.wiring`` wires them to AWS and fal."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.fal import FakeFal
from tests.fakes.jobs import make_job
from tests.fakes.media import FakeMediaSource, FakeMediaTools, FakeVideoStore
from tests.fakes.store import FakeStore
from tests.fakes.workflow import FakeEvents, FakeWorkflow
from videogen import jsonbody
from videogen.adapters.fal import parse_delivery
from videogen.domain.models import Job, JobStatus
from videogen.domain.registry import Registry
from videogen.ports import SignedDelivery
from videogen.services.cancel import CancelJob
from videogen.services.completion import JobFinisher, video_key
from videogen.services.expiry import ExpireJob
from videogen.services.fal_check import CheckJob
from videogen.services.fal_poll import FalPoller
from videogen.services.fal_submit import SubmitToFal
from videogen.services.poster import PosterMaker
from videogen.services.reconcile import Reconciler
from videogen.services.webhook import WebhookService
from videogen.services.webhook_link import WebhookLinks

WEBHOOK_SECRET = "hook-secret"  # the deployment's webhook secret
LINKS = WebhookLinks(lambda: WEBHOOK_SECRET)
WEBHOOK_TOKEN = LINKS.token()  # what the webhook URL carries (derived from the secret)
CANCELLED = "Request was cancelled"  # what fal reports for a request a cancel removed from its queue
GRACE_S = 120


class AcceptingVerifier:
    """A signature verifier that accepts every delivery, or refuses them all with ``error``. It
    vouches for the body's request id (``signed_request_id`` overrides it) and, unless
    ``our_account`` is False, for our pinned fal account."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.verified = 0
        self.our_account = True
        self.signed_request_id: str | None = None

    def verify(self, headers: Any, raw_body: bytes) -> SignedDelivery:
        if self.error is not None:
            raise self.error
        self.verified += 1
        if self.signed_request_id is not None:
            return SignedDelivery(self.signed_request_id, self.our_account)
        try:
            body = jsonbody.loads(raw_body)
        except ValueError:
            body = None
        request_id = body.get("request_id") if isinstance(body, dict) else None
        return SignedDelivery(request_id if isinstance(request_id, str) else "", self.our_account)


def webhook_query(job_id: str | None = None, *, mac: bool = False) -> dict[str, str]:
    """The query of a webhook URL: the deployment token, the job id if any, and its MAC when asked
    (the URL fal was given for that job; without it, as a job id swapped into another URL)."""
    query = {"token": WEBHOOK_TOKEN, **({"job_id": job_id} if job_id else {})}
    if mac and job_id:
        query["mac"] = LINKS.mac(job_id)
    return query


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
        self.media_tools = FakeMediaTools(self.videos)
        self.registry = Registry()
        self.finisher = JobFinisher(self.store, self.media, self.videos, self.events)
        self.poller = FalPoller(self.store, self.fal, self.finisher)
        self.submit = SubmitToFal(
            self.store,
            self.registry,
            self.fal,
            self.finisher,
            lambda job_id: LINKS.url("https://api.test", job_id),
            self.videos,
        )
        self.check = CheckJob(self.store, self.poller)
        self.expire = ExpireJob(self.store, self.fal, self.poller, self.finisher)
        self.cancel = CancelJob(self.store, self.poller, self.finisher)
        self.webhooks = WebhookService(self.store, self.finisher, self.verifier, LINKS, parse_delivery)
        self.posters = PosterMaker(self.store, self.media_tools)
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
        return self.webhooks.handle({}, webhook_query(job.id), json.dumps(body).encode())

    def job(self, job_id: str) -> Job:
        return self.store.job(job_id)

    def assert_invariants(self) -> None:
        result = self.store.audit(self.videos, priced=self.priced)
        assert result.ok, result.problems

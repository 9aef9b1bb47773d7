"""SubmitToFal (services/fal_submit.py): the webhook URL's form, what each outcome counts and logs,
and an orphaned request when another run stored its own first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.fakes import fal_request
from tests.fakes.system import System
from videogen.domain.errors import FalRejectedError, FalTransientError
from videogen.domain.models import JobStatus, Progress
from videogen.services.webhook_link import WebhookLinks

Counted = Callable[[str], int]
Logged = Callable[..., list[tuple[Any, ...]]]


def test_the_webhook_url_drops_only_trailing_slashes_of_the_base() -> None:
    links = WebhookLinks(lambda: "s")
    url = links.url("https://api.test/stageX//", "vid_1")
    assert url is not None and url.startswith("https://api.test/stageX/webhooks/fal?token=")
    assert "&job_id=vid_1&mac=" in url
    assert links.url("", "vid_1") is None


def test_a_stored_request_is_counted(system: System, counted: Counted) -> None:
    job = system.given_job()
    assert system.submit.run(job.id) == {"done": False}
    assert (counted("FalSubmitted"), counted("FalSubmitRejected"), counted("FalOrphanCanceled")) == (1, 0, 0)


def test_a_resubmission_is_logged_with_its_attempt(system: System, logged: Logged) -> None:
    job = system.given_job(submit_attempts=1)
    system.submit.run(job.id)
    assert logged("resubmitting to fal", "job_id", "attempt") == [(job.id, 2)]


def test_a_rejected_request_is_counted(system: System, counted: Counted) -> None:
    job = system.given_job()
    system.fal.on_submit(FalRejectedError(422, "validation", "bad input"))
    assert system.submit.run(job.id) == {"done": True}
    assert (counted("FalSubmitRejected"), counted("FalSubmitted")) == (1, 0)
    assert system.job(job.id).error.message == "fal rejected the request (422)"  # type: ignore[union-attr]


def test_when_another_run_stored_its_request_first_ours_is_canceled_and_the_job_goes_on(
    system: System, counted: Counted
) -> None:
    job = system.given_job()
    theirs = fal_request("req-theirs")
    system.store.before("mark_submitted", lambda: system.store.mark_submitted(job.id, theirs, Progress()))
    assert system.submit.run(job.id) == {"done": False}  # the job is active: the poll loop goes on
    assert system.fal.calls[-1] == ("cancel", "req-1")
    assert system.job(job.id).fal == theirs and system.job(job.id).status == JobStatus.SUBMITTED
    assert (counted("FalOrphanCanceled"), counted("FalSubmitted")) == (1, 0)


def test_an_orphan_fal_would_not_cancel_is_logged_with_its_job(system: System, logged: Logged) -> None:
    job = system.given_job()
    system.store.before("mark_submitted", lambda: system.cancel.run(system.job(job.id)))
    system.fal.script_cancel("req-1", FalTransientError("timeout"))
    assert system.submit.run(job.id) == {"done": True}
    assert logged("could not cancel a request at fal", "job_id") == [(job.id,)]

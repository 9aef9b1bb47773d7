"""POST /v1/videos: validate, then charge + job + idempotency record + ledger in ONE
transaction, then start the job's execution. No call to fal on this path."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from videogen import contract, crash, jsonbody
from videogen.domain.errors import (
    BalanceChanged,
    ConcurrentUpdate,
    IdempotencyKeyInvalid,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    IdempotencyKeyTaken,
    InsufficientCredits,
    ModelNotFound,
    TooManyActiveJobs,
    ValidationFailed,
    shown,
)
from videogen.domain.limits import UserLimits, admit, check_within_cap
from videogen.domain.models import IdempotencyRecord, Job, JobStatus, Progress, new_id, rfc3339
from videogen.domain.registry import ModelInput, ModelSpec, Registry, upload_refs
from videogen.domain.timing import deadline_for, execution_input
from videogen.observability import count, logger
from videogen.ports import JobStore, Workflow
from videogen.retry import backoff
from videogen.services.uploads import check_uploads
from videogen.services.views import job_view

# 1-255 printable ASCII characters, no space at either end (also what the OpenAPI document says)
KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$"
_KEY = re.compile(KEY_PATTERN)
MAX_OPTIMISTIC_ATTEMPTS = 30


@dataclass(frozen=True)
class SubmitLimits:
    """The tunables of a submit (from Settings, built in wiring). The body cap is the API's, on
    every route (videogen.api.http.Resolver)."""

    max_active_jobs: int = 10
    per_user: UserLimits = field(default_factory=UserLimits)
    idempotency_ttl_s: int = 48 * 3600
    time_scale: float = 1.0


@dataclass(frozen=True)
class SubmitAnswer:
    status_code: int
    body: dict[str, Any]
    replayed: bool

    @property
    def location(self) -> str:
        return f"/v1/videos/{self.body['job']['id']}"


def check_key(key: str | None) -> str:
    if key is None or key == "":
        raise IdempotencyKeyMissing("Send an Idempotency-Key header (1-255 printable ASCII characters)")
    if not _KEY.fullmatch(key):
        raise IdempotencyKeyInvalid("Idempotency-Key must be 1-255 printable ASCII characters")
    return key


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = jsonbody.loads(raw or b"null")
    except jsonbody.JsonRejected as exc:
        raise ValidationFailed([{"loc": "body", "msg": f"body is not valid JSON: {exc}"}]) from None
    except ValueError:  # UnicodeDecodeError included
        raise ValidationFailed([{"loc": "body", "msg": "body is not valid JSON"}]) from None
    if not isinstance(body, dict):
        raise ValidationFailed([{"loc": "body", "msg": "body must be a JSON object"}])
    body.pop("user_id", None)  # the user is the token's sub and nothing else (docs/api.md): ignored
    unknown = sorted(set(body) - {"model", "input"})
    if "model" not in body:
        raise ValidationFailed([{"loc": "model", "msg": "field required"}])
    if not isinstance(body["model"], str):  # no job was ever accepted for it: nothing to replay
        raise ValidationFailed([{"loc": "model", "msg": "model must be a string (a model id)"}])
    if unknown:
        raise ValidationFailed([{"loc": shown(k, quote=False), "msg": "unknown field"} for k in unknown])
    return body


def fingerprint(model: Any, payload: Any) -> str:
    canonical = json.dumps({"model": model, "input": payload}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class _Request:
    """A submit body as read before the replay check. ``fingerprints``: the first one is stored
    with a new job; a stored record matching any of them is this body's replay."""

    model: str
    parsed: ModelInput | None  # None: a model this code does not know (any more), or ``error``
    error: ValidationFailed | None
    fingerprints: tuple[str, ...]

    def valid_input(self) -> ModelInput:
        """The validated input of a new request (whose model the caller found on sale)."""
        if self.parsed is None:
            raise self.error or ModelNotFound(f"Unknown model {shown(self.model)}")
        return self.parsed


def _read_request(body: dict[str, Any], registry: Registry) -> _Request:
    """Validate against the model's schema (also for a model taken off sale: a replay of its job
    must still match), and fingerprint the validated body: its normalised dump, so bodies that
    differ only in key order, white space, spelt-out defaults or ``1`` for ``1.0`` are one body.
    The raw canonical body is a second fingerprint, for a body that no longer validates (a model
    this code dropped, a schema made stricter) and for records stored before this rule; such a
    body can only replay, never make a new job."""
    model, raw_input = body["model"], body.get("input")
    raw_fp = fingerprint(model, raw_input)
    try:
        spec = registry.for_job(model)
    except ModelNotFound:
        return _Request(model, None, None, (raw_fp,))
    try:
        parsed = spec.parse_input(raw_input)
    except ValidationFailed as invalid:
        return _Request(model, None, invalid, (raw_fp,))
    return _Request(model, parsed, None, (fingerprint(spec.id, normalised(parsed)), raw_fp))


def normalised(parsed: ModelInput) -> dict[str, Any]:
    """A validated input as stored with its job and sent to fal."""
    return parsed.model_dump(mode="json", exclude_none=True)


def _replay(record: IdempotencyRecord, fingerprints: tuple[str, ...]) -> SubmitAnswer:
    if record.fingerprint not in fingerprints:
        raise IdempotencyKeyReused("This Idempotency-Key was used with a different request body")
    count("SubmitReplayed")
    return SubmitAnswer(record.status_code, record.body, replayed=True)


def submit_video(
    *,
    user_id: str,
    idempotency_key: str | None,
    raw_body: bytes,
    store: JobStore,
    registry: Registry,
    workflow: Workflow,
    limits: SubmitLimits,
    pause: Callable[[int], None] = backoff,
    clock: Callable[[], float] = time.time,
) -> SubmitAnswer:
    """Charge and record a new job (or replay the key's first answer), then start its execution.
    ``pause(attempt)`` runs between optimistic retries of a balance that moved meanwhile.

    The user's limits (videogen.domain.limits) are decided on the same snapshot as the balance
    and written in the same transaction, so they cost no extra call: a replay is never counted
    nor refused by them, and neither is a request refused before the write (400/402/404/422,
    too_many_active_jobs) — the limit counts the requests that would charge."""
    key = check_key(idempotency_key)
    request = _read_request(parse_body(raw_body), registry)
    spec: ModelSpec | None = None
    # upload:<id> inputs: read in the same one read as the balance and the key (no extra call)
    refs = upload_refs(request.parsed) if request.parsed is not None else {}
    upload_ids = sorted({upload_id for upload_id, _ in refs.values()})

    for attempt in range(MAX_OPTIMISTIC_ATTEMPTS):
        seen, record, uploads = store.read_for_submit(user_id, key, upload_ids)
        if record is not None:  # a replay answers as the first time, even if the model left sale since
            return _replay(record, request.fingerprints)
        if spec is None:  # a new request: a model on sale and an input valid for it, before any charge
            spec = registry.get(request.model)
            parsed = request.valid_input()
            cost = spec.credits(parsed)
            payload = normalised(parsed)
            check_within_cap(limits.per_user, cost)  # over the cap on its own: 422, never admitted
        # the caller's own, ready, of the field's kind (else nothing charged): their sealed keys
        input_objects = check_uploads(refs, uploads)
        if seen.balance < cost:
            raise InsufficientCredits(f"This video costs {cost} credits; the balance is {seen.balance}")
        if seen.active_jobs >= limits.max_active_jobs:
            raise TooManyActiveJobs(f"At most {limits.max_active_jobs} jobs may be unfinished at once")
        usage = admit(limits.per_user, seen, int(clock() * 1000), charge=cost)  # RateLimited: not counted
        now = rfc3339()
        job = Job(
            id=new_id("vid"),
            user_id=user_id,
            status=JobStatus.QUEUED,
            model=spec.id,
            input=payload,
            input_objects=input_objects,
            credits_charged=cost,
            created_at=now,
            updated_at=now,
            progress=Progress(message="queued"),
            deadline_at=deadline_for(spec, limits.time_scale),
        )
        answer = contract.SubmitAccepted(
            job=job_view(job), credits=contract.ChargedCredits(charged=cost, balance=seen.balance - cost)
        ).model_dump(mode="json")
        try:
            store.create_job(
                job,
                idempotency_key=key,
                fingerprint=request.fingerprints[0],
                answer=answer,
                seen=seen,
                usage=usage,
                max_active=limits.max_active_jobs,
                idem_ttl_s=limits.idempotency_ttl_s,
            )
        except IdempotencyKeyTaken as taken:
            return _replay(taken.record, request.fingerprints)
        except BalanceChanged:
            pause(attempt)
            continue
        break
    else:
        raise ConcurrentUpdate("Too many concurrent changes to this account; retry shortly")

    logger.set_correlation_id(job.id)
    count("JobsSubmitted")
    count("CreditsCharged", cost)
    crash.point(crash.AFTER_SUBMIT_TRANSACTION)
    try:
        workflow.start(job.id, execution_input(job, spec, limits.time_scale))
    except Exception:  # noqa: BLE001 - the job is safe in DynamoDB; the reconciler starts it
        logger.exception("StartExecution failed; the reconciler will start the job")
        count("ExecutionStartFailed")
    return SubmitAnswer(202, answer, replayed=False)

"""The chaos run's audit: pure functions of the :class:`~devstack.chaos.evidence.Evidence`.

:func:`violations` returns every kind (:data:`KINDS`: the table/bucket/event invariants of
:mod:`devstack.invariants` first, then the run's own) with the problems found under it; any
problem fails the run. The unit tests (tests/unit/test_chaos_audit.py) build evidence with each
violation in it and assert it is reported.

What the clients saw, judged precisely (docs in devstack/chaos/__init__.py):

* a submission's *final answer* is the last answer of its retry loop (5xx / 409 / no answer are
  retried with the same key, up to ``MAX_ATTEMPTS``); intermediate errors are fine;
* every final answer of one key (its copies sent at once, its later replay) must be the same
  status, and every 202 of a key must name one job with byte-identical bodies;
* a final answer that is still an error (the client gave up) is a violation, whether or not a job
  was charged; a charged job whose key never got a 202 is one too.

What the apps got (:func:`app_violations`):

* every completed job has its poster (a JPEG in the bucket) and the metadata read from its file
  (``video.media``);
* per job and device at most one notification; every device registered before the job was
  submitted and never deleted got exactly one for each job that ended completed or failed (the
  endings a user is told about), with the job's status, and none for another ending; nothing
  reached a device after its DELETE was answered or its token went invalid, and a device whose token
  went invalid was removed by the next job that notified it; every notification names a device of
  the run;
* a photo upload became ``ready``, bytes of another type ``rejected``; a submit naming a rejected
  upload was answered 422 ``upload_rejected`` every time and made no job (nothing charged); a job
  made from an upload shows ``upload:<id>`` as its input while fal got a presigned GET of the
  sealed copy under ``inputs/`` (the bytes the validator checked).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from devstack.chaos.driver import RETRYABLE
from devstack.chaos.evidence import Evidence
from devstack.chaos.plan import REJECTED, SIM_FAULT_KINDS, UPLOAD
from devstack.invariants import KINDS as TABLE_KINDS
from devstack.invariants import TERMINAL, Audit, audit_items, job_input
from videogen.crash import ALL as CRASH_POINTS
from videogen.domain import devices as domain_devices
from videogen.domain.uploads import INPUT_PREFIX

CANCELLED_TEXT = "Request was cancelled"  # fal's (and the simulator's) error for a request a cancel removed
PAYLOAD_ERROR_TEXT = "not JSON serializable"  # the simulator's payload_error: fal said OK but sent no video
COPY_FAILURE_CODES = {"media_rejected"}  # a finished video we refused to store, for a recorded reason
NOTIFIED = {status.value for status in domain_devices.NOTIFIED}  # the endings a user is told about
JPEG_MAGIC = b"\xff\xd8\xff"
MEDIA_FIELDS = ("duration_s", "width", "height", "fps", "has_audio", "poster_key")

RUN_KINDS = (
    "stuck (not terminal at the end)",
    "table still changing at the audit",
    "failed although fal had finished it OK",
    "completed with other bytes than fal served",
    "job price differs from the plan's",
    "idempotency keys answered with >1 job id",
    "idempotency keys with differing 202 bodies",
    "idempotency keys answered 'new' twice",
    "keys whose final answers differ",
    "submissions that ended on an error (client gave up)",
    "charged jobs whose client never got a 202",
    "jobs without exactly one idempotency record",
    "idempotency records without their job",
    "jobs answered 202 but not in the table",
    "key reused with another body, not 422",
    "402 to a user who could afford every planned job",
    "terminal state changed",
    "cancel answered 200, job not canceled",
    "our cancel ended as a provider failure",
)
APP_KINDS = (
    "completed without a poster JPEG in S3",
    "completed without video metadata",
    "notifications for one job and device more than once",
    "devices registered throughout a notified job without exactly one",
    "notifications after the device's DELETE was answered",
    "notifications after the device's token went invalid",
    "devices with an invalid token kept after a later notified job",
    "notifications not matching their job (owner, ending)",
    "notifications to no device of the run",
    "uploads not checked as their bytes are (ready / rejected)",
    "rejected uploads not refused 422 upload_rejected, or charged",
    "upload jobs whose input fal did not get from our bucket",
    "app calls given up (device registration, upload)",
)
KINDS = TABLE_KINDS + RUN_KINDS + APP_KINDS


def violations(ev: Evidence) -> tuple[Audit, dict[str, list[str]]]:
    """The table audit and every kind of violation with its problems (empty lists: held)."""
    table = audit_items(ev.items, ev.bucket, ev.events)
    found: dict[str, list[str]] = defaultdict(list)
    for kind, problems in table.by_kind.items():
        found[kind].extend(problems)
    jobs = ev.jobs
    obs = ev.obs

    stuck = {j for j, item in jobs.items() if item["status"] not in TERMINAL} | (ev.stuck_seen - set(jobs))
    found["stuck (not terminal at the end)"] += [
        f"stuck: {j} ({jobs.get(j, {}).get('status', '?')})" for j in sorted(stuck)
    ]
    if not ev.quiet:
        found["table still changing at the audit"].append("the table did not settle within two reconciler periods")
    found["failed although fal had finished it OK"] += lost_results(jobs, ev.sim_requests)
    found["completed with other bytes than fal served"] += wrong_videos(jobs, ev.reference)
    for job_id, plan in sorted(obs.job_plan.items()):
        charged = jobs.get(job_id, {}).get("credits_charged")
        if charged is not None and int(charged) != plan.cost:
            found["job price differs from the plan's"].append(f"{job_id}: charged {charged}, the plan says {plan.cost}")

    for key, answers in sorted(obs.by_key.items()):
        if len({a.job_id for a in answers}) > 1:
            found["idempotency keys answered with >1 job id"].append(key)
        if len({a.body for a in answers}) > 1:
            found["idempotency keys with differing 202 bodies"].append(key)
        if sum(1 for a in answers if not a.replayed) > 1:
            found["idempotency keys answered 'new' twice"].append(key)
    for key, finals in sorted(obs.final_by_key.items()):
        if len(set(finals)) > 1:
            found["keys whose final answers differ"].append(f"{key}: {sorted(finals)}")
        gave_up = [c for c in finals if not c or c in RETRYABLE]
        if gave_up:
            found["submissions that ended on an error (client gave up)"].append(f"{key}: final {gave_up}")
    client_jobs = set(obs.job_owner)
    run_users = {u.user_id for u in ev.users}
    for job_id in sorted(set(jobs) - client_jobs):
        if jobs[job_id].get("user_id") in run_users:
            found["charged jobs whose client never got a 202"].append(job_id)
    found["jobs answered 202 but not in the table"] += sorted(client_jobs - set(jobs))

    idem: dict[str, int] = defaultdict(int)
    for record in ev.idempotency_records:
        idem[str(record.get("job_id"))] += 1
    found["jobs without exactly one idempotency record"] += sorted(j for j in jobs if idem[j] != 1)
    found["idempotency records without their job"] += sorted(j for j in idem if j not in jobs)
    found["key reused with another body, not 422"] += [f"{k} x{v}" for k, v in obs.reuse_codes.items() if k != "422"]
    found["402 to a user who could afford every planned job"] += refused_but_affordable(ev)

    found["terminal state changed"] += list(obs.terminal_changed) + [
        f"{j}: {s} -> {jobs[j]['status']}"
        for j, s in obs.first_terminal.items()
        if j in jobs and jobs[j]["status"] != s
    ]
    found["cancel answered 200, job not canceled"] += sorted(
        j for j in obs.canceled_ok if jobs.get(j, {}).get("status") != "canceled"
    )
    # Only our own cancels (the user's, the deadline's, an orphan's) make fal answer "cancelled":
    # such a job ends as we asked (canceled / expired), never as the provider's failure.
    found["our cancel ended as a provider failure"] += sorted(
        j for j, item in jobs.items() if CANCELLED_TEXT in str(_error(item).get("message", ""))
    )
    for kind, problems in app_violations(ev).items():
        found[kind] += problems
    return table, {kind: found.get(kind, []) for kind in KINDS}


def app_violations(ev: Evidence) -> dict[str, list[str]]:
    """Posters and metadata, notifications, uploads (see the module's doc)."""
    found: dict[str, list[str]] = defaultdict(list)
    jobs = ev.jobs
    for job_id, job in sorted(jobs.items()):
        if job["status"] != "completed":
            continue
        media = (job.get("video") or {}).get("media") or {}
        if any(media.get(f) is None for f in MEDIA_FIELDS):
            found["completed without video metadata"].append(f"{job_id}: video.media {media or 'missing'}")
        if not ev.posters.get(str(media.get("poster_key")), b"").startswith(JPEG_MAGIC):
            found["completed without a poster JPEG in S3"].append(f"{job_id}: poster {media.get('poster_key')}")
    _notification_violations(ev, found)
    _upload_violations(ev, found)
    found["app calls given up (device registration, upload)"] += list(ev.obs.apps.failures)
    return found


def _notification_violations(ev: Evidence, found: dict[str, list[str]]) -> None:
    jobs = ev.jobs
    devices = ev.obs.apps.devices
    per_pair: dict[tuple[str, str], int] = defaultdict(int)
    for n in ev.notifications:
        job_id, device_id, user_id = str(n.get("job_id")), n.get("device_id"), n.get("user_id")
        seen = devices.get((str(user_id), str(device_id)))
        if seen is None:
            found["notifications to no device of the run"].append(f"{job_id}: to {user_id}/{device_id}")
            continue
        per_pair[(job_id, str(device_id))] += 1
        job = jobs.get(job_id, {})
        if job.get("status") not in NOTIFIED or n.get("status") != job.get("status") or job.get("user_id") != user_id:
            found["notifications not matching their job (owner, ending)"].append(
                f"{job_id} ({job.get('status', 'no job')}, {job.get('user_id')}): {n.get('status')} to {user_id}"
            )
        sent_at = float(n.get("sent_at") or 0)
        if seen.deleted_at is not None and sent_at > seen.deleted_at:
            found["notifications after the device's DELETE was answered"].append(
                f"{job_id} to {device_id}: {sent_at - seen.deleted_at:.2f} s after"
            )
        if seen.invalid_at is not None and sent_at > seen.invalid_at:
            found["notifications after the device's token went invalid"].append(
                f"{job_id} to {device_id}: {sent_at - seen.invalid_at:.2f} s after"
            )
    found["notifications for one job and device more than once"] += [
        f"{job_id} to {device_id}: {count}" for (job_id, device_id), count in sorted(per_pair.items()) if count > 1
    ]
    for job_id, plan in sorted(ev.obs.job_plan.items()):
        job = jobs.get(job_id, {})
        submitted = ev.obs.submitted_at.get(plan.key)
        if job.get("status") not in NOTIFIED or submitted is None:
            continue
        for device in plan.user.devices:
            seen = devices.get((plan.user.user_id, device.device_id))
            if seen is not None and seen.registered_throughout(submitted):
                count = per_pair.get((job_id, device.device_id), 0)
                if count != 1:
                    found["devices registered throughout a notified job without exactly one"].append(
                        f"{job_id} ({job['status']}) to {device.device_id}: {count}"
                    )

    present = devices_in_table(ev)
    for seen in sorted(devices.values(), key=lambda d: (d.user_id, d.device_id)):
        if seen.invalid_at is None or (seen.user_id, seen.device_id) not in present:
            continue
        later = sorted(
            job_id
            for job_id, job in jobs.items()
            if job.get("user_id") == seen.user_id
            and job.get("status") in NOTIFIED
            and (_epoch(job.get("completed_at")) or 0) > seen.invalid_at
        )
        if later:  # the notifier tried it after the token went invalid: it must have removed it
            found["devices with an invalid token kept after a later notified job"].append(
                f"{seen.user_id}/{seen.device_id}: still registered after {later[0]}"
            )


def devices_in_table(ev: Evidence) -> set[tuple[str, str]]:
    """(user id, device id) of every device item the table holds at the audit."""
    return {
        (str(i["pk"]).removeprefix("USER#"), str(i["sk"]).removeprefix("DEVICE#"))
        for i in ev.items
        if str(i["pk"]).startswith("USER#") and str(i["sk"]).startswith("DEVICE#")
    }


def _upload_violations(ev: Evidence, found: dict[str, list[str]]) -> None:
    apps = ev.obs.apps
    for upload in sorted(apps.uploads.values(), key=lambda u: u.upload_id):
        expected = "rejected" if upload.source == REJECTED else "ready"
        if upload.status != expected:
            found["uploads not checked as their bytes are (ready / rejected)"].append(
                f"{upload.upload_id} ({upload.source}): {upload.status} {upload.error_code or ''}".rstrip()
            )
    inputs = {job_id: json.dumps(job_input(job)) for job_id, job in ev.jobs.items()}
    for plan in ev.plans:
        upload_id = apps.upload_by_key.get(plan.key)
        if upload_id is None:
            continue
        if plan.source == REJECTED:
            answers = ev.obs.refused.get(plan.key, [])
            wrong = [a for a in answers if a != (422, "upload_rejected")] + [
                (202, "") for _ in ev.obs.by_key.get(plan.key, [])
            ]
            charged = sorted(j for j, text in inputs.items() if f"upload:{upload_id}" in text)
            if wrong or not answers or charged:
                found["rejected uploads not refused 422 upload_rejected, or charged"].append(
                    f"{plan.key} ({upload_id}): answers {answers or wrong}, jobs {charged}"
                )
        elif plan.source == UPLOAD:
            for job_id, job in ev.jobs.items():
                if ev.obs.job_plan.get(job_id) is not plan:
                    continue
                shown = job_input(job).get("image_url")
                request_id = (job.get("fal") or {}).get("request_id")
                sent = ((ev.sim_requests.get(str(request_id)) or {}).get("input") or {}).get("image_url")
                fetched = (  # a presigned GET of the sealed copy the validator checked, never the raw upload
                    isinstance(sent, str)
                    and sent.startswith("http")
                    and f"/{INPUT_PREFIX}" in sent
                    and f"/{upload_id}/" in sent
                    and "Signature" in sent
                )
                if shown != f"upload:{upload_id}" or (request_id and not fetched):
                    found["upload jobs whose input fal did not get from our bucket"].append(
                        f"{job_id}: shows {shown!r}, fal got {str(sent).split('?')[0]!r}"
                    )


def lost_results(jobs: dict[str, dict[str, Any]], sim_requests: dict[str, dict[str, Any]]) -> list[str]:
    """Failed (not canceled) jobs whose fal request had finished OK before the job ended: a
    finished video thrown away (the design's "a job fal finished is never lost"), unless storing it
    failed for a recorded reason (:data:`COPY_FAILURE_CODES`, or fal's OK without a payload).

    When fal finished: the simulator's ``completed_at`` if it reports it, else its first webhook
    attempt (the latest moment it can have finished); with neither (its webhook dropped), a request
    finished OK and never cancelled counts as finished before (the deadline cancels at fal)."""
    lost = []
    for job_id, job in sorted(jobs.items()):
        request_id = (job.get("fal") or {}).get("request_id")
        req = sim_requests.get(str(request_id)) if request_id else None
        if job["status"] != "failed" or req is None:
            continue
        if req.get("status") != "COMPLETED" or req.get("failed") or req.get("cancel"):
            continue
        error = _error(job)
        if error.get("code") in COPY_FAILURE_CODES or PAYLOAD_ERROR_TEXT in str(error.get("message", "")):
            continue
        finished = req.get("completed_at")
        if finished is None:
            finished = min((float(d["at"]) for d in req.get("deliveries", []) if "at" in d), default=None)
        ended = _epoch(job.get("completed_at"))
        if finished is not None and ended is not None and float(finished) >= ended:
            continue
        lost.append(
            f"{job_id} ({job.get('model')}): failed {error.get('code')} at {job.get('completed_at')}, "
            f"fal {request_id} finished OK"
        )
    return lost


def wrong_videos(jobs: dict[str, dict[str, Any]], reference: tuple[str, int] | None) -> list[str]:
    """Completed jobs whose recorded video is not the bytes fal served (e.g. a truncated download
    that was stored anyway: its object and checksum would agree with each other, so the table audit
    alone would not see it)."""
    if reference is None:
        return []
    sha, size = reference
    out = []
    for job_id, job in sorted(jobs.items()):
        video = job.get("video") or {}
        if job["status"] == "completed" and (video.get("sha256") != sha or int(video.get("size_bytes", -1)) != size):
            out.append(job_id)
    return out


def refused_but_affordable(ev: Evidence) -> list[str]:
    """402s answered to a user whose credits cover every job the plan gives them."""
    planned: dict[str, int] = defaultdict(int)
    for p in ev.plans:
        planned[p.user.user_id] += p.charges
    out = []
    for p in ev.plans:
        if 402 in ev.obs.final_by_key.get(p.key, []) and planned[p.user.user_id] <= p.user.credits:
            out.append(
                f"{p.key}: 402 for {p.user.user_id} ({p.user.credits} credits, {planned[p.user.user_id]} planned)"
            )
    return out


def _error(job: dict[str, Any]) -> dict[str, Any]:
    return dict(job.get("error") or {})


def _epoch(stamp: Any) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def shortfalls(
    ev: Evidence,
    *,
    sim_config: dict[str, Any],
    sim_stats: dict[str, Any],
    crashes: dict[str, int],
    crash_rate: float,
    conflicts: int | None,
    events_duplicated: int | None = None,
) -> list[str]:
    """What the run did too little of, at any size: submissions never sent, fewer jobs than the
    plans the users could afford, a way of ending no job took, a fault kind turned on that never
    fired (``conflicts`` None: not required)."""
    out = []
    if ev.obs.not_sent:
        out.append(f"{ev.obs.not_sent} submissions not sent (the time was up)")
    planned: dict[str, int] = defaultdict(int)
    for p in ev.plans:
        planned[p.user.user_id] += p.charges
    affordable = sum(1 for p in ev.plans if p.charges and planned[p.user.user_id] <= p.user.credits)
    created = len(ev.obs.job_owner)
    if created < affordable or not created:
        out.append(f"{created} jobs created, fewer than the {affordable} submissions their users could afford")
    statuses = {str(j["status"]) for j in ev.jobs.values()}
    out += [f"no job ended {s}" for s in ("completed", "failed", "canceled") if s not in statuses]
    out += [
        f"fault never fired: {label}"
        for label, stat, key in SIM_FAULT_KINDS
        if _turned_on(sim_config.get(key)) and not sim_stats.get(stat)
    ]
    if crash_rate > 0:
        out += [f"fault never fired: crash point {name}" for name in CRASH_POINTS if not crashes.get(name)]
    if conflicts is not None and not conflicts:
        out.append("fault never fired: DynamoDB TransactionConflict")
    if events_duplicated is not None and not events_duplicated:
        out.append("fault never fired: EventBridge deliveries duplicated")
    out += _app_shortfalls(ev)
    return out


def _app_shortfalls(ev: Evidence) -> list[str]:
    """The apps' side did each thing at least once: a device deleted mid-run, a notification, a job
    completed from an upload, a rejected upload refused."""
    apps = ev.obs.apps
    out = []
    if any(u.devices for u in ev.users):
        if not any(d.deleted_at is not None for d in apps.devices.values()):
            out.append("no device was deleted mid-run")
        if not ev.notifications:
            out.append("no notification was sent")
    planned_invalid = any(d.invalid_after_s is not None for u in ev.users for d in u.devices)
    if planned_invalid and not any(d.invalid_at is not None for d in apps.devices.values()):
        out.append("no device's token went invalid mid-run")
    by_key = {p.key: p for p in ev.plans}
    from_uploads = [j for j, p in ev.obs.job_plan.items() if p.source == UPLOAD and j in ev.jobs]
    if any(p.source == UPLOAD for p in ev.plans) and not any(ev.jobs[j]["status"] == "completed" for j in from_uploads):
        out.append("no job made from an upload completed")
    if any(p.source == REJECTED for p in ev.plans) and not any(
        by_key[key].source == REJECTED for key in ev.obs.refused if key in by_key
    ):
        out.append("no submit named a rejected upload")
    return out


def _turned_on(value: Any) -> bool:
    return bool(max(value) if isinstance(value, list) else value)

"""Each check of the audit can fail: synthetic table / bucket / event / simulator / client data with
one violation planted, and the audit reporting it under its kind (devstack/invariants.py and
devstack/chaos/checks.py). No stack: the audit functions are pure."""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from devstack.chaos import checks
from devstack.chaos.apps import DeviceSeen, UploadSeen
from devstack.chaos.driver import Answer, Observations
from devstack.chaos.evidence import Evidence
from devstack.chaos.plan import REJECTED, SIM_FAULT_KINDS, UPLOAD, DevicePlan, Plan, User
from devstack.invariants import KINDS as TABLE_KINDS
from devstack.invariants import Bucket, audit_items
from videogen.crash import ALL as CRASH_POINTS
from videogen.domain.models import new_id

VIDEO = b"\x00\x00\x00\x18ftypmp42 the one video fal serves"
SHA = hashlib.sha256(VIDEO).hexdigest()
PRICE = 5  # minimax-video-01 with a prompt only (the registry's price)
USER = User(
    "chaos-u0",
    300,
    poor=False,
    token="t",
    devices=[
        DevicePlan("d1", "fcm", "tok-1", None),
        DevicePlan("d2", "apns", "tok-2", 2.5),
        DevicePlan("d3", "apns_sandbox", "tok-3", None, invalid_after_s=1.5),
    ],
)
POSTER = b"\xff\xd8\xff\xe0 a poster JPEG"
MEDIA = {
    "duration_s": 4.0,
    "width": 640,
    "height": 360,
    "fps": 24.0,
    "has_audio": False,
    "poster_key": "videos/j1/v.mp4.poster.jpg",
}
UPLOADED, REFUSED = new_id("upl"), new_id("upl")  # a photo upload (ready) and bytes of another type (rejected)
PRESIGNED = f"http://127.0.0.1:5000/bucket/inputs/chaos-u0/{UPLOADED}/etag1?X-Amz-Expires=600&X-Amz-Signature=abc"
I2V, I2V_PRICE = "kling-2.1-standard-i2v", 4
T_END = "2026-01-01T00:01:00.000000Z"  # when the failed / canceled jobs ended
T_END_EPOCH = 1767225660.0


def _job(job_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "pk": f"JOB#{job_id}",
        "sk": "JOB",
        "id": job_id,
        "user_id": USER.user_id,
        "status": status,
        "model": "minimax-video-01",
        "input_json": json.dumps({"prompt": f"chaos {job_id}"}),
        "credits_charged": PRICE,
        "fal": {"request_id": f"req-{job_id}"},
        "completed_at": T_END,
        **extra,
    }


def _ledger(n: int, kind: str, amount: int, job_id: str | None) -> dict[str, Any]:
    return {"pk": f"USER#{USER.user_id}", "sk": f"LEDGER#{n:03d}", "type": kind, "amount": amount, "job_id": job_id}


BUYER = "buyer"  # bought two packs, one since refunded (its own user: a clawback may take a balance below zero)


def _buyer_ledger(n: int, kind: str, amount: int, purchase_id: str, seq: int) -> dict[str, Any]:
    return {"pk": f"USER#{BUYER}", "sk": f"LEDGER#{n:03d}", "type": kind, "amount": amount, "purchase_id": purchase_id,
            "purchase_seq": seq}  # fmt: skip


def _purchase(pid: str, status: str) -> dict[str, Any]:
    return {"pk": f"PURCHASE#app_store#{pid}", "sk": "PURCHASE", "id": pid, "user_id": BUYER, "credits": 50,
            "status": status}  # fmt: skip


def _idem(key: str, job_id: str) -> dict[str, Any]:
    return {"pk": f"USER#{USER.user_id}", "sk": f"IDEM#{key}", "job_id": job_id}


def baseline() -> Evidence:
    """A run where everything held: a completed, a failed (fal failed it) and a canceled job, and a
    completed one made from an upload; the user's device notified of the three completed / failed
    ones; a submit naming a rejected upload refused."""
    video = {"s3_key": "videos/j1/v.mp4", "sha256": SHA, "size_bytes": len(VIDEO), "media": dict(MEDIA)}
    video4 = {**video, "s3_key": "videos/j4/v.mp4", "media": {**MEDIA, "poster_key": "videos/j4/v.mp4.poster.jpg"}}
    items = [
        {"pk": f"USER#{USER.user_id}", "sk": "BALANCE", "balance": 300 - PRICE - I2V_PRICE, "active_jobs": 0},
        _ledger(0, "grant", 300, None),
        _ledger(1, "charge", PRICE, "j1"),
        _ledger(2, "charge", PRICE, "j2"),
        _ledger(3, "charge", PRICE, "j3"),
        _ledger(4, "refund", PRICE, "j2"),
        _ledger(5, "refund", PRICE, "j3"),
        _ledger(6, "charge", I2V_PRICE, "j4"),
        {"pk": f"USER#{BUYER}", "sk": "BALANCE", "balance": 50, "active_jobs": 0},
        _buyer_ledger(0, "purchase", 50, "p1", 1),
        _buyer_ledger(1, "purchase", 50, "p2", 1),
        _buyer_ledger(2, "clawback", 50, "p2", 2),
        _purchase("p1", "granted"),
        _purchase("p2", "revoked"),
        _job("j1", "completed", video=video),
        _job("j2", "failed", error={"code": "provider_failed", "message": "the generation failed"}),
        _job("j3", "canceled", error={"code": "canceled", "message": "canceled by the user"}),
        _job(
            "j4",
            "completed",
            video=video4,
            model=I2V,
            credits_charged=I2V_PRICE,
            input_json=json.dumps({"prompt": "chaos j4", "image_url": f"upload:{UPLOADED}"}),
        ),
        _idem("k1", "j1"),
        _idem("k2", "j2"),
        _idem("k3", "j3"),
        _idem("k4", "j4"),
    ]
    sim = {
        "req-j1": {"status": "COMPLETED", "failed": False, "cancel": None, "deliveries": [{"at": T_END_EPOCH - 30}]},
        "req-j2": {"status": "COMPLETED", "failed": True, "cancel": None, "deliveries": [{"at": T_END_EPOCH - 1}]},
        "req-j3": {"status": "COMPLETED", "failed": False, "cancel": "removed", "deliveries": []},
        "req-j4": {
            "status": "COMPLETED",
            "failed": False,
            "cancel": None,
            "deliveries": [{"at": T_END_EPOCH - 30}],
            "input": {"prompt": "chaos j4", "image_url": PRESIGNED},
        },
    }
    plans = [
        Plan(n, USER, "minimax-video-01", PRICE, {"prompt": f"chaos j{n + 1}"}, f"k{n + 1}", 1, None, False, None)
        for n in range(3)
    ]
    image = {"prompt": "chaos j4", "image_url": "https://example.com/4.png"}
    plans.append(Plan(3, USER, I2V, I2V_PRICE, image, "k4", 1, None, False, None, UPLOAD))
    plans.append(Plan(4, USER, I2V, I2V_PRICE, dict(image), "k5", 1, None, False, None, REJECTED))
    obs = Observations()
    for n in (1, 2, 3, 4):
        body = json.dumps({"job": {"id": f"j{n}"}}).encode()
        obs.by_key[f"k{n}"].append(Answer(202, False, body, f"j{n}"))
        obs.final_by_key[f"k{n}"].append(202)
        obs.job_owner[f"j{n}"] = USER
        obs.job_plan[f"j{n}"] = plans[n - 1]
        obs.first_terminal[f"j{n}"] = {1: "completed", 2: "failed", 3: "canceled", 4: "completed"}[n]
        obs.submitted_at[f"k{n}"] = 100.0 + n
    obs.final_by_key["k5"].append(422)
    obs.refused["k5"] = [(422, "upload_rejected")]
    obs.canceled_ok.add("j3")
    obs.reuse_codes["422"] += 1
    obs.apps.devices[(USER.user_id, "d1")] = DeviceSeen(USER.user_id, "d1", registered_at=50.0)
    obs.apps.devices[(USER.user_id, "d2")] = DeviceSeen(  # deleted mid-run, before any job ended
        USER.user_id, "d2", registered_at=50.0, delete_sent_at=102.5, deleted_at=102.6
    )
    obs.apps.devices[(USER.user_id, "d3")] = DeviceSeen(  # its token went invalid: removed by j1's notifier
        USER.user_id, "d3", registered_at=50.0, invalid_sent_at=101.4, invalid_at=101.5
    )
    obs.apps.uploads[UPLOADED] = UploadSeen(UPLOADED, USER.user_id, UPLOAD, "ready")
    obs.apps.uploads[REFUSED] = UploadSeen(REFUSED, USER.user_id, REJECTED, "rejected", "type_mismatch")
    obs.apps.upload_by_key.update(k4=UPLOADED, k5=REFUSED)
    notes = [_note(job_id, status, 200.0 + i) for i, (job_id, status) in enumerate(NOTIFIED_JOBS)]
    return Evidence(
        items=items,
        bucket=Bucket.of(
            {
                "videos/j1/v.mp4": VIDEO,
                "videos/j1/v.mp4.poster.jpg": POSTER,
                "videos/j4/v.mp4": VIDEO,
                "videos/j4/v.mp4.poster.jpg": POSTER,
            }
        ),
        events=Counter({"j1": 1, "j2": 1, "j3": 2, "j4": 1}),
        sim_requests=sim,
        reference=(SHA, len(VIDEO)),
        obs=obs,
        plans=plans,
        users=[USER],
        notifications=notes,
        posters={"videos/j1/v.mp4.poster.jpg": POSTER[:16], "videos/j4/v.mp4.poster.jpg": POSTER[:16]},
    )


NOTIFIED_JOBS = (("j1", "completed"), ("j2", "failed"), ("j4", "completed"))


def _note(job_id: str, status: str, sent_at: float, device_id: str = "d1") -> dict[str, Any]:
    poster = f"https://s3.test/videos/{job_id}/v.jpg" if status == "completed" else None
    return {
        "user_id": USER.user_id,
        "device_id": device_id,
        "platform": "fcm",
        "job_id": job_id,
        "status": status,
        "poster_url": poster,
        "payload": {},
        "sent_at": sent_at,
    }


def _item(ev: Evidence, sk: str, pk: str | None = None) -> dict[str, Any]:
    return next(i for i in ev.items if i["sk"] == sk and (pk is None or i["pk"] == pk))


def _job_item(ev: Evidence, job_id: str) -> dict[str, Any]:
    return _item(ev, "JOB", f"JOB#{job_id}")


def _set(target: Callable[[Evidence], dict[str, Any]], **values: Any) -> Callable[[Evidence], None]:
    return lambda ev: target(ev).update(values)


def _refund_plus_one(ev: Evidence) -> None:  # the review's mutant: balance and ledger agree, the amount is wrong
    _item(ev, "LEDGER#004")["amount"] = PRICE + 1
    _item(ev, "BALANCE")["balance"] += 1


def _charge_of_other_amount(ev: Evidence) -> None:
    _item(ev, "LEDGER#001")["amount"] = PRICE - 1
    _item(ev, "BALANCE")["balance"] += 1


def _mispriced(ev: Evidence) -> None:  # the job, its charge and the plan agree; the registry does not
    _job_item(ev, "j1")["credits_charged"] = PRICE + 3
    _item(ev, "LEDGER#001")["amount"] = PRICE + 3
    _item(ev, "BALANCE")["balance"] -= 3
    ev.obs.job_plan["j1"].cost = PRICE + 3


def _refund_for_missing_job(ev: Evidence) -> None:
    ev.items.append(_ledger(9, "refund", PRICE, "j-gone"))
    _item(ev, "BALANCE")["balance"] += PRICE


def _unknown_ledger_type(ev: Evidence) -> None:
    ev.items.append(_ledger(9, "bonus", 0, None))


def _finished_video_thrown_away(ev: Evidence) -> None:  # the review's mutant: an OK webhook turned into a failure
    _job_item(ev, "j2")["error"] = {"code": "provider_failed", "message": "the generation failed"}
    ev.sim_requests["req-j2"]["failed"] = False


def _replay_500(ev: Evidence) -> None:  # the review's mutant: the later replay of a 202 key answered 500 until given up
    ev.obs.final_by_key["k1"].append(500)


def _gave_up_before_any_job(ev: Evidence) -> None:
    ev.obs.final_by_key["k9"] = [503]


def _charged_without_202(ev: Evidence) -> None:
    ev.obs.job_owner.pop("j3")
    ev.obs.job_plan.pop("j3")
    ev.obs.canceled_ok.discard("j3")


def _no_event(ev: Evidence) -> None:  # the review's mutant: no event ever published
    ev.events = Counter()


def _event_owed(ev: Evidence) -> None:
    _job_item(ev, "j2")["event_pending"] = True


def _orphan_object(ev: Evidence) -> None:
    ev.bucket = Bucket.of({"videos/j1/v.mp4": VIDEO, "videos/j2/other.mp4": VIDEO})


def _staging_object(ev: Evidence) -> None:
    ev.bucket = Bucket.of({"videos/j1/v.mp4": VIDEO, "_staging/0123": VIDEO})


def _unfinished_upload(ev: Evidence) -> None:
    ev.bucket = Bucket.of({"videos/j1/v.mp4": VIDEO}, uploads=["_staging/4567"])


def _missing_object(ev: Evidence) -> None:
    ev.bucket = Bucket.of({})


def _other_bytes_in_object(ev: Evidence) -> None:
    ev.bucket = Bucket.of({"videos/j1/v.mp4": VIDEO[:-1]})


def _truncated_stored_as_is(ev: Evidence) -> None:
    _job_item(ev, "j1")["video"]["size_bytes"] = len(VIDEO) - 1


def _second_job_for_a_key(ev: Evidence) -> None:
    ev.obs.by_key["k1"].append(Answer(202, True, ev.obs.by_key["k1"][0].body, "j2"))


def _different_replay_body(ev: Evidence) -> None:
    ev.obs.by_key["k1"].append(Answer(202, True, b"{}", "j1"))


def _new_twice(ev: Evidence) -> None:
    ev.obs.by_key["k1"].append(copy.copy(ev.obs.by_key["k1"][0]))


def _two_idempotency_records(ev: Evidence) -> None:
    ev.items.append(_idem("k1-again", "j1"))


def _dangling_idempotency_record(ev: Evidence) -> None:
    ev.items.append(_idem("k9", "j-gone"))


def _answered_but_missing(ev: Evidence) -> None:
    ev.obs.job_owner["j-gone"] = USER


def _reuse_accepted(ev: Evidence) -> None:
    ev.obs.reuse_codes["202"] += 1


def _every_submit_402(ev: Evidence) -> None:  # the review's mutant, as seen by a user who could afford it
    ev.obs.final_by_key["k1"] = [402]


def _terminal_changed(ev: Evidence) -> None:
    ev.obs.first_terminal["j2"] = "completed"


def _cancel_200_not_canceled(ev: Evidence) -> None:
    ev.obs.canceled_ok.add("j2")


def _our_cancel_as_failure(ev: Evidence) -> None:
    _job_item(ev, "j2")["error"] = {"code": "provider_failed", "message": "Request was cancelled"}


def _stuck(ev: Evidence) -> None:
    _job_item(ev, "j1")["status"] = "in_progress"
    _item(ev, "BALANCE")["active_jobs"] = 1


def _not_quiet(ev: Evidence) -> None:
    ev.quiet = False


def _clawback_not_recorded(ev: Evidence) -> None:
    _item(ev, "PURCHASE", "PURCHASE#app_store#p2")["status"] = "granted"


def _clawback_of_other_amount(ev: Evidence) -> None:
    _item(ev, "LEDGER#002", f"USER#{BUYER}")["amount"] = 49
    _item(ev, "BALANCE", f"USER#{BUYER}")["balance"] = 51


def _purchase_entry_for_a_missing_purchase(ev: Evidence) -> None:
    ev.items.append(_buyer_ledger(3, "purchase", 50, "p9", 1))
    _item(ev, "BALANCE", f"USER#{BUYER}")["balance"] = 100


def _clawback_before_its_purchase(ev: Evidence) -> None:  # ids sort purchase first, the order says otherwise
    _item(ev, "LEDGER#001", f"USER#{BUYER}")["purchase_seq"] = 3


def _purchase_twice_then_clawback(ev: Evidence) -> None:  # counts right for "granted", order wrong
    ev.items += [_buyer_ledger(3, "purchase", 50, "p1", 2), _buyer_ledger(4, "clawback", 50, "p1", 3)]


def _order_missing(ev: Evidence) -> None:
    del _item(ev, "LEDGER#002", f"USER#{BUYER}")["purchase_seq"]


def _order_repeated(ev: Evidence) -> None:
    _item(ev, "LEDGER#002", f"USER#{BUYER}")["purchase_seq"] = 1


def _plan_price_differs(ev: Evidence) -> None:
    ev.obs.job_plan["j1"].cost = PRICE + 1


def _no_poster(ev: Evidence) -> None:  # the media function never ran: metadata and poster missing together
    del _job_item(ev, "j4")["video"]["media"]


def _poster_not_a_jpeg(ev: Evidence) -> None:
    ev.posters["videos/j1/v.mp4.poster.jpg"] = b"\x89PNG\r\n\x1a\n"


def _poster_object_missing(ev: Evidence) -> None:
    del ev.posters["videos/j1/v.mp4.poster.jpg"]


def _metadata_field_missing(ev: Evidence) -> None:
    del _job_item(ev, "j1")["video"]["media"]["fps"]


def _notified_twice(ev: Evidence) -> None:  # the review's mutant: a duplicated event pushed again
    ev.notifications.append(_note("j1", "completed", 260.0))


def _not_notified(ev: Evidence) -> None:
    ev.notifications = [n for n in ev.notifications if n["job_id"] != "j2"]


def _notified_after_delete(ev: Evidence) -> None:
    seen = ev.obs.apps.devices[(USER.user_id, "d1")]
    seen.delete_sent_at, seen.deleted_at = 150.0, 151.0  # before the notifications (200 s on)


def _notified_after_invalid(ev: Evidence) -> None:
    ev.notifications.append(_note("j4", "completed", 240.0, device_id="d3"))


def _invalid_device_kept(ev: Evidence) -> None:  # the review's mutant: EndpointDisabled not seen as gone
    ev.items.append({"pk": f"USER#{USER.user_id}", "sk": "DEVICE#d3", "device_id": "d3", "user_id": USER.user_id})


def _canceled_notified(ev: Evidence) -> None:
    ev.notifications.append(_note("j3", "canceled", 230.0))


def _wrong_status_notified(ev: Evidence) -> None:
    ev.notifications[1]["status"] = "completed"


def _unknown_device(ev: Evidence) -> None:
    ev.notifications.append(_note("j1", "completed", 230.0, device_id="d-unknown"))


def _upload_not_ready(ev: Evidence) -> None:
    ev.obs.apps.uploads[UPLOADED].status = "rejected"


def _rejected_accepted(ev: Evidence) -> None:  # the review's mutant: a rejected upload passed the check
    ev.obs.apps.uploads[REFUSED].status = "ready"


def _rejected_submit_answered_other(ev: Evidence) -> None:
    ev.obs.refused["k5"] = [(409, "upload_not_ready")]


def _rejected_upload_charged(ev: Evidence) -> None:
    _job_item(ev, "j2")["input_json"] = json.dumps({"prompt": "chaos j2", "image_url": f"upload:{REFUSED}"})


def _fal_got_the_reference(ev: Evidence) -> None:  # upload:<id> sent to fal as is, not resolved
    ev.sim_requests["req-j4"]["input"]["image_url"] = f"upload:{UPLOADED}"


def _job_shows_the_presigned_url(ev: Evidence) -> None:
    _job_item(ev, "j4")["input_json"] = json.dumps({"prompt": "chaos j4", "image_url": PRESIGNED})


def _device_registration_given_up(ev: Evidence) -> None:
    ev.obs.apps.failures.append("PUT /v1/devices/d2: 503")


MUTANTS: dict[str, tuple[Callable[[Evidence], None], str]] = {
    "double charge": (lambda ev: ev.items.append(_ledger(9, "charge", 0, "j1")), "double charges"),
    "double refund": (
        lambda ev: (ev.items.append(_ledger(9, "refund", PRICE, "j2")), _item(ev, "BALANCE").update(balance=300)),
        "double refunds",
    ),
    "missing charge": (lambda ev: ev.items.remove(_item(ev, "LEDGER#001")), "missing charges"),
    "missing refund": (lambda ev: ev.items.remove(_item(ev, "LEDGER#005")), "failed/canceled without refund"),
    "completed refunded": (lambda ev: ev.items.append(_ledger(9, "refund", PRICE, "j1")), "completed but refunded"),
    "charge amount": (_charge_of_other_amount, "charge amount differs from the job's credits_charged"),
    "price of the input": (_mispriced, "credits_charged differs from the price of the input"),
    "refund + 1": (_refund_plus_one, "refund amount differs from its charge"),
    "refund for a missing job": (_refund_for_missing_job, "charges or refunds for a job that does not exist"),
    "unknown ledger type": (_unknown_ledger_type, "unknown ledger entry types"),
    "balance": (_set(lambda ev: _item(ev, "BALANCE"), balance=1), "ledger-vs-balance mismatches"),
    "negative balance": (_set(lambda ev: _item(ev, "BALANCE"), balance=-1), "negative balances"),
    "purchase out of step": (_clawback_not_recorded, "purchase entries out of step with the purchase's status"),
    "clawback amount": (_clawback_of_other_amount, "purchase or clawback amount differs from the purchase's credits"),
    "purchase entry for a missing purchase": (
        _purchase_entry_for_a_missing_purchase,
        "purchase entries for a purchase that does not exist or another user",
    ),
    "clawback before its purchase": (
        _clawback_before_its_purchase,
        "purchase entries not alternating purchase, clawback, ... from a purchase",
    ),
    "two purchases in a row": (
        _purchase_twice_then_clawback,
        "purchase entries not alternating purchase, clawback, ... from a purchase",
    ),
    "purchase order missing": (
        _order_missing,
        "purchase entries without their order (purchase_seq missing or repeated)",
    ),
    "purchase order repeated": (
        _order_repeated,
        "purchase entries without their order (purchase_seq missing or repeated)",
    ),
    "active counter": (_set(lambda ev: _item(ev, "BALANCE"), active_jobs=2), "active-counter mismatches"),
    "missing object": (_missing_object, "completed without S3 object"),
    "checksum": (_other_bytes_in_object, "checksum mismatches"),
    "orphan object": (_orphan_object, "S3 objects no completed job owns"),
    "staging object": (_staging_object, "staging objects or unfinished uploads left in S3"),
    "unfinished upload": (_unfinished_upload, "staging objects or unfinished uploads left in S3"),
    "event owed": (_event_owed, "terminal jobs still owing their event"),
    "no event": (_no_event, "terminal jobs whose event never reached the bus"),
    "stuck": (_stuck, "stuck (not terminal at the end)"),
    "not quiet": (_not_quiet, "table still changing at the audit"),
    "finished video thrown away": (_finished_video_thrown_away, "failed although fal had finished it OK"),
    "truncated video stored": (_truncated_stored_as_is, "completed with other bytes than fal served"),
    "plan price": (_plan_price_differs, "job price differs from the plan's"),
    "two job ids for a key": (_second_job_for_a_key, "idempotency keys answered with >1 job id"),
    "replay body differs": (_different_replay_body, "idempotency keys with differing 202 bodies"),
    "new twice": (_new_twice, "idempotency keys answered 'new' twice"),
    "replay 500": (_replay_500, "keys whose final answers differ"),
    "replay 500 given up": (_replay_500, "submissions that ended on an error (client gave up)"),
    "gave up without a job": (_gave_up_before_any_job, "submissions that ended on an error (client gave up)"),
    "charged without a 202": (_charged_without_202, "charged jobs whose client never got a 202"),
    "two idempotency records": (_two_idempotency_records, "jobs without exactly one idempotency record"),
    "dangling idempotency record": (_dangling_idempotency_record, "idempotency records without their job"),
    "202 but not in the table": (_answered_but_missing, "jobs answered 202 but not in the table"),
    "reused key accepted": (_reuse_accepted, "key reused with another body, not 422"),
    "402 when affordable": (_every_submit_402, "402 to a user who could afford every planned job"),
    "terminal changed": (_terminal_changed, "terminal state changed"),
    "cancel 200 not canceled": (_cancel_200_not_canceled, "cancel answered 200, job not canceled"),
    "our cancel as failure": (_our_cancel_as_failure, "our cancel ended as a provider failure"),
    "no poster": (_no_poster, "completed without a poster JPEG in S3"),
    "no poster object": (_poster_object_missing, "completed without a poster JPEG in S3"),
    "poster not a JPEG": (_poster_not_a_jpeg, "completed without a poster JPEG in S3"),
    "no metadata": (_no_poster, "completed without video metadata"),
    "a metadata field missing": (_metadata_field_missing, "completed without video metadata"),
    "notified twice": (_notified_twice, "notifications for one job and device more than once"),
    "not notified": (_not_notified, "devices registered throughout a notified job without exactly one"),
    "notified twice, so not exactly one": (
        _notified_twice,
        "devices registered throughout a notified job without exactly one",
    ),
    "notified after delete": (_notified_after_delete, "notifications after the device's DELETE was answered"),
    "notified after invalid": (_notified_after_invalid, "notifications after the device's token went invalid"),
    "invalid device kept": (_invalid_device_kept, "devices with an invalid token kept after a later notified job"),
    "canceled notified": (_canceled_notified, "notifications not matching their job (owner, ending)"),
    "wrong status notified": (_wrong_status_notified, "notifications not matching their job (owner, ending)"),
    "unknown device": (_unknown_device, "notifications to no device of the run"),
    "photo rejected": (_upload_not_ready, "uploads not checked as their bytes are (ready / rejected)"),
    "other bytes accepted": (_rejected_accepted, "uploads not checked as their bytes are (ready / rejected)"),
    "rejected submit answered 409": (
        _rejected_submit_answered_other,
        "rejected uploads not refused 422 upload_rejected, or charged",
    ),
    "rejected upload charged": (
        _rejected_upload_charged,
        "rejected uploads not refused 422 upload_rejected, or charged",
    ),
    "fal got upload:<id>": (_fal_got_the_reference, "upload jobs whose input fal did not get from our bucket"),
    "job shows the presigned URL": (
        _job_shows_the_presigned_url,
        "upload jobs whose input fal did not get from our bucket",
    ),
    "device registration given up": (_device_registration_given_up, "app calls given up (device registration, upload)"),
}


def test_the_baseline_run_holds_every_invariant() -> None:
    table, found = checks.violations(baseline())
    assert table.ok, table.problems
    assert {k: v for k, v in found.items() if v} == {}
    assert (table.charges, table.refunds) == (4, 2)


def test_a_balance_below_zero_after_a_clawback_is_no_problem() -> None:
    ev = baseline()
    ev.items.append({"pk": f"USER#{BUYER}", "sk": "LEDGER#003", "type": "grant", "amount": -80, "job_id": None})
    _item(ev, "BALANCE", f"USER#{BUYER}")["balance"] = -30  # the credits were spent before the refund
    result = audit_items(ev.items, ev.bucket, ev.events)
    assert result.ok, result.problems


def test_every_kind_has_a_mutant_that_trips_it() -> None:
    assert {kind for _, kind in MUTANTS.values()} == set(checks.KINDS)


@pytest.mark.parametrize("name", MUTANTS)
def test_a_planted_violation_is_reported_under_its_kind(name: str) -> None:
    mutate, kind = MUTANTS[name]
    ev = baseline()
    mutate(ev)
    _, found = checks.violations(ev)
    assert found[kind], f"{name}: nothing reported under {kind!r}; found {[k for k, v in found.items() if v]}"


@pytest.mark.parametrize("name", [n for n, (_, kind) in MUTANTS.items() if kind in TABLE_KINDS])
def test_the_table_audit_alone_fails_on_each_of_its_kinds(name: str) -> None:
    """What the e2e teardown runs (devstack.invariants): the same mutants fail it."""
    mutate, kind = MUTANTS[name]
    ev = baseline()
    mutate(ev)
    result = audit_items(ev.items, ev.bucket, ev.events)
    assert not result.ok and result.by_kind[kind]


def test_a_fal_request_that_finished_after_the_job_failed_is_not_a_lost_result() -> None:
    ev = baseline()
    _job_item(ev, "j2")["error"] = {"code": "deadline_exceeded", "message": "took too long"}
    ev.sim_requests["req-j2"].update(failed=False, deliveries=[{"at": T_END_EPOCH + 5}])
    assert checks.violations(ev)[1]["failed although fal had finished it OK"] == []
    ev.sim_requests["req-j2"]["completed_at"] = T_END_EPOCH - 5  # the simulator's own time wins
    assert checks.violations(ev)[1]["failed although fal had finished it OK"] != []


def test_a_recorded_copy_failure_is_not_a_lost_result() -> None:
    ev = baseline()
    ev.sim_requests["req-j2"]["failed"] = False
    _job_item(ev, "j2")["error"] = {"code": "media_rejected", "message": "the generated video failed a safety check"}
    assert checks.violations(ev)[1]["failed although fal had finished it OK"] == []


def test_intermediate_errors_retried_to_one_final_answer_are_fine() -> None:
    ev = baseline()
    ev.obs.submit_codes.update({"500": 3, "no answer": 1})  # answers on the way; finals are all 202
    ev.obs.final_by_key["k1"].append(202)  # the later replay, answered from the stored first answer
    ev.obs.by_key["k1"].append(Answer(202, True, ev.obs.by_key["k1"][0].body, "j1"))
    assert {k: v for k, v in checks.violations(ev)[1].items() if v} == {}


def _short(ev: Evidence, **kw: Any) -> list[str]:
    stats = {stat: 1 for _, stat, _ in SIM_FAULT_KINDS}
    sim_config = {key: 0.1 for _, _, key in SIM_FAULT_KINDS}
    args: dict[str, Any] = {
        "sim_config": sim_config,
        "sim_stats": stats,
        "crashes": dict.fromkeys(CRASH_POINTS, 1),
        "crash_rate": 0.1,
        "conflicts": 3,
        **kw,
    }
    return checks.shortfalls(ev, **args)


def test_a_run_that_did_enough_has_no_shortfall() -> None:
    assert _short(baseline()) == []


def test_a_device_deleted_mid_run_is_owed_nothing_but_gets_at_most_one() -> None:
    gone_early = baseline()  # d2 (deleted at 102.6 s) got nothing: fine
    seen = gone_early.obs.apps.devices[(USER.user_id, "d1")]
    seen.delete_sent_at, seen.deleted_at = 300.0, 301.0  # after every notification: nothing after it
    gone_early.notifications = gone_early.notifications[:1]  # j2 and j4 never reached it: fine
    assert {k: v for k, v in checks.violations(gone_early)[1].items() if v} == {}
    _notified_twice(gone_early)
    assert checks.violations(gone_early)[1]["notifications for one job and device more than once"]


def test_a_device_registered_after_the_submit_owes_nothing() -> None:
    ev = baseline()
    ev.obs.apps.devices[(USER.user_id, "d1")].registered_at = 150.0  # after k1..k4 were sent
    ev.notifications = []
    assert {k: v for k, v in checks.violations(ev)[1].items() if v} == {}


def test_the_apps_did_too_little() -> None:
    no_delete = baseline()
    no_delete.obs.apps.devices[(USER.user_id, "d2")].deleted_at = None  # its DELETE never answered
    assert "no device was deleted mid-run" in _short(no_delete)
    ev = baseline()
    ev.notifications = []
    assert "no notification was sent" in _short(ev)
    _job_item(ev, "j4")["status"] = "failed"
    assert "no job made from an upload completed" in _short(ev)
    ev.obs.refused.clear()
    assert "no submit named a rejected upload" in _short(ev)
    ev.obs.apps.devices[(USER.user_id, "d3")].invalid_at = None
    assert "no device's token went invalid mid-run" in _short(ev)
    assert "fault never fired: EventBridge deliveries duplicated" in _short(ev, events_duplicated=0)
    assert "fault never fired: EventBridge deliveries duplicated" not in _short(ev, events_duplicated=None)


def test_a_run_that_did_too_little_fails() -> None:
    ev = baseline()
    ev.obs.not_sent = 1
    assert any("not sent" in s for s in _short(ev))

    every_402 = baseline()  # every submit answered 402: no job at all
    every_402.obs.job_owner.clear()
    assert any("jobs created" in s for s in _short(every_402))

    no_cancel = baseline()
    _job_item(no_cancel, "j3")["status"] = "failed"
    assert "no job ended canceled" in _short(no_cancel)

    silent = baseline()
    assert "fault never fired: webhooks dropped" in _short(silent, sim_stats={"webhooks_dropped": 0})
    assert f"fault never fired: crash point {CRASH_POINTS[0]}" in _short(silent, crashes={})
    assert "fault never fired: DynamoDB TransactionConflict" in _short(silent, conflicts=0)
    assert "fault never fired: DynamoDB TransactionConflict" not in _short(silent, conflicts=None)


def test_without_a_reconciler_an_owed_event_waits_but_a_claimed_one_must_be_on_the_bus() -> None:
    """The e2e teardown's audit (no reconciler runs there): event_pending is owed, not yet lost."""
    owed = baseline()
    _event_owed(owed)
    assert audit_items(owed.items, owed.bucket, owed.events, reconciled=False).ok
    assert not audit_items(owed.items, owed.bucket, owed.events).ok
    silent = baseline()
    _no_event(silent)
    assert audit_items(silent.items, silent.bucket, silent.events, reconciled=False).by_kind[
        "terminal jobs whose event never reached the bus"
    ]


def test_a_device_whose_token_went_invalid_after_the_last_job_may_stay() -> None:
    ev = baseline()
    _invalid_device_kept(ev)
    ev.obs.apps.devices[(USER.user_id, "d3")].invalid_at = T_END_EPOCH + 1  # no job ended after it
    assert {k: v for k, v in checks.violations(ev)[1].items() if v} == {}

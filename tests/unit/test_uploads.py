"""Uploads on fakes: POST/GET /v1/uploads, the check of an uploaded file (every format, true and
lying bytes), upload:<id> at submit (every refusal charges nothing) and in what fal gets."""

from __future__ import annotations

import json
import time
from typing import Any, get_args

import pytest

from tests.fakes.system import System
from tests.fakes.uploads import (
    SAMPLE_MP4,
    FakeUploadBucket,
    jpeg,
    mp4,
    png,
    webp_extended,
    webp_lossless,
    webp_lossy,
)
from videogen import contract
from videogen.domain import media_probe
from videogen.domain.errors import MediaTransferError, UnknownUpload, UploadNotFound, UploadNotReady, UploadRejected
from videogen.domain.limits import UserLimits
from videogen.domain.models import LedgerType
from videogen.domain.uploads import (
    CONTENT_TYPES,
    POST_TTL_S,
    UPLOAD_TTL_S,
    UploadStatus,
    input_key,
    object_key,
    parse_object_key,
)
from videogen.services import uploads
from videogen.services.submission import SubmitAnswer, SubmitLimits, submit_video

ROOMY = UserLimits(requests_per_minute=60_000, burst=10_000)  # the rate is tested in test_user_limits.py


@pytest.fixture
def bucket() -> FakeUploadBucket:
    return FakeUploadBucket()


def create(system: System, bucket: FakeUploadBucket, content_type: str, size: int, user: str = "u1") -> str:
    request = contract.UploadRequest.model_validate({"content_type": content_type, "size_bytes": size})
    return uploads.create_upload(system.store, bucket, user, request, ROOMY).upload.id


def uploaded(system: System, bucket: FakeUploadBucket, data: bytes, content_type: str, user: str = "u1") -> str:
    """An upload created, its bytes POSTed, the S3 event handled: its id."""
    upload_id = create(system, bucket, content_type, len(data), user)
    bucket.objects[object_key(user, upload_id)] = data
    uploads.UploadValidator(system.store, bucket).check(bucket.name, object_key(user, upload_id))
    return upload_id


# --- POST and GET /v1/uploads -----------------------------------------------------------------


def test_given_a_declared_file_then_a_pending_upload_and_a_post_for_its_key_type_and_size(system, bucket) -> None:
    request = contract.UploadRequest.model_validate({"content_type": "image/png", "size_bytes": 1234})
    created = uploads.create_upload(system.store, bucket, "u|1/x", request, ROOMY)
    assert created.upload.status == UploadStatus.PENDING and created.upload.size_bytes == 1234
    key = object_key("u|1/x", created.upload.id)
    assert key == f"uploads/u%7C1%2Fx/{created.upload.id}" and parse_object_key(key) == ("u|1/x", created.upload.id)
    assert bucket.posts == [(key, "image/png", 1234, POST_TTL_S)] and POST_TTL_S == 15 * 60
    assert created.fields["key"] == key
    stored = system.store.get_upload("u|1/x", created.upload.id)
    assert stored is not None and stored.expires_at - time.time() == pytest.approx(UPLOAD_TTL_S, abs=5)


@pytest.mark.parametrize(
    ("content_type", "size", "ok"),
    [
        ("image/png", 20 * 1024 * 1024, True),
        ("image/png", 20 * 1024 * 1024 + 1, False),
        ("video/mp4", 100 * 1024 * 1024, True),
        ("video/mp4", 100 * 1024 * 1024 + 1, False),
        ("image/gif", 10, False),
        ("image/jpeg", 0, False),
        ("image/jpeg", "10", False),
        ("image/jpeg", 1742.0, True),  # an integer in JSON Schema (schemathesis sent it)
        ("image/jpeg", 1742.5, False),
        ("image/jpeg", True, False),
    ],
)
def test_the_declared_type_and_size_are_bounded_per_kind(content_type: str, size: Any, ok: bool) -> None:
    import jsonschema

    body = {"content_type": content_type, "size_bytes": size}
    try:
        contract.UploadRequest.model_validate(body)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted is ok
    assert jsonschema.Draft202012Validator(contract.UploadRequest.model_json_schema()).is_valid(body) is ok


def test_the_contracts_content_types_are_the_domains() -> None:
    assert set(get_args(contract.UploadContentType)) == set(CONTENT_TYPES)


def test_get_answers_the_owners_upload_and_404_for_another_user_missing_or_expired(system, bucket) -> None:
    upload_id = create(system, bucket, "image/png", 10)
    assert uploads.get_upload(system.store, "u1", upload_id).id == upload_id
    for user, wanted in (("u2", upload_id), ("u1", "upl_" + "0" * 26), ("u1", "../etc")):
        with pytest.raises(UnknownUpload) as missing:
            uploads.get_upload(system.store, user, wanted)
        assert missing.value.status == 404 and missing.value.code == "upload_not_found"
    system.store._uploads[("u1", upload_id)].expires_at = int(time.time()) - 1
    with pytest.raises(UnknownUpload):
        uploads.get_upload(system.store, "u1", upload_id)


# --- the check of an uploaded file -----------------------------------------------------------

GOOD = [
    ("image/png", png(4, 3), (4, 3, None)),
    ("image/jpeg", jpeg(640, 480), (640, 480, None)),
    ("image/jpeg", jpeg(33, 22, exif_segments=2), (33, 22, None)),  # the frame header after a 64 KiB read
    ("image/webp", webp_lossy(320, 200), (320, 200, None)),
    ("image/webp", webp_lossless(100, 50), (100, 50, None)),
    ("image/webp", webp_extended(1000, 700), (1000, 700, None)),
    ("video/mp4", mp4(2500, 1000), (None, None, 2.5)),
    ("video/mp4", mp4(90_000, 30_000, moov_last=True), (None, None, 3.0)),
    ("video/mp4", mp4(48_000, 24_000, version=1), (None, None, 2.0)),
    ("video/mp4", SAMPLE_MP4, (None, None, None)),  # the simulator's real H.264 file: any duration > 0
]


@pytest.mark.parametrize(("content_type", "data", "measured"), GOOD)
def test_a_real_file_of_its_type_is_ready_with_what_it_measures(system, bucket, content_type, data, measured) -> None:
    upload_id = uploaded(system, bucket, data, content_type)
    done = system.store.get_upload("u1", upload_id)
    assert done is not None and done.status == UploadStatus.READY and done.error is None
    width, height, duration = measured
    assert (done.width, done.height) == (width, height)
    if duration is not None:
        assert done.duration_s == duration
    elif content_type == "video/mp4":
        assert done.duration_s and done.duration_s > 0


def _truncated_png() -> bytes:
    data = png()
    return data[:-12]  # no IEND


def _lying_jpeg() -> bytes:
    data = bytearray(jpeg())
    data[4:6] = b"\xff\xff"  # APP0 claims 65535 bytes
    return bytes(data)


def _lying_mp4() -> bytes:
    data = bytearray(mp4())
    data[0:4] = (10_000_000).to_bytes(4, "big")  # ftyp claims more than the file
    return bytes(data)


BAD = [
    ("image/png", jpeg(), "type_mismatch"),
    ("image/png", b"GIF89a" + b"\x00" * 100, "type_mismatch"),
    ("image/png", _truncated_png(), "not_decodable"),
    ("image/png", png()[:20], "not_decodable"),
    ("image/png", png()[:16] + b"\x00" * 8 + png()[24:], "not_decodable"),  # dimensions changed: CRC fails
    ("image/jpeg", png(), "type_mismatch"),
    ("image/jpeg", _lying_jpeg(), "not_decodable"),
    ("image/jpeg", b"\xff\xd8\xff\xda\x00\x02" + b"\x00" * 10, "not_decodable"),  # scan before a frame
    ("image/jpeg", jpeg(0, 480), "not_decodable"),
    ("image/webp", png(), "type_mismatch"),
    ("image/webp", webp_lossy()[:-4], "not_decodable"),  # RIFF size larger than the file
    ("image/webp", webp_lossy()[:12] + b"ABCD" + webp_lossy()[16:], "not_decodable"),
    ("video/mp4", png(), "type_mismatch"),
    ("video/mp4", _lying_mp4(), "not_decodable"),
    ("video/mp4", mp4()[:40], "not_decodable"),
    ("video/mp4", mp4(0), "not_decodable"),
    ("video/mp4", mp4(1000, 0), "not_decodable"),
]


@pytest.mark.parametrize(("content_type", "data", "code"), BAD)
def test_bytes_that_are_not_a_file_of_the_declared_type_are_rejected(system, bucket, content_type, data, code) -> None:
    upload_id = uploaded(system, bucket, data, content_type)
    done = system.store.get_upload("u1", upload_id)
    assert done is not None and done.status == UploadStatus.REJECTED
    assert done.error is not None and done.error.code == code


def test_a_size_other_than_the_declared_one_is_rejected(system, bucket) -> None:
    upload_id = create(system, bucket, "image/png", 10)
    bucket.objects[object_key("u1", upload_id)] = png()
    assert uploads.UploadValidator(system.store, bucket).check(bucket.name, object_key("u1", upload_id)) == "rejected"
    done = system.store.get_upload("u1", upload_id)
    assert done is not None and done.error is not None and done.error.code == "size_mismatch"


def test_a_redelivered_event_changes_nothing_and_reads_nothing(system, bucket) -> None:
    upload_id = uploaded(system, bucket, png(), "image/png")
    reads = len(bucket.reads)
    validator = uploads.UploadValidator(system.store, bucket)
    bucket.objects[object_key("u1", upload_id)] = b"replaced by garbage"
    assert validator.check(bucket.name, object_key("u1", upload_id)) == "ignored"
    assert len(bucket.reads) == reads and system.store.get_upload("u1", upload_id).status == UploadStatus.READY


@pytest.mark.parametrize("key", ["videos/u1/x.mp4", "uploads/u1/not-an-id", "uploads/u1/upl_" + "0" * 26, "uploads/"])
def test_keys_we_did_not_hand_out_and_unknown_uploads_are_ignored(system, bucket, key) -> None:
    assert uploads.UploadValidator(system.store, bucket).check(bucket.name, key) == "ignored"


def test_an_object_gone_again_is_ignored_and_an_unreadable_one_raises_for_lambdas_retry(system, bucket) -> None:
    upload_id = create(system, bucket, "image/png", len(png()))
    validator = uploads.UploadValidator(system.store, bucket)
    assert validator.check(bucket.name, object_key("u1", upload_id)) == "ignored"  # no object (yet)
    bucket.objects[object_key("u1", upload_id)] = png()
    bucket.fail_reads = 1
    with pytest.raises(MediaTransferError):
        validator.check(bucket.name, object_key("u1", upload_id))
    assert system.store.get_upload("u1", upload_id).status == UploadStatus.PENDING  # the retry decides
    assert validator.check(bucket.name, object_key("u1", upload_id)) == "ready"


def test_an_image_header_costs_one_ranged_read_and_a_png_two(bucket) -> None:
    bucket.objects["k"] = jpeg()
    head = bucket.head("b", "k")
    assert head is not None
    read = uploads._CachedReader(bucket, "b", "k", head)
    media_probe.probe("image/jpeg", read, len(bucket.objects["k"]))
    assert read.reads == 1


# --- upload:<id> at submit --------------------------------------------------------------------


def submit_with(system: System, **inputs: Any) -> SubmitAnswer:
    body = {"model": "kling-2.6-standard-motion-control", "input": {"character_orientation": "image", **inputs}}
    return submit_video(
        user_id="u1",
        idempotency_key=json.dumps(inputs, sort_keys=True),
        raw_body=json.dumps(body).encode(),
        store=system.store,
        registry=system.registry,
        workflow=system.workflow,
        limits=SubmitLimits(),
    )


@pytest.fixture
def funded(system: System) -> System:
    system.store.grant("u1", 100, "welcome")
    return system


def test_given_ready_uploads_of_the_fitting_kinds_then_the_job_shows_them_as_sent(funded, bucket) -> None:
    image = uploaded(funded, bucket, png(), "image/png")
    video = uploaded(funded, bucket, mp4(), "video/mp4")
    funded.store.calls.clear()
    answer = submit_with(funded, image_url=f"upload:{image}", video_url=f"upload:{video}")
    assert answer.status_code == 202
    assert answer.body["job"]["input"]["image_url"] == f"upload:{image}"
    assert funded.store.calls == ["read_for_submit", "create_job"]  # the uploads rode on the one read


def _refused(system: System, error: type[Exception], **inputs: Any) -> None:
    before = system.store.get_balance("u1").balance
    with pytest.raises(error):
        submit_with(system, **inputs)
    assert system.store.get_balance("u1").balance == before
    assert LedgerType.CHARGE not in [e.type for e in system.store.ledger("u1")]
    assert system.workflow.starts == []


def test_a_missing_or_another_users_upload_is_upload_not_found_and_nothing_charged(funded, bucket) -> None:
    video = uploaded(funded, bucket, mp4(), "video/mp4")
    others = uploaded(funded, bucket, png(), "image/png", user="u2")
    for image in (others, "upl_" + "0" * 26):
        _refused(funded, UploadNotFound, image_url=f"upload:{image}", video_url=f"upload:{video}")


def test_an_expired_upload_is_upload_not_found(funded, bucket) -> None:
    image = uploaded(funded, bucket, png(), "image/png")
    funded.store._uploads[("u1", image)].expires_at = int(time.time()) - 1
    _refused(funded, UploadNotFound, image_url=f"upload:{image}", video_url="https://example.com/v.mp4")


def test_a_pending_upload_is_upload_not_ready(funded, bucket) -> None:
    image = create(funded, bucket, "image/png", 100)
    _refused(funded, UploadNotReady, image_url=f"upload:{image}", video_url="https://example.com/v.mp4")


def test_a_rejected_upload_and_one_of_the_wrong_kind_are_upload_rejected(funded, bucket) -> None:
    rejected = uploaded(funded, bucket, b"not a png at all", "image/png")
    video = uploaded(funded, bucket, mp4(), "video/mp4")
    image = uploaded(funded, bucket, png(), "image/png")
    _refused(funded, UploadRejected, image_url=f"upload:{rejected}", video_url="https://example.com/v.mp4")
    _refused(funded, UploadRejected, image_url=f"upload:{video}", video_url="https://example.com/v.mp4")
    _refused(funded, UploadRejected, image_url=f"upload:{image}", video_url=f"upload:{image}")


def test_a_replay_answers_as_the_first_time_even_after_its_upload_expired(funded, bucket) -> None:
    image = uploaded(funded, bucket, png(), "image/png")
    first = submit_with(funded, image_url=f"upload:{image}", video_url="https://example.com/v.mp4")
    funded.store._uploads[("u1", image)].expires_at = int(time.time()) - 1
    again = submit_with(funded, image_url=f"upload:{image}", video_url="https://example.com/v.mp4")
    assert again.replayed and again.body == first.body


# --- what fal gets -----------------------------------------------------------------------------


def test_fal_gets_a_presigned_get_of_each_upload_valid_until_the_jobs_deadline(funded, bucket) -> None:
    image = uploaded(funded, bucket, png(), "image/png")
    answer = submit_with(funded, image_url=f"upload:{image}", video_url="https://example.com/v.mp4")
    job = funded.job(answer.body["job"]["id"])
    assert funded.submit.run(job.id) == {"done": False}
    ((_, payload, _),) = funded.fal.submitted
    url = payload["image_url"]
    sealed = funded.store.get_upload("u1", image).input_key
    assert sealed == input_key("u1", image, bucket.etag(png())) and job.input_objects == {"image_url": sealed}
    assert url.startswith(f"https://bucket.test/{sealed}?")  # the sealed copy, never uploads/<user>/<id>
    # a plain presign of exactly the time left (never the windowed or CDN URL of videos)
    ttl = int(url.rsplit("X-Amz-Expires=", 1)[1])
    assert ttl == pytest.approx(job.deadline_at - time.time(), abs=3)
    assert payload["video_url"] == "https://example.com/v.mp4"
    assert funded.job(job.id).input["image_url"] == f"upload:{image}"  # the job keeps it as sent


# --- what the problems say ---------------------------------------------------------------------


def test_a_wrong_kind_is_named_with_its_article(funded, bucket) -> None:
    video = uploaded(funded, bucket, mp4(), "video/mp4")
    image = uploaded(funded, bucket, png(), "image/png")
    with pytest.raises(UploadRejected) as as_image:
        submit_with(funded, image_url=f"upload:{video}", video_url="https://example.com/v.mp4")
    assert f"input.image_url takes an image; upload {video} is a video" == as_image.value.detail
    with pytest.raises(UploadRejected) as as_video:
        submit_with(funded, image_url="https://example.com/i.png", video_url=f"upload:{image}")
    assert f"input.video_url takes a video; upload {image} is an image" == as_video.value.detail
    with pytest.raises(ValueError, match="an image upload is at most"):
        contract.UploadRequest.model_validate({"content_type": "image/png", "size_bytes": 21 * 1024 * 1024})


def test_a_missing_upload_is_named_in_full_at_submit_and_on_get(funded, bucket) -> None:
    missing = "upl_" + "0" * 26
    with pytest.raises(UploadNotFound) as at_submit:
        submit_with(funded, image_url=f"upload:{missing}", video_url="https://example.com/v.mp4")
    assert f"no upload '{missing}'" in at_submit.value.detail
    with pytest.raises(UnknownUpload) as on_get:
        uploads.get_upload(funded.store, "u1", missing)
    assert on_get.value.detail == f"No upload '{missing}'"


def test_an_id_longer_than_any_upload_id_is_cut_at_that_length_and_its_length_said(system) -> None:
    sent = "upl_" + "x" * (64 * 1024)
    with pytest.raises(UnknownUpload) as e:
        uploads.get_upload(system.store, "u1", sent)
    assert e.value.detail == f"No upload {sent[:30]!r}… ({len(sent)} characters; a valid id has at most 30)"


# --- the seal: fal only ever gets the bytes that were checked ---------------------------------


def test_a_ready_upload_is_sealed_a_copy_of_exactly_the_checked_bytes_under_inputs(system, bucket) -> None:
    upload_id = uploaded(system, bucket, png(), "image/png")
    done = system.store.get_upload("u1", upload_id)
    etag = bucket.etag(png())
    assert done is not None and done.input_key == f"inputs/u1/{upload_id}/{etag.strip(chr(34))}"
    assert bucket.seals == [(object_key("u1", upload_id), etag, done.input_key)]
    assert bucket.objects[done.input_key] == png()


def test_a_rejected_upload_is_not_sealed(system, bucket) -> None:
    upload_id = uploaded(system, bucket, jpeg(), "image/png")
    assert system.store.get_upload("u1", upload_id).input_key is None and bucket.seals == []


def test_bytes_posted_after_the_check_never_reach_fal(funded, bucket) -> None:
    """The presigned POST still works after the upload is ready: the app POSTs other bytes to the
    same key. Their event is ignored (checked already), and submit and fal use the sealed copy."""
    image = uploaded(funded, bucket, png(), "image/png")
    raw = object_key("u1", image)
    bucket.objects[raw] = b"<?php evil(); ?>" + b"\x00" * (len(png()) - 16)  # same size, not a PNG
    assert uploads.UploadValidator(funded.store, bucket).check(bucket.name, raw) == "ignored"
    answer = submit_with(funded, image_url=f"upload:{image}", video_url="https://example.com/v.mp4")
    assert funded.submit.run(answer.body["job"]["id"]) == {"done": False}
    ((_, payload, _),) = funded.fal.submitted
    key = payload["image_url"].split("https://bucket.test/", 1)[1].split("?", 1)[0]
    assert key.startswith("inputs/") and bucket.objects[key] == png()


def test_bytes_replaced_while_they_are_read_are_not_marked_and_their_own_event_decides(system, bucket) -> None:
    upload_id = create(system, bucket, "image/png", len(png()))
    key = object_key("u1", upload_id)
    bucket.objects[key] = b"\x00" * len(png())  # not a PNG ...
    validator = uploads.UploadValidator(system.store, bucket)

    def post_again() -> None:
        bucket.objects[key] = png()  # ... replaced mid-check by a valid PNG of the declared size

    bucket.before_read = post_again
    assert validator.check(bucket.name, key) == "superseded"
    assert system.store.get_upload("u1", upload_id).status == UploadStatus.PENDING and bucket.seals == []
    assert validator.check(bucket.name, key) == "ready"  # the new bytes' own event
    assert bucket.objects[system.store.get_upload("u1", upload_id).input_key] == png()


def test_bytes_replaced_between_the_check_and_the_seal_are_not_sealed(system, bucket) -> None:
    upload_id = create(system, bucket, "image/png", len(png()))
    key = object_key("u1", upload_id)
    bucket.objects[key] = png()
    bucket.before_seal = lambda: bucket.objects.__setitem__(key, b"\x00" * len(png()))  # checked, then replaced
    assert uploads.UploadValidator(system.store, bucket).check(bucket.name, key) == "superseded"
    done = system.store.get_upload("u1", upload_id)
    assert done.status == UploadStatus.PENDING and done.input_key is None
    assert not [k for k in bucket.objects if k.startswith("inputs/")]


def test_a_ready_upload_checked_before_inputs_were_sealed_is_refused_at_submit(funded, bucket) -> None:
    upload_id = create(funded, bucket, "image/png", len(png()))
    funded.store.finish_upload("u1", upload_id, UploadStatus.READY, width=4, height=3)  # no input_key
    with pytest.raises(UploadRejected, match="before inputs were sealed"):
        submit_with(funded, image_url=f"upload:{upload_id}", video_url="https://example.com/v.mp4")
    assert not [e for e in funded.store.ledger("u1") if e.type == LedgerType.CHARGE]


def test_a_job_without_the_sealed_object_of_an_upload_input_is_failed_and_refunded_never_sent(funded, bucket) -> None:
    image = uploaded(funded, bucket, png(), "image/png")
    answer = submit_with(funded, image_url=f"upload:{image}", video_url="https://example.com/v.mp4")
    job = funded.job(answer.body["job"]["id"])
    funded.store._jobs[job.id] = job.model_copy(update={"input_objects": {}})  # accepted before sealing
    assert funded.submit.run(job.id) == {"done": True}
    assert funded.fal.submitted == []
    done = funded.job(job.id)
    assert done.status.value == "failed" and done.error is not None and done.error.code == "invalid_input"
    assert "input.image_url has no sealed object" in done.error.message
    assert [e.type for e in funded.store.ledger("u1")].count(LedgerType.REFUND) == 1


def test_the_sealed_key_encodes_the_user_and_drops_the_etags_quotes() -> None:
    assert input_key("a/b|c", "upl_x", '"abc-2"') == "inputs/a%2Fb%7Cc/upl_x/abc-2"


def test_the_buckets_lifecycle_keeps_sealed_inputs_a_day_past_the_upload_and_raw_bytes_a_day() -> None:
    """docs/api.md: uploads are kept 7 days. fal reads only the sealed copy, kept one day more (a
    job submitted in the upload's last minute still starts); the raw bytes only the validator reads."""
    from devstack.template import SamTemplate
    from videogen.domain.uploads import INPUT_PREFIX, INPUT_RETENTION_DAYS, RAW_UPLOAD_RETENTION_DAYS, UPLOAD_PREFIX

    rules = SamTemplate.load().data["Resources"]["VideosBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    days = {rule.get("Prefix"): rule.get("ExpirationInDays") for rule in rules}
    assert UPLOAD_TTL_S == 7 * 86400
    assert days[INPUT_PREFIX] == INPUT_RETENTION_DAYS == UPLOAD_TTL_S // 86400 + 1
    assert days[UPLOAD_PREFIX] == RAW_UPLOAD_RETENTION_DAYS == 1

"""The presigned POST against a moto S3 server over real HTTP, what moto does and does not enforce
of its policy, the S3 event it sends for it (devstack.s3_events), and the upload items in DynamoDB.

moto 5 stores a browser POST without checking its policy: no signature check, no expiry, no
``content-length-range``, no ``Content-Type`` condition. So locally those are proven by reading
the signed policy itself (what real S3 evaluates), and the validator refuses the bytes and sizes
a policy would have refused (tests below).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.server import ThreadedMotoServer

from devstack import s3_events
from devstack.provision import create_table
from devstack.template import SamTemplate
from tests.fakes.uploads import png
from videogen.adapters.dynamo import DynamoStore
from videogen.adapters.uploads import S3UploadBucket
from videogen.domain.errors import BalanceChanged, UploadChanged
from videogen.domain.limits import Usage, UserLimits, admit, admit_unread
from videogen.domain.models import Balance
from videogen.domain.uploads import POST_TTL_S, Upload, UploadStatus, object_key
from videogen.services.uploads import UploadValidator


@pytest.fixture
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(endpoint: str) -> Any:
    return boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)


def _bucket(s3: Any) -> str:
    name = f"videogen-uploads-{uuid.uuid4().hex[:8]}"  # moto's backend is shared in-process
    s3.create_bucket(Bucket=name)
    return name


def _pending(upload_id: str, content_type: str, size_bytes: int, user_id: str = "u1") -> Upload:
    return Upload(
        id=upload_id,
        user_id=user_id,
        status=UploadStatus.PENDING,
        content_type=content_type,
        size_bytes=size_bytes,
        created_at="2026-11-22T09:00:00.000Z",
        expires_at=int(time.time()) + 3600,
    )


def _put(store: DynamoStore, upload: Upload) -> None:
    """The record as POST /v1/uploads writes it (counted against a roomy rate)."""
    store.create_upload(upload, Balance(), admit_unread(UserLimits(), int(time.time() * 1000)))


def _post(url: str, fields: dict[str, str], data: bytes, content_type: str) -> requests.Response:
    """What a browser or an app's HTTP client sends: the form fields, then the file."""
    return requests.post(url, data=fields, files={"file": ("photo", data, content_type)}, timeout=10)


def test_the_presigned_post_stores_the_file_under_its_key(s3: Any) -> None:
    bucket = _bucket(s3)
    data = png()
    post = S3UploadBucket(s3, bucket).presign_post("uploads/u1/upl_x", "image/png", len(data), POST_TTL_S)
    answer = _post(post.url, post.fields, data, "image/png")
    assert answer.status_code == 204, answer.text
    stored = s3.get_object(Bucket=bucket, Key="uploads/u1/upl_x")
    assert stored["Body"].read() == data


def test_the_signed_policy_holds_the_key_type_exact_size_and_15_minutes(s3: Any) -> None:
    post = S3UploadBucket(s3, _bucket(s3)).presign_post("uploads/u1/upl_x", "image/png", 1234, POST_TTL_S)
    policy = json.loads(base64.b64decode(post.fields["policy"]))
    conditions = policy["conditions"]
    assert {"key": "uploads/u1/upl_x"} in conditions and {"Content-Type": "image/png"} in conditions
    assert ["content-length-range", 1234, 1234] in conditions
    expires = time.mktime(time.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert expires - time.time() == pytest.approx(POST_TTL_S, abs=5)
    assert post.fields["Content-Type"] == "image/png" and post.fields["key"] == "uploads/u1/upl_x"


@pytest.mark.parametrize("wrong", ["content_type", "size"])
def test_moto_does_not_enforce_the_policy_so_the_validator_refuses_what_s3_would(
    s3: Any, endpoint: str, wrong: str
) -> None:
    """Real S3 answers 403 to both POSTs; moto stores them. The upload is then rejected."""
    bucket = _bucket(s3)
    upload = _pending("upl_" + "1" * 26, "image/png", len(png()), user_id="u1")
    post = S3UploadBucket(s3, bucket).presign_post(upload.s3_key, upload.content_type, upload.size_bytes, 60)
    data = png() + b"extra" if wrong == "size" else b"\xff\xd8\xff" + b"\x00" * (upload.size_bytes - 3)
    fields = {**post.fields, "Content-Type": "image/jpeg"} if wrong == "content_type" else post.fields
    assert _post(post.url, fields, data, "image/jpeg").status_code == 204  # moto: stored anyway

    dynamodb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
    table = f"uploads-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb, table, SamTemplate.load().table_specs()["JobsTable"])
    store = DynamoStore(dynamodb, table)
    _put(store, upload)
    outcome = UploadValidator(store, S3UploadBucket(s3, bucket)).check(bucket, upload.s3_key)
    found = store.get_upload("u1", upload.id)
    assert outcome == "rejected" and found is not None and found.status == UploadStatus.REJECTED
    assert found.error is not None and found.error.code == ("size_mismatch" if wrong == "size" else "type_mismatch")


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.arrived = threading.Event()

    def invoke(self, fn: str, event: dict[str, Any]) -> None:
        self.events.append((fn, event))
        self.arrived.set()


def test_a_post_under_uploads_sends_the_s3_event_the_template_configures_to_the_local_handler(s3: Any) -> None:
    bucket = _bucket(s3)
    template = SamTemplate.load()
    arn = "arn:aws:lambda:us-east-1:123456789012:function:local-UploadValidatorFunction"
    refs = {"VideosBucket": bucket, "UploadValidatorFunction.Arn": arn}
    s3_events.configure(s3, template, refs)
    recorder = _Recorder()
    s3_events.deliver_to(recorder)
    try:
        s3.put_object(Bucket=bucket, Key="videos/job/x.mp4", Body=b"not an upload")  # outside the filter
        key = object_key("a b|c", "upl_" + "2" * 26)
        post = S3UploadBucket(s3, bucket).presign_post(key, "image/png", len(png()), 60)
        assert _post(post.url, post.fields, png(), "image/png").status_code == 204
        assert recorder.arrived.wait(10)
    finally:
        s3_events.stop_delivery()
    ((fn, event),) = recorder.events
    record = event["Records"][0]
    assert fn == arn and record["eventSource"] == "aws:s3" and record["eventName"] == "ObjectCreated:Post"
    assert record["s3"]["bucket"]["name"] == bucket and record["s3"]["object"]["size"] == len(png())
    assert record["s3"]["object"]["key"] != key and unquote_plus(record["s3"]["object"]["key"]) == key  # URL-encoded


def test_upload_items_are_read_only_under_their_owner_and_finished_once() -> None:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, "uploads-items", SamTemplate.load().table_specs()["JobsTable"])
        store = DynamoStore(dynamodb, "uploads-items")
        upload = _pending("upl_" + "3" * 26, "video/mp4", 10, user_id="u1")
        _put(store, upload)
        _put(store, upload.model_copy(update={"size_bytes": 99}))  # a second put changes nothing
        assert store.get_upload("u2", upload.id) is None
        assert store.finish_upload("u1", upload.id, UploadStatus.READY, duration_s=2.5)
        assert not store.finish_upload("u1", upload.id, UploadStatus.REJECTED)
        done = store.get_upload("u1", upload.id)
        assert done is not None and done.status == UploadStatus.READY and done.duration_s == 2.5
        assert done.size_bytes == 10
        _, _, found = store.read_for_submit("u1", "k", [upload.id, "upl_" + "4" * 26])
        assert list(found) == [upload.id] and found[upload.id].status == UploadStatus.READY
        assert store.read_for_submit("u2", "k", [upload.id])[2] == {}


def test_the_fal_simulator_fetches_local_http_inputs_and_answers_fals_422_when_it_cannot(s3: Any) -> None:
    from devstack.falsim.routes import fetch_inputs

    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="uploads/u1/a", Body=png())
    good = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "uploads/u1/a"}, ExpiresIn=60)
    gone = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "uploads/u1/b"}, ExpiresIn=60)
    public = "https://example.com/a.png"  # not fetched: the simulator has no internet to reach it
    assert fetch_inputs({"prompt": "x", "image_url": good, "end_image_url": public}) == (
        None,
        {"image_url": hashlib.sha256(png()).hexdigest()},  # what fal got, by the bytes it fetched
    )
    refused, _ = fetch_inputs({"image_url": good, "video_url": gone})
    assert refused is not None and refused["loc"] == ["body", "video_url"]
    assert refused["type"] == "file_download_error" and "?" not in refused["input"]  # no signature echoed


# --- the seal: CopyObject with CopySourceIfMatch, ranged reads If-Match -------------------------


@pytest.fixture
def patched() -> None:
    from devstack import moto_patches

    moto_patches.apply()  # the local stack's moto, with CopySourceIfMatch answered as S3 does


def test_moto_as_patched_answers_412_to_a_copy_whose_source_etag_is_another_one(s3: Any, patched: None) -> None:
    bucket = _bucket(s3)
    etag = s3.put_object(Bucket=bucket, Key="uploads/u1/a", Body=b"checked")["ETag"]
    s3.put_object(Bucket=bucket, Key="uploads/u1/a", Body=b"swapped")
    with pytest.raises(ClientError) as refused:
        s3.copy_object(
            Bucket=bucket, Key="inputs/x", CopySource={"Bucket": bucket, "Key": "uploads/u1/a"}, CopySourceIfMatch=etag
        )
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="inputs/")
    now = s3.head_object(Bucket=bucket, Key="uploads/u1/a")["ETag"]
    for wanted in (now, now.strip('"')):  # S3 compares the ETag with or without its quotes
        s3.copy_object(
            Bucket=bucket,
            Key="inputs/x",
            CopySource={"Bucket": bucket, "Key": "uploads/u1/a"},
            CopySourceIfMatch=wanted,
        )
    assert s3.get_object(Bucket=bucket, Key="inputs/x")["Body"].read() == b"swapped"


def test_the_adapter_reads_and_seals_only_the_version_it_was_given(s3: Any, patched: None) -> None:
    bucket = _bucket(s3)
    adapter = S3UploadBucket(s3, bucket)
    s3.put_object(Bucket=bucket, Key="uploads/u1/a", Body=b"0123456789")
    head = adapter.head(bucket, "uploads/u1/a")
    assert head is not None and head.size == 10 and head.etag.startswith('"')
    assert adapter.head(bucket, "uploads/u1/missing") is None
    assert adapter.read(bucket, "uploads/u1/a", 2, 3, head.etag) == b"234"
    assert adapter.read(bucket, "uploads/u1/a", 10, 5, head.etag) == b""  # past the end
    assert adapter.seal(bucket, "uploads/u1/a", head.etag, "inputs/u1/a/1")
    assert s3.get_object(Bucket=bucket, Key="inputs/u1/a/1")["Body"].read() == b"0123456789"
    s3.put_object(Bucket=bucket, Key="uploads/u1/a", Body=b"9876543210")  # POSTed again, same size
    with pytest.raises(UploadChanged):
        adapter.read(bucket, "uploads/u1/a", 0, 4, head.etag)
    assert not adapter.seal(bucket, "uploads/u1/a", head.etag, "inputs/u1/a/2")
    assert not adapter.seal(bucket, "uploads/u1/gone", head.etag, "inputs/u1/a/3")
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="inputs/")["Contents"]) == [
        "inputs/u1/a/1"
    ]


def test_the_validator_on_moto_seals_the_checked_bytes_and_a_swap_mid_check_seals_nothing(
    s3: Any, endpoint: str, patched: None
) -> None:
    bucket = _bucket(s3)
    dynamodb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
    table = f"uploads-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb, table, SamTemplate.load().table_specs()["JobsTable"])
    store = DynamoStore(dynamodb, table)
    data = png()
    upload = _pending("upl_" + "2" * 26, "image/png", len(data), user_id="u/1")
    _put(store, upload)
    s3.put_object(Bucket=bucket, Key=upload.s3_key, Body=data)

    class SwapBeforeSeal(S3UploadBucket):
        def seal(self, bucket: str, key: str, etag: str, sealed_key: str) -> bool:
            s3.put_object(Bucket=bucket, Key=key, Body=b"\x00" * len(data))  # the app POSTs again
            return super().seal(bucket, key, etag, sealed_key)

    assert UploadValidator(store, SwapBeforeSeal(s3, bucket)).check(bucket, upload.s3_key) == "superseded"
    assert store.get_upload("u/1", upload.id).status == UploadStatus.PENDING
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="inputs/")

    s3.put_object(Bucket=bucket, Key=upload.s3_key, Body=data)  # and once more, a real PNG
    assert UploadValidator(store, S3UploadBucket(s3, bucket)).check(bucket, upload.s3_key) == "ready"
    done = store.get_upload("u/1", upload.id)
    assert done is not None and done.input_key is not None and done.input_key.startswith(f"inputs/u%2F1/{upload.id}/")
    assert s3.get_object(Bucket=bucket, Key=done.input_key)["Body"].read() == data


# --- the upload's one write counts against the user's request rate -------------------------------


def test_create_upload_writes_the_record_and_the_rate_state_both_or_neither_and_returns_the_state(
    endpoint: str,
) -> None:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
    table = f"uploads-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb, table, SamTemplate.load().table_specs()["JobsTable"])
    store = DynamoStore(dynamodb, table)
    limits, now = UserLimits(requests_per_minute=6, burst=2), 1_800_000_000_000

    def upload(n: int) -> Upload:
        return _pending("upl_" + str(n) * 26, "image/png", 10, user_id="u1")

    store.create_upload(upload(1), Balance(), admit_unread(limits, now))  # idle: no balance item yet
    assert store.get_balance("u1").rl_tat_ms == now + 10_000
    with pytest.raises(BalanceChanged) as moved:  # not idle any more: the refused write says why
        store.create_upload(upload(2), Balance(), admit_unread(limits, now))
    assert moved.value.seen is not None and moved.value.seen.rl_tat_ms == now + 10_000
    assert store.get_upload("u1", upload(2).id) is None  # neither written
    usage = admit(limits, moved.value.seen, now)
    with pytest.raises(BalanceChanged):  # decided on a stale state: refused, nothing written
        store.create_upload(upload(2), Balance(rl_tat_ms=now), usage)
    store.create_upload(upload(2), moved.value.seen, usage)
    assert store.get_upload("u1", upload(2).id) is not None and store.get_balance("u1").rl_tat_ms == now + 20_000
    store.create_upload(upload(2), Balance(), Usage(1))  # the record exists: nothing changes
    assert store.get_balance("u1").rl_tat_ms == now + 20_000

"""Media transfer adapters: GuardedMediaSource -> S3VideoStore on moto S3, against a local HTTP server.

The "CDN" is a ThreadingHTTPServer on 127.0.0.1 (port 0) that plays every way a media URL
can go wrong. The allow list is that server's ``127.0.0.1:<port>`` with https not required;
a second server on another port serves a perfectly good video, so a redirect there fails
because of the guard, not the network.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws
from moto.server import ThreadedMotoServer

from videogen.adapters.events import EventBridgePublisher, EventPublishError
from videogen.adapters.media import GuardedMediaSource, S3VideoStore
from videogen.domain.errors import MediaRejected, MediaTransferError
from videogen.domain.models import StoredVideo

MIB = 1024 * 1024
PART = 5 * MIB  # S3's minimum part size: keeps the multipart cases small
CAP = 13 * MIB  # max_bytes in these tests
BUCKET = "videogen-test-videos"
KEY = "videos/job_1.mp4"

SMALL = random.Random(1).randbytes(300 * 1024)
BIG = random.Random(2).randbytes(12 * MIB + 12345)  # three parts of PART


# --- the local "CDN" ----------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    other_netloc = ""  # set by the fixture: a second, healthy server NOT on the allow list
    other: _Server
    hits: list[str]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-body is the point of several scenarios


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str | None = "video/mp4", **headers: str) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self._send(302, content_type="text/plain", Location=location)

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        own = f"127.0.0.1:{self.server.server_address[1]}"
        try:
            match self.path:
                case "/video.mp4":
                    self._send(200, SMALL, "video/mp4; codecs=avc1")
                case "/big.mp4":
                    self._send(200, BIG)
                case "/octet/clip.mp4":
                    self._send(200, SMALL, "application/octet-stream")
                case "/redirect-ok":
                    self._redirect(f"http://{own}/video.mp4")
                case "/redirect-relative":
                    self._redirect("/big.mp4")
                case "/redirect-other-port":
                    self._redirect(f"http://{self.server.other_netloc}/video.mp4")
                case "/redirect-localhost":
                    self._redirect(f"http://localhost:{self.server.server_address[1]}/video.mp4")
                case "/redirect-loop":
                    self._redirect("/redirect-loop")
                case "/oversize-declared":
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Content-Length", str(CAP + 1))
                    self.end_headers()
                    self.wfile.write(b"\0" * 1024)  # the client must give up before reading
                    self.close_connection = True
                case "/oversize-chunked":
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    block = b"\1" * MIB
                    for _ in range(CAP // MIB + 3):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                    self.wfile.write(b"0\r\n\r\n")
                case "/truncated":
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Content-Length", str(len(BIG)))
                    self.end_headers()
                    self.wfile.write(BIG[: len(BIG) // 2])
                    self.close_connection = True
                case "/slow":
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Content-Length", str(len(SMALL)))
                    self.end_headers()
                    self.wfile.write(SMALL[:1000])
                    self.wfile.flush()
                    time.sleep(1.0)  # the client's read timeout is 0.3 s
                    self.wfile.write(SMALL[1000:])
                case "/html":
                    self._send(200, b"<html>not a video</html>", "text/html; charset=utf-8")
                case "/no-type":
                    self._send(200, SMALL, content_type=None)
                case "/empty.mp4":
                    self._send(200, b"")
                case "/missing":
                    self._send(404, b"not found", "text/plain")
                case "/unavailable":
                    self._send(503, b"try later", "text/plain")
                case _:
                    self._send(404, b"", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client walked away, as it should


def _serve() -> _Server:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.hits = []
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def cdn() -> Iterator[_Server]:
    main, other = _serve(), _serve()
    main.other, main.other_netloc = other, f"127.0.0.1:{other.server_address[1]}"
    yield main
    for server in (main, other):
        server.shutdown()
        server.server_close()


def _netloc(server: _Server) -> str:
    return f"127.0.0.1:{server.server_address[1]}"


def _url(server: _Server, path: str) -> str:
    return f"http://{_netloc(server)}{path}"


@pytest.fixture
def source(cdn: _Server) -> GuardedMediaSource:
    return GuardedMediaSource(frozenset({_netloc(cdn)}), require_https=False, max_bytes=CAP, timeout_s=5.0)


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def aws_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_ENV.items():
            mp.setenv(name, value)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        mp.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        yield


@pytest.fixture(scope="module")
def _moto(aws_env: None) -> Iterator[None]:
    with mock_aws():  # started once per module; each test gets a fresh bucket and client
        yield


@pytest.fixture
def s3(_moto: None) -> Iterator[Any]:
    client = boto3.client("s3", region_name="us-east-1")  # per test: tests register event hooks on it
    client.create_bucket(Bucket=BUCKET)
    yield client
    for upload in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        client.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def store(s3: Any) -> S3VideoStore:
    return S3VideoStore(s3, BUCKET, part_bytes=PART)


def assert_bucket_clean(s3: Any) -> None:
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def count_calls(s3: Any, operation: str) -> list[int]:
    calls: list[int] = []
    s3.meta.events.register(f"before-call.s3.{operation}", lambda **_: calls.append(1))
    return calls


# --- happy paths ------------------------------------------------------------------------------


def test_given_a_good_video_when_transferred_then_s3_holds_it_with_sha256_metadata(
    cdn: _Server, source: GuardedMediaSource, store: S3VideoStore, s3: Any
) -> None:
    stored = store.put_stream(KEY, source.open(_url(cdn, "/video.mp4")))

    expected = hashlib.sha256(SMALL).hexdigest()
    assert stored == StoredVideo(s3_key=KEY, sha256=expected, size_bytes=len(SMALL), content_type="video/mp4")
    head = s3.head_object(Bucket=BUCKET, Key=KEY)
    assert head["Metadata"] == {"sha256": expected}
    assert head["ContentType"] == "video/mp4"
    assert head["ContentLength"] == len(SMALL)
    assert head["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == SMALL
    assert store.head(KEY) == stored
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_given_a_video_over_one_part_when_transferred_then_multipart_upload_completes_with_metadata(
    cdn: _Server, source: GuardedMediaSource, store: S3VideoStore, s3: Any
) -> None:
    parts = count_calls(s3, "UploadPart")

    stored = store.put_stream(KEY, source.open(_url(cdn, "/big.mp4")))

    assert len(parts) == 3
    expected = hashlib.sha256(BIG).hexdigest()
    assert stored.sha256 == expected and stored.size_bytes == len(BIG)
    head = s3.head_object(Bucket=BUCKET, Key=KEY)
    assert head["Metadata"] == {"sha256": expected}
    assert (head["ContentType"], head["ServerSideEncryption"]) == ("video/mp4", "AES256")
    assert hashlib.sha256(s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()).hexdigest() == expected
    assert store.head(KEY) == stored
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [KEY]  # staging object gone
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


@pytest.mark.parametrize(("path", "body"), [("/redirect-ok", SMALL), ("/redirect-relative", BIG)])
def test_given_a_redirect_to_an_allowed_host_when_transferred_then_it_is_followed(
    cdn: _Server, source: GuardedMediaSource, store: S3VideoStore, s3: Any, path: str, body: bytes
) -> None:
    stored = store.put_stream(KEY, source.open(_url(cdn, path)))

    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert s3.head_object(Bucket=BUCKET, Key=KEY)["Metadata"]["sha256"] == stored.sha256


def test_given_octet_stream_when_transferred_then_tolerated_and_typed_from_the_extension(
    cdn: _Server, source: GuardedMediaSource, store: S3VideoStore
) -> None:
    stored = store.put_stream(KEY, source.open(_url(cdn, "/octet/clip.mp4")))

    assert stored.content_type == "video/mp4"
    assert stored.sha256 == hashlib.sha256(SMALL).hexdigest()


# --- every guard: the right error, nothing left behind ----------------------------------------


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/redirect-other-port", MediaRejected),  # 127.0.0.1:<other port> is healthy but not listed
        ("/redirect-localhost", MediaRejected),  # same port, other host name
        ("/redirect-loop", MediaRejected),  # more than max_redirects hops
        ("/oversize-declared", MediaRejected),  # Content-Length over the cap
        ("/oversize-chunked", MediaRejected),  # no Content-Length, grows past the cap (after 2 parts)
        ("/truncated", MediaTransferError),  # ends short of Content-Length (after 1 part)
        ("/html", MediaRejected),
        ("/no-type", MediaRejected),
        ("/empty.mp4", MediaRejected),
        ("/missing", MediaRejected),  # 404: final
        ("/unavailable", MediaTransferError),  # 503: retry later
    ],
)
def test_given_a_bad_media_url_when_transferred_then_the_right_error_and_nothing_stored(
    cdn: _Server, source: GuardedMediaSource, store: S3VideoStore, s3: Any, path: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        store.put_stream(KEY, source.open(_url(cdn, path)))

    assert_bucket_clean(s3)
    assert store.head(KEY) is None


def test_given_a_guard_on_headers_when_opened_then_rejected_before_the_body_is_read(
    cdn: _Server, source: GuardedMediaSource
) -> None:
    for path in ("/oversize-declared", "/html", "/missing", "/redirect-other-port"):
        with pytest.raises(MediaRejected):
            source.open(_url(cdn, path))
    assert cdn.other.hits == []  # the redirect target was never contacted


def test_given_a_stalled_body_when_transferred_then_transfer_error_and_upload_aborted(
    cdn: _Server, store: S3VideoStore, s3: Any
) -> None:
    impatient = GuardedMediaSource(frozenset({_netloc(cdn)}), require_https=False, max_bytes=CAP, timeout_s=0.3)

    with pytest.raises(MediaTransferError):
        store.put_stream(KEY, impatient.open(_url(cdn, "/slow")))

    assert_bucket_clean(s3)


@pytest.mark.parametrize(
    ("operation", "failing_call"),
    [("UploadPart", 2), ("CompleteMultipartUpload", 1), ("CopyObject", 1)],
)
def test_given_s3_fails_mid_transfer_when_transferred_then_transfer_error_and_nothing_left(
    cdn: _Server, source: GuardedMediaSource, store: S3VideoStore, s3: Any, operation: str, failing_call: int
) -> None:
    calls = count_calls(s3, operation)

    def fail(**_: Any) -> None:
        if len(calls) == failing_call:
            raise ConnectionResetError("S3 went away")

    s3.meta.events.register(f"before-call.s3.{operation}", fail)

    with pytest.raises(MediaTransferError):
        store.put_stream(KEY, source.open(_url(cdn, "/big.mp4")))

    assert_bucket_clean(s3)  # no final object, no staging object, no open upload


def test_given_a_good_video_at_the_key_when_a_later_transfer_fails_then_the_good_object_survives(
    cdn: _Server, source: GuardedMediaSource, store: S3VideoStore, s3: Any
) -> None:
    good = store.put_stream(KEY, source.open(_url(cdn, "/big.mp4")))

    def fail(**_: Any) -> None:
        raise ConnectionResetError("S3 went away")

    s3.meta.events.register("before-call.s3.CopyObject", fail)

    with pytest.raises(MediaTransferError):
        store.put_stream(KEY, source.open(_url(cdn, "/big.mp4")))

    assert store.head(KEY) == good
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [KEY]


def test_list_keys_names_every_object_under_the_prefix_over_pages(store: S3VideoStore, s3: Any) -> None:
    mine = [f"videos/job_1/{n}.mp4" for n in range(3)]
    for key in [*mine, "videos/job_10/x.mp4", "videos/job_2/y.mp4", "_staging/z"]:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")  # no sha256 metadata: listed all the same
    pages = count_calls(s3, "ListObjectsV2")

    def two_per_page(params: dict[str, Any], **_: Any) -> None:
        params["MaxKeys"] = 2

    s3.meta.events.register("provide-client-params.s3.ListObjectsV2", two_per_page)
    try:
        assert store.list_keys("videos/job_1/") == mine
        assert len(pages) == 2  # followed the continuation token
        assert store.list_keys("videos/job_3/") == []
    finally:
        s3.meta.events.unregister("provide-client-params.s3.ListObjectsV2", two_per_page)


def test_given_s3_fails_when_listing_then_transfer_error(store: S3VideoStore, s3: Any) -> None:
    def fail(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="http://s3.test")  # what botocore raises on a lost line

    s3.meta.events.register("before-call.s3.ListObjectsV2", fail)
    try:
        with pytest.raises(MediaTransferError):
            store.list_keys("videos/job_1/")
    finally:
        s3.meta.events.unregister("before-call.s3.ListObjectsV2", fail)


def test_given_http_while_https_is_required_then_rejected_without_a_request(cdn: _Server) -> None:
    strict = GuardedMediaSource(frozenset({_netloc(cdn)}), max_bytes=CAP, timeout_s=5.0)
    hits_before = len(cdn.hits)

    with pytest.raises(MediaRejected, match="scheme"):
        strict.open(_url(cdn, "/video.mp4"))

    assert len(cdn.hits) == hits_before


class _NoNetwork(requests.Session):
    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        raise AssertionError("a guard should have stopped this before connecting")


@pytest.mark.parametrize(
    "url",
    [
        "http://v3.fal.media/files/a/out.mp4",  # https required
        "ftp://v3.fal.media/files/a/out.mp4",
        "https://storage.googleapis.com/other-bucket/out.mp4",  # outside /falserverless/
        "https://storage.googleapis.com/falserverless/../other-bucket/out.mp4",
        "https://storage.googleapis.com/falserverless/%2e%2e/other-bucket/out.mp4",
        "https://storage.googleapis.com/falserverlessX/out.mp4",
        "https://user:pw@v3.fal.media/files/a/out.mp4",  # userinfo
        "https://v3.fal.media@evil.example/out.mp4",
        "https://v3.fal.media\\@evil.example/out.mp4",
        "https://v3.fal.media:8443/files/a/out.mp4",  # bare host entry = default port only
        "https://evil.example/out.mp4",
        "https://v3.fal.media.evil.example/out.mp4",
        "https://127.0.0.1/out.mp4",
        "https://v3.fal.media:99999/out.mp4",
        "https:///out.mp4",
        "https://v3.fal.media/files/a b.mp4",
        "",
    ],
)
def test_given_a_url_breaking_a_guard_when_opened_then_rejected_before_connecting(url: str) -> None:
    source = GuardedMediaSource(
        frozenset({"v3.fal.media", "fal.media", "storage.googleapis.com"}),
        max_bytes=CAP,
        timeout_s=1.0,
        session=_NoNetwork(),
    )

    with pytest.raises(MediaRejected):
        source.open(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://v3.fal.media/files/a/out.mp4",
        "https://V3.FAL.MEDIA:443/files/a/out.mp4",
        "https://storage.googleapis.com/falserverless/gallery/out.mp4",
    ],
)
def test_given_an_allowed_url_then_the_guards_pass(url: str) -> None:
    session = _Recording()
    source = GuardedMediaSource(
        frozenset({"v3.fal.media", "storage.googleapis.com"}), max_bytes=CAP, timeout_s=1.0, session=session
    )

    stream = source.open(url)

    assert session.urls == [url]  # the guards let it through to the one request
    assert b"".join(stream.chunks()) == SMALL and stream.content_type == "video/mp4"


class _Recording(requests.Session):
    """Answers every request with SMALL as a video, without a network; records the URLs asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.urls.append(str(url))
        answer = requests.Response()
        answer.status_code = 200
        answer.headers.update({"content-type": "video/mp4", "content-length": str(len(SMALL))})
        answer.raw = io.BytesIO(SMALL)
        return answer


# --- against a moto server (the local stack's S3): presign, head, delete ----------------------


def test_given_a_moto_server_endpoint_when_presigned_then_the_url_serves_the_video(
    cdn: _Server, source: GuardedMediaSource, aws_env: None
) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client("s3", region_name="us-east-1", endpoint_url=f"http://{host}:{port}")
        client.create_bucket(Bucket="videogen-presign-test")  # not BUCKET: moto's backend is shared in-process
        store = S3VideoStore(client, "videogen-presign-test", part_bytes=PART)

        stored = store.put_stream(KEY, source.open(_url(cdn, "/video.mp4")))
        url = store.presign(KEY, 600).url
        answer = requests.get(url, timeout=5)

        assert url.startswith(f"http://{host}:{port}/")
        assert answer.status_code == 200 and answer.content == SMALL
        assert store.head(KEY) == stored
        store.delete(KEY)
        assert store.head(KEY) is None
    finally:
        server.stop()


# --- EventBridgePublisher ---------------------------------------------------------------------


def test_given_a_bus_when_published_then_put_events_accepts_the_entry(_moto: None) -> None:
    events = boto3.client("events", region_name="us-east-1")
    events.create_event_bus(Name="videogen-media-test")

    EventBridgePublisher(events, "videogen-media-test").publish(
        "VideoJobCompleted", {"job_id": "job_1", "credits": Decimal("5"), "ratio": Decimal("0.5")}
    )


def test_given_a_failed_entry_when_published_then_raises() -> None:
    class _Events:
        entries: list[dict[str, Any]] = []

        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            self.entries.extend(Entries)
            return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "boom"}]}

    fake = _Events()
    publisher = EventBridgePublisher(fake, "videogen", source="videogen.test")  # type: ignore[arg-type]

    with pytest.raises(EventPublishError, match="InternalFailure"):
        publisher.publish("VideoJobFailed", {"job_id": "job_1", "credits": Decimal("3")})

    assert fake.entries == [
        {
            "EventBusName": "videogen",
            "Source": "videogen.test",
            "DetailType": "VideoJobFailed",
            "Detail": '{"job_id":"job_1","credits":3}',
        }
    ]

"""GuardedMediaSource's answer guards on a stubbed HTTP session (no network): status (retryable 4xx
and 5xx vs final), content type, Content-Length forms, content codings, the body's own checks,
redirects, transport errors — and what a CDN 429 means for a finished job (it is kept, not failed).

MediaRejected is final (the job fails with a refund); MediaTransferError means "try again later".
"""

from __future__ import annotations

import io
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from tests.fakes.system import System
from videogen.adapters.media import GuardedMediaSource
from videogen.domain.errors import MediaRejected, MediaTransferError
from videogen.domain.models import JobStatus
from videogen.services.completion import JobFinisher

HOST = "v3.fal.media"
URL = f"https://{HOST}/files/a/out.mp4"
BODY = b"0123456789A"  # 11 bytes
CAP = 64


def response(
    status: int = 200, body: bytes = BODY, headers: dict[str, str] | None = None, *, broken: bool = False
) -> requests.Response:
    """A real ``requests.Response`` over an in-memory body (``broken``: the read fails midway)."""
    answer = requests.Response()
    answer.status_code = status
    answer.headers = CaseInsensitiveDict(
        {"content-type": "video/mp4", "content-length": str(len(body))} if headers is None else headers
    )
    answer.raw = _Breaking(body) if broken else io.BytesIO(body)
    answer.url = URL
    return answer


class _Breaking(io.BytesIO):
    def read(self, *args: Any, **kwargs: Any) -> bytes:
        if self.tell() > 0:
            raise requests.exceptions.ConnectionError("connection reset by peer")
        return super().read(4)


class StubSession:
    """Answers each GET from a script per URL (a response or an exception); records every call."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def script(self, url: str, *answers: Any) -> StubSession:
        self.answers.setdefault(url, []).extend(answers)
        return self

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        self.calls.append((url, kwargs))
        answer = self.answers[url].pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]


def source(session: StubSession, **kwargs: Any) -> GuardedMediaSource:
    return GuardedMediaSource(
        frozenset({HOST}),
        max_bytes=CAP,
        timeout_s=5.0,
        session=session,  # type: ignore[arg-type]
        chunk_bytes=4,
        **kwargs,
    )


def opened(answer: requests.Response, url: str = URL) -> Any:
    return source(StubSession().script(url, answer)).open(url)


def read(stream: Any) -> bytes:
    return b"".join(stream.chunks())


# --- the request ----------------------------------------------------------------------------------


def test_the_request_streams_follows_no_redirect_itself_asks_for_identity_and_has_a_timeout() -> None:
    session = StubSession().script(URL, response())
    stream = source(session).open(URL)
    assert read(stream) == BODY and stream.url == URL
    [(url, kwargs)] = session.calls
    assert url == URL
    assert kwargs["stream"] is True and kwargs["allow_redirects"] is False and kwargs["timeout"] == 5.0
    assert kwargs["headers"]["Accept-Encoding"] == "identity"


# --- status ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_a_retryable_status_is_a_transfer_error(status: int) -> None:
    with pytest.raises(MediaTransferError, match=str(status)):
        opened(response(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413, 422, 451, 499, 304, 100])
def test_a_final_status_is_rejected(status: int) -> None:
    with pytest.raises(MediaRejected, match=str(status)):
        opened(response(status))


@pytest.mark.parametrize("status", [200, 203, 206])
def test_a_2xx_is_accepted(status: int) -> None:
    assert read(opened(response(status))) == BODY


def test_a_rejected_answer_is_closed() -> None:
    answer = response(404)
    closed: list[bool] = []
    answer.close = lambda: closed.append(True)  # type: ignore[method-assign]
    with pytest.raises(MediaRejected):
        opened(answer)
    assert closed


# --- content type ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "url", "stored_as"),
    [
        ("video/mp4", URL, "video/mp4"),
        ("video/mp4; codecs=avc1", URL, "video/mp4"),
        ("VIDEO/MP4", URL, "video/mp4"),
        (" video/webm ", URL, "video/webm"),
        ("video/quicktime", URL, "video/quicktime"),
        ("application/octet-stream", URL, "video/mp4"),  # typed from the extension
        ("application/octet-stream; charset=binary", f"https://{HOST}/files/a/out.webm", "video/webm"),
        ("application/octet-stream", f"https://{HOST}/files/a/out.bin", "application/octet-stream"),
        ("application/octet-stream", f"https://{HOST}/files/a/out.txt", "application/octet-stream"),
    ],
)
def test_a_video_type_or_octet_stream_is_accepted_and_typed(header: str, url: str, stored_as: str) -> None:
    stream = opened(response(headers={"content-type": header, "content-length": "11"}), url)
    assert stream.content_type == stored_as and read(stream) == BODY


@pytest.mark.parametrize(
    "header", ["", "text/html", "image/png", "application/json", "video/", "videos/mp4", "video", "multipart/x"]
)
def test_any_other_content_type_is_rejected(header: str) -> None:
    headers = {"content-length": "11"} if header == "" else {"content-type": header, "content-length": "11"}
    with pytest.raises(MediaRejected, match="content type"):
        opened(response(headers=headers))


# --- Content-Length -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["11", " 11 ", "11, 11", "11,11", "11 , 11 ,11"])
def test_a_valid_content_length_is_the_declared_size(value: str) -> None:
    stream = opened(response(headers={"content-type": "video/mp4", "content-length": value}))
    assert stream.declared_size == 11 and read(stream) == BODY


@pytest.mark.parametrize("value", ["11, 12", "-11", "+11", "1e1", "0x0b", "abc", "", ",", "11;", "1 1", "²", "١١"])
def test_an_invalid_content_length_is_rejected(value: str) -> None:
    with pytest.raises(MediaRejected, match="Content-Length"):
        opened(response(headers={"content-type": "video/mp4", "content-length": value}))


def test_a_declared_size_over_the_cap_is_rejected_before_the_body_is_read() -> None:
    with pytest.raises(MediaRejected, match="cap"):
        opened(response(headers={"content-type": "video/mp4", "content-length": str(CAP + 1)}))


def test_a_declared_size_at_the_cap_is_accepted() -> None:
    body = b"x" * CAP
    assert read(opened(response(body=body))) == body


def test_a_declared_empty_body_is_rejected() -> None:
    with pytest.raises(MediaRejected, match="empty"):
        opened(response(body=b"", headers={"content-type": "video/mp4", "content-length": "0"}))


def test_without_a_content_length_the_size_is_undeclared_and_the_body_counted() -> None:
    stream = opened(response(headers={"content-type": "video/mp4"}))
    assert stream.declared_size is None and read(stream) == BODY


# --- content codings ------------------------------------------------------------------------------


@pytest.mark.parametrize(("encoding", "declared"), [(None, 11), ("identity", 11), ("", 11), (" Identity ", 11)])
def test_without_a_content_coding_the_header_counts_the_body(encoding: str | None, declared: int) -> None:
    headers = {"content-type": "video/mp4", "content-length": "11"}
    if encoding is not None:
        headers["content-encoding"] = encoding
    assert opened(response(headers=headers)).declared_size == declared


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate", "GZIP "])
def test_with_a_content_coding_the_header_counts_encoded_bytes_so_no_size_is_declared(encoding: str) -> None:
    headers = {"content-type": "video/mp4", "content-length": "11", "content-encoding": encoding}
    stream = opened(response(headers=headers))
    assert stream.declared_size is None  # the decoded body may be longer: not a short body
    assert read(stream) == BODY


# --- the body -------------------------------------------------------------------------------------


def test_a_body_shorter_than_declared_is_a_transfer_error() -> None:
    stream = opened(response(body=BODY[:5], headers={"content-type": "video/mp4", "content-length": "11"}))
    with pytest.raises(MediaTransferError, match="5 of 11"):
        read(stream)


def test_a_body_longer_than_declared_is_a_transfer_error() -> None:
    stream = opened(response(body=BODY + b"more", headers={"content-type": "video/mp4", "content-length": "11"}))
    with pytest.raises(MediaTransferError, match="15 of 11"):
        read(stream)


def test_an_undeclared_body_growing_past_the_cap_is_rejected() -> None:
    stream = opened(response(body=b"x" * (CAP + 1), headers={"content-type": "video/mp4"}))
    with pytest.raises(MediaRejected, match="cap"):
        read(stream)


def test_an_undeclared_empty_body_is_rejected() -> None:
    with pytest.raises(MediaRejected, match="empty"):
        read(opened(response(body=b"", headers={"content-type": "video/mp4"})))


def test_a_body_that_breaks_off_is_a_transfer_error_and_the_stream_is_closed() -> None:
    stream = opened(response(broken=True))
    with pytest.raises(MediaTransferError, match="broke off"):
        read(stream)
    assert stream._closed  # the response went back to the pool


def test_a_stream_is_read_once() -> None:
    stream = opened(response())
    read(stream)
    with pytest.raises(RuntimeError):
        stream.chunks()


# --- redirects and transport errors ---------------------------------------------------------------


def test_a_redirect_to_an_allowed_url_is_followed_and_checked_again() -> None:
    target = f"https://{HOST}/files/b/out.mp4"
    session = StubSession().script(URL, response(302, b"", {"location": "/files/b/out.mp4"})).script(target, response())
    stream = source(session).open(URL)
    assert [u for u, _ in session.calls] == [URL, target] and stream.url == target and read(stream) == BODY


def test_a_redirect_off_the_allow_list_is_rejected_before_contacting_it() -> None:
    session = StubSession().script(URL, response(302, b"", {"location": "https://evil.example/out.mp4"}))
    with pytest.raises(MediaRejected, match="allow list"):
        source(session).open(URL)
    assert [u for u, _ in session.calls] == [URL]


def test_more_redirects_than_allowed_are_rejected() -> None:
    session = StubSession().script(URL, *[response(302, b"", {"location": URL}) for _ in range(3)])
    with pytest.raises(MediaRejected, match="redirected more than 2"):
        source(session, max_redirects=2).open(URL)
    assert len(session.calls) == 3


@pytest.mark.parametrize(
    "error",
    [
        requests.exceptions.ConnectionError("refused"),
        requests.exceptions.Timeout("slow"),
        requests.exceptions.ChunkedEncodingError("bad chunk"),
        OSError("network unreachable"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_transport_error_is_a_transfer_error(error: Exception) -> None:
    with pytest.raises(MediaTransferError):
        source(StubSession().script(URL, error)).open(URL)


@pytest.mark.parametrize(
    "error",
    [
        requests.exceptions.InvalidURL("x"),
        requests.exceptions.InvalidSchema("x"),
        requests.exceptions.MissingSchema("x"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_url_the_http_client_refuses_is_rejected(error: Exception) -> None:
    with pytest.raises(MediaRejected):
        source(StubSession().script(URL, error)).open(URL)


# --- what it means for a finished job -------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503, 408])
def test_given_the_cdn_says_not_now_then_the_finished_job_is_kept_for_a_retry(system: System, status: int) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    cdn = source(StubSession().script(URL, response(status), response()))
    finisher = JobFinisher(system.store, cdn, system.videos, system.events)
    with pytest.raises(MediaTransferError):
        finisher.complete_from_url(job, URL)
    kept = system.job(job.id)
    assert kept.status == JobStatus.SUBMITTED and system.store.refunds(job.id) == 0 and system.videos.keys() == []
    done = finisher.complete_from_url(job, URL)  # the next delivery / look
    assert done.status == JobStatus.COMPLETED and system.videos.objects[done.video.s3_key][0] == BODY  # type: ignore[union-attr]


@pytest.mark.parametrize("status", [404, 403, 410])
def test_given_the_cdn_refuses_for_good_then_the_job_fails_with_one_refund(system: System, status: int) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    finisher = JobFinisher(
        system.store, source(StubSession().script(URL, response(status))), system.videos, system.events
    )
    failed = finisher.complete_from_url(job, URL)
    assert failed.status == JobStatus.FAILED and failed.error and failed.error.code == "media_rejected"
    assert system.store.refunds(job.id) == 1

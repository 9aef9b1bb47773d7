"""The PyAV media adapter on real MP4s in moto's S3, and the media function's handler on a real
"Job Completed" event with the DynamoDB store (resources from template.yaml).

Clips: the fal simulator's real H.264 MP4 (320x240, 24 fps, 2 s, no audio), one made here with
imageio-ffmpeg that starts with half a second of black and has an AAC track, the simulator's MP4
padded to 24 MiB (what the CDN serves for a large ``video_bytes``), bytes that are no video, an
empty object and a missing one.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import boto3
import imageio_ffmpeg
import pytest
from moto import mock_aws

from devstack.falsim.media import padded_chunks, sample_mp4
from devstack.provision import provision
from devstack.template import SamTemplate
from tests.fakes import make_job
from tests.fakes.jobs import next_usage
from videogen.adapters.av_media import PyAvMedia, mean_luma
from videogen.adapters.dynamo import DynamoStore
from videogen.domain.errors import MediaUndecodable, VideoMissing
from videogen.domain.media import POSTER_MIN_LUMA, poster_key
from videogen.domain.models import JobStatus, StoredVideo
from videogen.services.poster import PosterMaker

MIB = 1024 * 1024
BLACK_THEN_PATTERN = "color=c=black:s=640x360:r=25:d=0.5[b];testsrc=s=640x360:r=25:d=1.5[t];[b][t]concat=n=2:v=1:a=0"


def _ffmpeg(target: Path, *args: str) -> bytes:
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-y", *args, str(target)], check=True, timeout=60)
    return target.read_bytes()


@pytest.fixture(scope="module")
def black_start(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """0.5 s of black, then 1.5 s of the test pattern; 640x360 at 25 fps, with a 440 Hz AAC track."""
    return _ffmpeg(
        tmp_path_factory.mktemp("clips") / "black-start.mp4",
        "-f", "lavfi", "-i", BLACK_THEN_PATTERN,
        "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "-movflags", "+faststart",
    )  # fmt: skip


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp, mock_aws():
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        resources = provision(SamTemplate.load(), prefix="media", region="us-east-1")
        yield {
            "s3": boto3.client("s3", region_name="us-east-1"),
            "db": boto3.client("dynamodb", region_name="us-east-1"),
            "bucket": resources.bucket_name,
            "table": resources.table_name,
        }


def _put(aws: dict[str, Any], key: str, data: bytes) -> str:
    aws["s3"].put_object(Bucket=aws["bucket"], Key=key, Body=data, ContentType="video/mp4")
    return key


def _poster(aws: dict[str, Any], key: str) -> tuple[bytes, str]:
    answer = aws["s3"].get_object(Bucket=aws["bucket"], Key=key)
    return answer["Body"].read(), answer["ContentType"]


def _decoded(jpeg: bytes) -> av.VideoFrame:
    with av.open(io.BytesIO(jpeg)) as image:
        return next(image.decode(video=0))


def test_the_simulators_mp4_is_measured_from_the_file_and_gets_a_jpeg_poster(aws: dict[str, Any]) -> None:
    media = PyAvMedia(aws["s3"], aws["bucket"])
    key = _put(aws, "videos/vid_a/a.mp4", sample_mp4())
    found = media.make_poster(key, poster_key(key))
    assert (found.duration_s, found.width, found.height, found.fps, found.has_audio) == (2.0, 320, 240, 24.0, False)
    assert found.poster_key == "videos/vid_a/a.mp4.poster.jpg"
    jpeg, content_type = _poster(aws, found.poster_key)
    assert jpeg[:2] == b"\xff\xd8" and content_type == "image/jpeg"
    frame = _decoded(jpeg)
    assert (frame.width, frame.height) == (320, 240) and mean_luma(frame) >= POSTER_MIN_LUMA
    assert media.last_pick is not None and media.last_pick[0] == 0.0  # its first frame is bright


def test_black_first_frames_are_skipped_and_the_audio_track_is_seen(aws: dict[str, Any], black_start: bytes) -> None:
    media = PyAvMedia(aws["s3"], aws["bucket"])
    key = _put(aws, "videos/vid_b/b.mp4", black_start)
    found = media.make_poster(key, poster_key(key))
    assert (found.width, found.height, found.fps, found.has_audio) == (640, 360, 25.0, True)
    assert 1.9 <= found.duration_s <= 2.1  # the container's duration (AAC priming may add a few ms)
    assert media.last_pick is not None
    at_s, luma = media.last_pick
    assert at_s == pytest.approx(0.5, abs=0.05) and luma >= POSTER_MIN_LUMA  # the first frame after the black
    frame = _decoded(_poster(aws, found.poster_key)[0])
    assert mean_luma(frame) >= POSTER_MIN_LUMA


def test_a_large_video_is_read_by_ranges_not_downloaded(aws: dict[str, Any]) -> None:
    big = b"".join(padded_chunks(sample_mp4(), 24 * MIB))
    key = _put(aws, "videos/vid_c/c.mp4", big)
    media = PyAvMedia(aws["s3"], aws["bucket"])
    found = media.make_poster(key, poster_key(key))
    assert (found.width, found.height) == (320, 240)
    reader = media.last_reader
    assert reader is not None and reader.size == len(big)
    assert reader.bytes_fetched <= 2 * MIB  # the index and the first frames: not the 24 MiB


@pytest.mark.parametrize(
    ("data", "error"),
    [(b"certainly not a video " * 100, MediaUndecodable), (b"", MediaUndecodable), (None, VideoMissing)],
    ids=["garbage", "empty", "missing"],
)
def test_what_is_no_video_is_a_final_error_and_stores_no_poster(
    aws: dict[str, Any], data: bytes | None, error: type[Exception]
) -> None:
    key = f"videos/vid_bad/{len(data) if data is not None else 'none'}.mp4"
    if data is not None:
        _put(aws, key, data)
    with pytest.raises(error):
        PyAvMedia(aws["s3"], aws["bucket"]).make_poster(key, poster_key(key))
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=aws["bucket"], Prefix=poster_key(key))


def test_the_service_on_dynamodb_records_the_media_once_and_leaves_the_job_completed(aws: dict[str, Any]) -> None:
    store = DynamoStore(aws["db"], aws["table"])
    user = "media-user"
    store.grant(user, 5, "g-media")
    job = make_job(user_id=user, credits=5)
    seen, _, _ = store.read_for_submit(user, "k-media")
    store.create_job(
        job,
        idempotency_key="k-media",
        fingerprint="fp",
        answer={},
        seen=seen,
        usage=next_usage(seen),
        max_active=5,
        idem_ttl_s=86400,
    )
    key = _put(aws, f"videos/{job.id}/d.mp4", sample_mp4())
    done = store.complete(job, StoredVideo(s3_key=key, sha256="00" * 32, size_bytes=len(sample_mp4())))
    service = PosterMaker(store, PyAvMedia(aws["s3"], aws["bucket"]))
    assert service.run(job.id) == "poster_stored"
    after = store.get_job(job.id)
    assert after is not None and after.video is not None and after.video.media is not None
    assert after.status == JobStatus.COMPLETED and after.updated_at == done.updated_at
    assert after.video.media.poster_key == poster_key(key)
    assert service.run(job.id) == "already_done"  # a redelivered event
    assert store.get_balance(user).balance == 0  # charged once, never refunded

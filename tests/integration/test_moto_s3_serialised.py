"""moto's S3, made as atomic as S3 (devstack/moto_patches.py): a listing while another thread
overwrites a key it lists. Unpatched, moto computes the listed key's ETag from a buffer the
overwrite has just closed ("I/O operation on closed file") — the 8-way webhook/poll race met it
when the media function wrote a poster beside the video being found."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack import moto_patches

BUCKET = "serialised"
ROUNDS = 200


@pytest.fixture
def s3() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp, mock_aws():
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        moto_patches.apply()
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_listing_while_a_key_is_overwritten_sees_every_key_whole(s3: Any) -> None:
    client = s3  # botocore clients are thread-safe
    errors: list[BaseException] = []
    stop = threading.Event()

    def overwrite(name: str) -> None:
        try:
            for i in range(ROUNDS):
                client.put_object(Bucket=BUCKET, Key=f"videos/{name}", Body=bytes([i % 256]) * 4096)
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def list_all() -> None:
        try:
            while not stop.is_set():
                listed = client.list_objects_v2(Bucket=BUCKET, Prefix="videos/")
                for item in listed.get("Contents", []):
                    assert item["ETag"] and item["Size"] == 4096
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=overwrite, args=(n,)) for n in ("a.mp4", "a.mp4.poster.jpg")]
    threads += [threading.Thread(target=list_all) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]

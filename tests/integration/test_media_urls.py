"""Media URLs an app can cache, against moto and the real handlers: the windowed S3 URL serves the
object and byte ranges (206, the right bytes) from a moto server, repeated reads of a job through
the real API handler answer the same URL and expiry; the template's media CDN (CloudFront, origin
access control, key group, the signing key's read) exists only with MediaCdn=on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from moto.server import ThreadedMotoServer

from devstack import iam
from devstack.template import SamTemplate
from videogen.adapters.media import S3VideoStore
from videogen.adapters.media_urls import S3WindowedUrls, client_credentials

WINDOW_S = 3600
TTL_S = 600
BODY = bytes(range(256)) * 64  # 16 KiB, every offset recognisable
KEY = "videos/vid_1/movie clip.mp4"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=f"http://{host}:{port}",
            config=Config(signature_version="s3v4"),
        )
        client.create_bucket(Bucket="videogen-media-urls")  # its own: moto's backend is shared in-process
        client.put_object(Bucket="videogen-media-urls", Key=KEY, Body=BODY, ContentType="video/mp4")
        yield client
    finally:
        server.stop()


def test_the_windowed_url_serves_the_video_and_byte_ranges_and_stays_the_same_in_its_window(moto_s3: Any) -> None:
    now = datetime.now(UTC)
    clock = Clock(now)
    urls = S3WindowedUrls(moto_s3, "videogen-media-urls", client_credentials(moto_s3), window_s=WINDOW_S, clock=clock)
    store = S3VideoStore(moto_s3, "videogen-media-urls", urls=urls)

    first = store.presign(KEY, TTL_S)
    clock.now = now + timedelta(seconds=1)
    assert store.presign(KEY, TTL_S) == first  # one URL and expiry per window
    assert first.expires_at - now >= timedelta(seconds=TTL_S)

    whole = requests.get(first.url, timeout=5)
    assert (whole.status_code, whole.content) == (200, BODY)
    assert whole.headers.get("accept-ranges") == "bytes"

    ranged = requests.get(first.url, headers={"Range": "bytes=1000-4999"}, timeout=5)
    assert ranged.status_code == 206
    assert ranged.content == BODY[1000:5000]
    assert ranged.headers["content-range"] == f"bytes 1000-4999/{len(BODY)}"
    tail = requests.get(first.url, headers={"Range": "bytes=-100"}, timeout=5)
    assert (tail.status_code, tail.content) == (206, BODY[-100:])

    clock.now = now + timedelta(seconds=WINDOW_S)  # the next window: a new URL, which works too
    later = store.presign(KEY, TTL_S)
    assert later.url != first.url
    assert requests.get(later.url, headers={"Range": "bytes=0-9"}, timeout=5).content == BODY[:10]


def test_repeated_reads_of_a_job_through_the_api_handler_answer_the_same_video_url(stack_sfn: Any) -> None:
    stack = stack_sfn
    token = stack.user(credits=50)
    job_id = stack.submit(token).json["job"]["id"]
    stack.wait_status(job_id, {"completed"})
    reads = []
    for _ in range(2):  # a read on each side of a window boundary would differ: read again then
        reads = [stack.request("GET", f"/v1/videos/{job_id}", token=token).json["video"] for _ in range(3)]
        listed = stack.request("GET", "/v1/videos", token=token).json["items"][0]["video"]
        if len({r["url"] for r in reads}) == 1:
            break
    assert len({(r["url"], r["expires_at"]) for r in [*reads, listed]}) == 1
    expires = datetime.fromisoformat(reads[0]["expires_at"])
    assert expires - datetime.now(UTC) >= timedelta(seconds=3600 - 60)  # the default TTL, whatever the window

    served = requests.get(reads[0]["url"], headers={"Range": "bytes=0-99"}, timeout=10)
    assert served.status_code == 206 and len(served.content) == 100


# --- the template's optional media CDN --------------------------------------------------------------

CDN_RESOURCES = {
    "MediaCdnOriginAccessControl": "AWS::CloudFront::OriginAccessControl",
    "MediaCdnUrlKey": "AWS::CloudFront::PublicKey",
    "MediaCdnKeyGroup": "AWS::CloudFront::KeyGroup",
    "MediaCdnDistribution": "AWS::CloudFront::Distribution",
}
KEY_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:videogen/cdn-key-AbC123"
FAL_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:videogen/fal-key-AbC123"


def test_the_media_cdn_exists_only_when_on_and_is_reachable_only_through_signed_urls() -> None:
    template = SamTemplate.load()
    assert template.parameters["MediaCdn"]["Default"] == "off"
    for name, kind in CDN_RESOURCES.items():
        assert template.resources[name]["Type"] == kind
        assert template.resources[name]["Condition"] == "HasMediaCdn"
    assert template.data["Outputs"]["MediaCdnDomain"]["Condition"] == "HasMediaCdn"
    assert template.condition("HasMediaCdn", {}) is False
    assert template.condition("HasMediaCdn", {"MediaCdn": "on"}) is True

    distribution = template.resources["MediaCdnDistribution"]["Properties"]["DistributionConfig"]
    behavior = distribution["DefaultCacheBehavior"]
    assert behavior["TrustedKeyGroups"] == [{"Ref": "MediaCdnKeyGroup"}]  # signed URLs only
    assert behavior["ViewerProtocolPolicy"] == "https-only"
    assert distribution["Origins"][0]["OriginAccessControlId"] == {"Fn::GetAtt": ["MediaCdnOriginAccessControl", "Id"]}

    # the bucket lets the distribution (and only it) read videos, only when on
    policy = template.resources["VideosBucketPolicy"]["Properties"]["PolicyDocument"]
    refs = {"VideosBucket.Arn": "arn:aws:s3:::bucket", "MediaCdnDistribution": "E123"}
    off = template.resolve(policy, refs)["Statement"]
    on = template.resolve(policy, {**refs, "MediaCdn": "on"})["Statement"]
    assert [s["Sid"] for s in off] == ["DenyInsecureTransport"]
    (cdn,) = [s for s in on if s["Sid"] == "MediaCdnReadsVideos"]
    assert cdn["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert cdn["Condition"]["StringEquals"]["AWS:SourceArn"] == "arn:aws:cloudfront::123456789012:distribution/E123"

    # the functions learn the distribution only when on (else S3 presigned URLs)
    env = template.data["Globals"]["Function"]["Environment"]["Variables"]
    cdn_env = {k: env[k] for k in ("MEDIA_CDN_DOMAIN", "MEDIA_CDN_KEY_ID", "MEDIA_CDN_PRIVATE_KEY_PARAMETER")}
    cdn_refs = {
        "MediaCdnDistribution.DomainName": "d1.cloudfront.net",
        "MediaCdnUrlKey": "K1",
        "MediaCdnPrivateKeySecretArn": KEY_ARN,
    }
    assert set(template.resolve(cdn_env, cdn_refs).values()) == {""}
    assert template.resolve(cdn_env, {**cdn_refs, "MediaCdn": "on"}) == {
        "MEDIA_CDN_DOMAIN": "d1.cloudfront.net",
        "MEDIA_CDN_KEY_ID": "K1",
        "MEDIA_CDN_PRIVATE_KEY_PARAMETER": KEY_ARN,
    }


def test_only_the_signing_function_reads_the_cdn_key_and_only_when_on() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = SamTemplate.load()
    refs = {"FalKeySecretArn": FAL_ARN, "MediaCdnPrivateKeySecretArn": KEY_ARN}
    readers = {
        mode: {
            fn
            for fn, statements in iam.function_policies(template, {**refs, "MediaCdn": mode}).items()
            if iam.is_allowed(statements, "secretsmanager:GetSecretValue", KEY_ARN)
        }
        for mode in ("off", "on")
    }
    assert readers == {"off": set(), "on": {"ApiFunction", "NotifierFunction"}}  # the poster URL of a push too


def test_a_cdn_without_its_keys_is_refused_and_the_key_secret_is_a_full_arn() -> None:
    import re

    template = SamTemplate.load()
    rule = template.data["Rules"]["MediaCdnKeysWhenOn"]
    assert template.resolve(rule["RuleCondition"], {"MediaCdn": "on"}) is True
    assert template.resolve(rule["RuleCondition"], {}) is False
    assert template.resolve(rule["Assertions"][0]["Assert"], {"MediaCdnPublicKey": "pem"}) is False
    both = {"MediaCdnPublicKey": "pem", "MediaCdnPrivateKeySecretArn": KEY_ARN}
    assert template.resolve(rule["Assertions"][0]["Assert"], both) is True
    pattern = re.compile(template.parameters["MediaCdnPrivateKeySecretArn"]["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch(KEY_ARN)
    assert not pattern.fullmatch("arn:aws:secretsmanager:us-east-1:123456789012:secret:videogen/cdn-key")

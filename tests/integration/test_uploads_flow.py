"""Uploads through the real handlers on the in-process stack (every AWS call checked against the
calling function's role, devstack/iam.py): POST /v1/uploads, the object written, the S3 event the
bucket's notification sends to the validator, GET, submit with upload:<id>, SubmitToFal's presigned GET."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from tests.fakes.uploads import png
from videogen.domain.uploads import object_key


def _wait_checked(stack, token: str, upload_id: str) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = stack.request("GET", f"/v1/uploads/{upload_id}", token=token)
        assert got.status == 200, got.body
        if got.json["status"] != "pending":
            return dict(got.json)
        time.sleep(0.05)
    raise AssertionError("the S3 event never reached the validator")


def test_an_upload_goes_from_post_to_a_job_whose_fal_input_is_a_presigned_get(stack) -> None:
    token = stack.user(credits=20)
    user = next(iter(stack.users))
    data = png(8, 6)
    created = stack.request(
        "POST", "/v1/uploads", token=token, body={"content_type": "image/png", "size_bytes": len(data)}
    )
    assert created.status == 201, created.body
    upload_id = created.json["upload"]["id"]
    key = created.json["fields"]["key"]
    assert key == object_key(user, upload_id)
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=data, ContentType="image/png")  # what the POST stores

    upload = _wait_checked(stack, token, upload_id)
    assert upload["status"] == "ready" and (upload["width"], upload["height"]) == (8, 6)
    # The POST is still valid: the app puts other bytes (same size, not a PNG) under the key
    swapped = b"\x00" * len(data)
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=swapped, ContentType="image/png")
    time.sleep(0.2)  # its S3 event reaches the validator, which leaves the checked upload alone
    assert _wait_checked(stack, token, upload_id)["status"] == "ready"

    reply = stack.submit(
        token, model="kling-2.1-standard-i2v", payload={"prompt": "a fox", "image_url": f"upload:{upload_id}"}
    )
    assert reply.status == 202, reply.body
    job_id = reply.json["job"]["id"]
    assert stack.stack.lambdas.invoke("FalSubmitFunction", {"job_id": job_id}) == {"done": False}
    job = stack.job(job_id)
    assert job.input["image_url"] == f"upload:{upload_id}" and job.fal is not None
    sent = stack.sim.requests[job.fal.request_id]["input"]["image_url"]
    sealed = urlsplit(sent).path.lstrip("/")
    assert sealed.startswith(f"inputs/{user}/{upload_id}/") and "X-Amz-Signature" in sent
    assert job.input_objects == {"image_url": sealed}
    assert stack.s3.get_object(Bucket=stack.bucket, Key=sealed)["Body"].read() == data  # the checked bytes
    assert stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() == swapped  # never sent


def test_an_invalid_body_is_422_and_another_users_upload_404(stack) -> None:
    owner, other = stack.user(credits=1), stack.user(credits=1)
    bad = stack.request("POST", "/v1/uploads", token=owner, body={"content_type": "image/gif", "size_bytes": 5})
    assert bad.status == 422 and bad.json["code"] == "validation_failed"
    big = stack.request("POST", "/v1/uploads", token=owner, body={"content_type": "image/png", "size_bytes": 21 << 20})
    assert big.status == 422 and big.json["code"] == "validation_failed"
    created = stack.request("POST", "/v1/uploads", token=owner, body={"content_type": "image/png", "size_bytes": 5})
    upload_id = created.json["upload"]["id"]
    assert stack.request("GET", f"/v1/uploads/{upload_id}", token=owner).status == 200
    hidden = stack.request("GET", f"/v1/uploads/{upload_id}", token=other)
    missing = stack.request("GET", "/v1/uploads/upl_" + "0" * 26, token=other)
    assert hidden.status == missing.status == 404 and hidden.json["code"] == missing.json["code"] == "upload_not_found"


def test_submit_with_an_upload_makes_the_same_aws_calls_as_without(stack) -> None:
    """The upload check rides on submit's one read: with ``upload:<id>`` POST /v1/videos is still
    TransactGetItems (balance, key AND the upload), TransactWriteItems, StartExecution."""
    from videogen import wiring

    token = stack.user(credits=20)
    data = png(8, 6)
    created = stack.request(
        "POST", "/v1/uploads", token=token, body={"content_type": "image/png", "size_bytes": len(data)}
    )
    upload_id, key = created.json["upload"]["id"], created.json["fields"]["key"]
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=data, ContentType="image/png")
    assert _wait_checked(stack, token, upload_id)["status"] == "ready"

    calls: list[str] = []
    for service in ("dynamodb", "stepfunctions", "s3", "events", "secretsmanager"):
        wiring.client(service).meta.events.register("before-call.*.*", lambda model, **_: calls.append(model.name))
    plain = {"prompt": "a fox", "image_url": "https://example.com/fox.png"}
    assert stack.submit(token, key="plain", model="kling-2.1-standard-i2v", payload=plain).status == 202
    without = list(calls)
    calls.clear()
    uploaded = {"prompt": "a fox", "image_url": f"upload:{upload_id}"}
    assert stack.submit(token, key="upload", model="kling-2.1-standard-i2v", payload=uploaded).status == 202
    assert without == calls == ["TransactGetItems", "TransactWriteItems", "StartExecution"]

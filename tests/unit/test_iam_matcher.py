"""devstack.iam: the IAM matcher, the call -> (action, resource) mapping and the recorder's verdicts."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack import iam
from devstack.template import SamTemplate

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/jobs"
BUCKET = "arn:aws:s3:::videos"


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


@pytest.mark.parametrize(
    ("statements", "action", "resource", "allowed"),
    [
        ([allow("dynamodb:GetItem", TABLE)], "dynamodb:GetItem", TABLE, True),
        ([allow("dynamodb:GetItem", TABLE)], "dynamodb:getitem", TABLE, True),  # actions ignore case
        ([allow("dynamodb:GetItem", TABLE)], "dynamodb:PutItem", TABLE, False),
        ([allow("dynamodb:Get*", TABLE)], "dynamodb:GetItem", TABLE, True),
        ([allow("dynamodb:*", TABLE)], "s3:GetObject", TABLE, False),
        ([allow("dynamodb:GetItem", TABLE)], "dynamodb:GetItem", TABLE + "/index/ByUser", False),
        ([allow("dynamodb:Query", f"{TABLE}/index/*")], "dynamodb:Query", f"{TABLE}/index/ByUser", True),
        ([allow("s3:GetObject", f"{BUCKET}/*")], "s3:GetObject", f"{BUCKET}/a/b.mp4", True),
        ([allow("s3:GetObject", f"{BUCKET}/*")], "s3:GetObject", "arn:aws:s3:::videosX/a", False),
        ([allow("s3:GetObject", f"{BUCKET}/*")], "s3:GetObject", "arn:aws:s3:::VIDEOS/a", False),  # ARNs keep case
        ([allow("s3:ListBucket", f"{BUCKET}/*")], "s3:ListBucket", BUCKET, False),
        ([allow("s3:GetObject", f"{BUCKET}/?.mp4")], "s3:GetObject", f"{BUCKET}/a.mp4", True),
        ([allow("s3:GetObject", f"{BUCKET}/?.mp4")], "s3:GetObject", f"{BUCKET}/ab.mp4", False),
        ([allow(["s3:PutObject", "s3:GetObject"], [BUCKET, f"{BUCKET}/*"])], "s3:GetObject", f"{BUCKET}/k", True),
        ([{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}], "dynamodb:GetItem", TABLE, True),
        ([{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}], "s3:GetObject", f"{BUCKET}/k", False),
        (
            [{"Effect": "Allow", "Action": "s3:*", "NotResource": f"{BUCKET}/private/*"}],
            "s3:GetObject",
            f"{BUCKET}/k",
            True,
        ),
        (
            [{"Effect": "Allow", "Action": "s3:*", "NotResource": f"{BUCKET}/private/*"}],
            "s3:GetObject",
            f"{BUCKET}/private/k",
            False,
        ),
        # explicit deny wins over any allow
        (
            [allow("s3:*", "*"), {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}],
            "s3:DeleteObject",
            f"{BUCKET}/k",
            False,
        ),
        # a conditioned allow proves nothing; a conditioned deny still denies
        (
            [allow("s3:GetObject", "*", Condition={"Bool": {"aws:SecureTransport": "true"}})],
            "s3:GetObject",
            f"{BUCKET}/k",
            False,
        ),
        (
            [
                allow("s3:GetObject", "*"),
                {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"x": "y"}}},
            ],
            "s3:GetObject",
            f"{BUCKET}/k",
            False,
        ),
        ([], "s3:GetObject", f"{BUCKET}/k", False),
    ],
)
def test_is_allowed(statements: list[dict[str, Any]], action: str, resource: str, allowed: bool) -> None:
    assert iam.is_allowed(statements, action, resource) is allowed


def test_authorizations_name_what_aws_evaluates() -> None:
    def auth(service: str, operation: str, **params: Any) -> list[tuple[str, str]]:
        return iam.authorizations(service, operation, params, "us-east-1", "123456789012")

    assert auth("dynamodb", "Query", TableName="jobs", IndexName="ByUser") == [
        ("dynamodb:Query", f"{TABLE}/index/ByUser")
    ]
    assert auth(
        "dynamodb",
        "TransactWriteItems",
        TransactItems=[
            {"Put": {"TableName": "jobs"}},
            {"ConditionCheck": {"TableName": "jobs"}},
            {"Update": {"TableName": "t2"}},
        ],
    ) == [
        ("dynamodb:PutItem", TABLE),
        ("dynamodb:ConditionCheckItem", TABLE),
        ("dynamodb:UpdateItem", "arn:aws:dynamodb:us-east-1:123456789012:table/t2"),
    ]
    assert auth("s3", "HeadObject", Bucket="videos", Key="a.mp4") == [("s3:GetObject", f"{BUCKET}/a.mp4")]
    assert auth(
        "s3", "UploadPartCopy", Bucket="videos", Key="v.mp4", CopySource={"Bucket": "videos", "Key": "_staging/p"}
    ) == [
        ("s3:PutObject", f"{BUCKET}/v.mp4"),
        ("s3:GetObject", f"{BUCKET}/_staging/p"),
    ]
    assert auth("s3", "ListObjectsV2", Bucket="videos", Prefix="_staging/") == [("s3:ListBucket", BUCKET)]
    assert auth("events", "PutEvents", Entries=[{"EventBusName": "bus"}, {}]) == [
        ("events:PutEvents", "arn:aws:events:us-east-1:123456789012:event-bus/bus"),
        ("events:PutEvents", "arn:aws:events:us-east-1:123456789012:event-bus/default"),
    ]
    sm = "arn:aws:states:us-east-1:123456789012:stateMachine:m"
    assert auth("states", "StartExecution", stateMachineArn=sm) == [("states:StartExecution", sm)]
    assert auth("secretsmanager", "GetSecretValue", SecretId="n") == [
        ("secretsmanager:GetSecretValue", "arn:aws:secretsmanager:us-east-1:123456789012:secret:n")
    ]


def test_the_recorder_checks_each_call_and_a_presigned_url_against_the_running_role(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    recorder = iam.CallRecorder()
    recorder.install()
    try:
        with mock_aws():
            s3 = boto3.session.Session().client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket="videos")  # no function running: not recorded
            statements = ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{BUCKET}/*"},)
            grants = (iam.Grant("Fn", "s3:GetObject", (f"{BUCKET}/*",)), iam.Grant("Fn", "s3:DeleteObject", ("*",)))
            role = iam.RoleContext("Fn", statements, "123456789012", grants, recorder=recorder)
            with iam.acting_as(role):
                s3.generate_presigned_url("get_object", Params={"Bucket": "videos", "Key": "a.mp4"})
                s3.put_object(Bucket="videos", Key="b.mp4", Body=b"x")
                s3.generate_presigned_post("videos", "uploads/c")  # signed locally: never a CreateBucket
    finally:
        recorder.uninstall()

    assert recorder.calls == {
        iam.Call("Fn", "s3:GetObject", f"{BUCKET}/a.mp4", True): 1,
        iam.Call("Fn", "s3:PutObject", f"{BUCKET}/b.mp4", False): 1,
    }
    assert recorder.denied() == [iam.Call("Fn", "s3:PutObject", f"{BUCKET}/b.mp4", False)]
    assert [g.action for g in recorder.unused_grants()] == ["s3:DeleteObject"]
    assert "DENIED Fn: s3:PutObject on arn:aws:s3:::videos/b.mp4" in iam.report(recorder)


def test_function_policies_are_the_translated_sam_roles() -> None:
    template = SamTemplate.load()
    refs = {
        "JobsTable": "jobs",
        "JobsTable.Arn": TABLE,
        "FalKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:fal-AbC123",
        "AWS::StackName": "stk",
    }
    policies = iam.function_policies(template, refs)
    assert set(policies) == set(template.resources_of_type("AWS::Serverless::Function"))
    submit = policies["SubmitFunction"]
    # the SAM policy template became IAM statements on the resolved ARNs
    assert iam.is_allowed(
        submit, "states:StartExecution", "arn:aws:states:us-east-1:123456789012:stateMachine:stk-video-job"
    )
    assert not iam.is_allowed(
        submit, "states:StartExecution", "arn:aws:states:us-east-1:123456789012:stateMachine:other"
    )
    assert not iam.is_allowed(submit, "secretsmanager:GetSecretValue", refs["FalKeySecretArn"])
    assert iam.is_allowed(policies["ApiFunction"], "secretsmanager:GetSecretValue", refs["FalKeySecretArn"])
    # the table through the template's own managed policy: items and indexes, no Scan or DeleteItem
    assert iam.is_allowed(submit, "dynamodb:UpdateItem", TABLE)
    assert iam.is_allowed(submit, "dynamodb:Query", f"{TABLE}/index/ByUser")
    assert not iam.is_allowed(submit, "dynamodb:Scan", TABLE)
    assert not iam.is_allowed(submit, "dynamodb:DeleteItem", TABLE)
    assert "JobsTableAccess" not in str(iam.managed_policy_arns(template))

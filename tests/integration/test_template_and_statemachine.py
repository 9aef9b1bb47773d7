"""template.yaml provisions in moto, and the REAL video_job.asl.json runs in moto's interpreter.

The state machine's Lambda tasks are answered in-process by :class:`LocalLambdas`
with fake handlers registered per test, so these tests pin the workflow's
behaviour (loop, retry, catch, deadline) independently of the handlers.
"""

from __future__ import annotations

import json
import re
import string
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from devstack import iam
from devstack.lambdas import LambdaContext, LocalLambdas
from devstack.provision import LocalResources, provision
from devstack.template import ROOT, SamTemplate, UnresolvedReference

REGION = "us-east-1"
PREFIX = "vg-test"

pytestmark = pytest.mark.timeout(120)


# --- fakes and helpers ------------------------------------------------------------------


class FalTransientError(Exception):
    """Same class name as the real one: the ASL retries on the name only."""


class FalRequestRejected(Exception):
    """An error the ASL does not retry."""


@dataclass
class Calls:
    """What the fake task handlers received, per logical id (appended from moto's execution thread)."""

    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def record(self, logical_id: str, event: dict[str, Any]) -> int:
        self.events.setdefault(logical_id, []).append(event)
        return len(self.events[logical_id])

    def of(self, logical_id: str) -> list[dict[str, Any]]:
        return self.events.get(logical_id, [])


@dataclass
class Stack:
    template: SamTemplate
    resources: LocalResources
    lambdas: LocalLambdas
    calls: Calls

    def fake(self, logical_id: str, behaviour: Callable[[dict[str, Any], int], Any]) -> None:
        """Answer ``logical_id`` with ``behaviour(event, call_number)`` and record every event."""

        def handler(event: dict[str, Any], context: Any) -> Any:
            assert isinstance(context, LambdaContext)
            return behaviour(event, self.calls.record(logical_id, event))

        self.lambdas.override(logical_id, handler)

    def run(self, execution_input: dict[str, Any], timeout_s: float = 60) -> dict[str, Any]:
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.start_execution(
            stateMachineArn=self.resources.state_machine_arn,
            name=execution_input["job_id"],
            input=json.dumps(execution_input),
        )["executionArn"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            execution = sfn.describe_execution(executionArn=arn)
            if execution["status"] != "RUNNING":
                return execution
            time.sleep(0.05)
        raise AssertionError(f"execution {arn} still running after {timeout_s}s")


def job_input(job_id: str = "job-1", *, max_checks: int = 3) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "attempt": 0,
        "timing": {"initial_wait_s": 0, "poll_wait_s": 0, "max_checks": max_checks},
    }


def not_done(event: dict[str, Any], n: int) -> dict[str, Any]:
    return {"done": False, "expired": False, "next_wait_s": 0}


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        template = SamTemplate.load()
        resources = provision(template, prefix=PREFIX, region=REGION)
        lambdas = LocalLambdas(template, resources)
        lambdas.install()  # after mock_aws started: moto replaces boto3's default session
        try:
            yield Stack(template, resources, lambdas, Calls())
        finally:
            lambdas.uninstall()


# --- the template ------------------------------------------------------------------------


def test_routes_match_the_public_contract() -> None:
    routes = {(r.method, r.path): (r.function, r.authorized) for r in SamTemplate.load().routes()}

    assert routes == {
        ("POST", "/v1/videos"): ("SubmitFunction", True),
        ("GET", "/v1/videos/{id}"): ("ApiFunction", True),
        ("GET", "/v1/videos"): ("ApiFunction", True),
        ("POST", "/v1/videos/{id}/cancel"): ("ApiFunction", True),
        ("GET", "/v1/credits"): ("ApiFunction", True),
        ("GET", "/v1/models"): ("ApiFunction", False),
        ("GET", "/v1/products"): ("ApiFunction", False),
        ("GET", "/openapi.json"): ("ApiFunction", False),
        ("POST", "/webhooks/fal"): ("WebhookFunction", False),
        ("POST", "/v1/purchases"): ("PurchasesFunction", True),
        ("GET", "/v1/purchases"): ("ApiFunction", True),
        ("POST", "/webhooks/app-store"): ("StoreWebhookFunction", False),
        ("POST", "/webhooks/google-play"): ("StoreWebhookFunction", False),
        ("POST", "/v1/uploads"): ("UploadsFunction", True),
        ("GET", "/v1/uploads/{id}"): ("UploadsFunction", True),
        ("PUT", "/v1/devices/{device_id}"): ("DevicesFunction", True),
        ("GET", "/v1/devices"): ("DevicesFunction", True),
        ("DELETE", "/v1/devices/{device_id}"): ("DevicesFunction", True),
    }


FAL_KEY_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:videogen/fal-key-AbC123"


def test_functions_have_globals_merged_and_code_on_disk() -> None:
    functions = SamTemplate.load().functions({"FalKeySecretArn": FAL_KEY_ARN})

    assert set(functions) == {
        "SubmitFunction",
        "ApiFunction",
        "WebhookFunction",
        "FalSubmitFunction",
        "FalCheckFunction",
        "JobFailFunction",
        "ReconcileFunction",
        "MediaFunction",
        "UploadsFunction",
        "UploadValidatorFunction",
        "DevicesFunction",
        "NotifierFunction",
        "PurchasesFunction",
        "StoreWebhookFunction",
    }
    for fn in functions.values():
        assert (fn.code_dir / "app.py").is_file(), fn
        assert fn.handler == "app.lambda_handler"
        assert fn.environment["POWERTOOLS_LOGGER_LOG_EVENT"] == "false"
        assert fn.environment["MAX_ACTIVE_JOBS"] == "10"
        assert fn.environment["FAL_KEY_PARAMETER"] == FAL_KEY_ARN
        # X-Ray records neither a response (presigned URLs) nor an exception's text
        assert fn.environment["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"
        assert fn.environment["POWERTOOLS_TRACER_CAPTURE_ERROR"] == "false"
        app_source = (fn.code_dir / "app.py").read_text()
        assert "@trace_handler\n" in app_source and "capture_lambda_handler" not in app_source, fn
    assert (functions["WebhookFunction"].timeout, functions["WebhookFunction"].memory) == (29, 1024)
    assert (functions["FalCheckFunction"].timeout, functions["FalCheckFunction"].memory) == (300, 1024)
    assert (functions["SubmitFunction"].timeout, functions["SubmitFunction"].memory) == (30, 512)
    assert (functions["MediaFunction"].timeout, functions["MediaFunction"].memory) == (60, 1024)
    assert (functions["UploadValidatorFunction"].timeout, functions["UploadValidatorFunction"].memory) == (30, 1024)


def test_only_the_media_and_upload_validator_functions_have_the_media_layer_and_media_runs_on_job_completed() -> None:
    """PyAV's layer on the two functions that decode (posters; the upload check) only: no other
    cold start loads FFmpeg. The media function's one event is the bus's "Job Completed" (after
    the completion: never on the completion's path)."""
    template = SamTemplate.load()
    for logical_id, res in template.resources_of_type("AWS::Serverless::Function").items():
        layers = res["Properties"].get("Layers") or []
        decodes = logical_id in ("MediaFunction", "UploadValidatorFunction")
        assert (layers == [{"Ref": "MediaLayer"}]) == decodes, logical_id
    [rule] = [r for r in template.event_rules() if r.function == "MediaFunction"]
    assert rule.pattern == {"source": ["videogen.job"], "detail-type": ["Job Completed"]}
    assert rule.bus == "EventBus"  # the project's bus (its Ref, unresolved here)
    layer = template.resources["MediaLayer"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}
    requirements = (template.root / layer["Properties"]["ContentUri"] / "requirements.txt").read_text()
    assert "av==13.1.0" in requirements.split()  # the manylinux2014 aarch64 wheel sam build accepts


def test_every_function_that_ends_jobs_may_list_and_delete_videos() -> None:
    """JobFinisher.publish lists the job's video prefix and removes what a failed or canceled job
    left (an actor died after storing it): without both rights a function's outbox keeps failing.
    The roles as devstack.iam expands them (aws-sam-translator), checked by its matcher."""
    bucket = "arn:aws:s3:::videos-bucket"
    refs = {"FalKeySecretArn": FAL_KEY_ARN, "VideosBucket": "videos-bucket", "VideosBucket.Arn": bucket}
    policies = iam.function_policies(SamTemplate.load(), refs)

    def lacks(name: str) -> set[str]:
        needed = {"s3:ListBucket": bucket, "s3:DeleteObject": f"{bucket}/videos/vid_1/v.mp4"}
        return {action for action, resource in needed.items() if not iam.is_allowed(policies[name], action, resource)}

    enders = ["ApiFunction", "WebhookFunction", "FalSubmitFunction", "FalCheckFunction", "JobFailFunction"]
    missing = {name: lacks(name) for name in [*enders, "ReconcileFunction"]}
    assert {name: what for name, what in missing.items() if what} == {}
    assert "s3:DeleteObject" in lacks("SubmitFunction")


def test_conditions_follow_parameters() -> None:
    template = SamTemplate.load()
    auth = template.resources["HttpApi"]["Properties"]["Auth"]["Authorizers"]["JwtAuthorizer"]["JwtConfiguration"]

    # Given no issuer, the created user pool is trusted
    created = template.resolve(auth, {"UserPool": "us-east-1_pool", "UserPoolClient": "client"})
    assert created == {"issuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool", "audience": ["client"]}
    # Given an issuer, the parameters are used
    given = template.resolve(auth, {"JwtIssuer": "https://idp.example", "JwtAudience": "a,b"})
    assert given == {"issuer": "https://idp.example", "audience": ["a", "b"]}
    # An issuer without audience never becomes [""] (and the rule refuses that deploy)
    empty = template.resolve(auth, {"JwtIssuer": "https://idp.example", "JwtAudience": ""})
    assert empty == {"issuer": "https://idp.example"}
    rule = template.data["Rules"]["JwtAudienceWithIssuer"]
    assert template.resolve(rule["RuleCondition"], {"JwtIssuer": "https://idp.example"}) is True
    assert template.resolve(rule["Assertions"][0]["Assert"], {"JwtAudience": ""}) is False
    assert template.resolve(rule["Assertions"][0]["Assert"], {"JwtAudience": "a"}) is True


def test_a_prod_deploy_without_the_fal_account_is_refused() -> None:
    """Without FalWebhookUserId a delivery signed for ANY fal account passes the signature check
    (docs/fal.md): the rule refuses such a prod change set, dev may deploy without it."""
    template = SamTemplate.load()
    rule = template.data["Rules"]["FalWebhookUserIdInProd"]
    assert template.resolve(rule["RuleCondition"], {"Stage": "prod"}) is True
    assert template.resolve(rule["RuleCondition"], {"Stage": "dev"}) is False
    assert template.resolve(rule["Assertions"][0]["Assert"], {"FalWebhookUserId": ""}) is False
    assert template.resolve(rule["Assertions"][0]["Assert"], {"FalWebhookUserId": "user-1"}) is True


def test_the_fal_key_secret_is_a_required_full_arn() -> None:
    template = SamTemplate.load()
    spec = template.parameters["FalKeySecretArn"]
    # No default: `sam deploy` without it is refused by CloudFormation ("Parameters:
    # [FalKeySecretArn] must have values"), and the local resolver refuses it too
    assert "Default" not in spec
    with pytest.raises(UnresolvedReference):
        template.functions()
    pattern = re.compile(spec["AllowedPattern"])
    for arn in (
        FAL_KEY_ARN,
        "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:fal_key.v2-Zz9Zz9",
        "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:team/fal+key=@-aaaaaa",
    ):
        assert pattern.fullmatch(arn), arn
    for arn in (
        "",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:videogen/fal-key",  # no suffix
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:fal-key-AbC12",  # 5-char suffix
        "arn:aws:secretsmanager:us-east-1:1234:secret:fal-key-AbC123",  # short account
        "arn:aws:ssm:us-east-1:123456789012:parameter/fal-key-AbC123",  # another service
        "arn:aws-iso:secretsmanager:us-iso-east-1:123456789012:secret:fal-key-AbC123",
        "fal-key-AbC123",
    ):
        assert not pattern.fullmatch(arn), arn
    # Every function that calls fal is granted that ARN; the others never call fal, so none may
    # read the key (the webhook is the one public unauthenticated function)
    never_call_fal = {
        "SubmitFunction",
        "WebhookFunction",
        "MediaFunction",
        "UploadsFunction",
        "UploadValidatorFunction",
        "DevicesFunction",
        "NotifierFunction",
        "PurchasesFunction",
        "StoreWebhookFunction",
    }
    grant = {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": FAL_KEY_ARN}}
    for logical_id in template.resources_of_type("AWS::Serverless::Function"):
        policies = template.resolve(
            template.resources[logical_id]["Properties"]["Policies"], {"FalKeySecretArn": FAL_KEY_ARN}
        )
        assert (grant in policies) == (logical_id not in never_call_fal), logical_id


_ACCESS_LOG_FIELDS = {
    "$context.requestId",
    "$context.requestTime",
    "$context.identity.sourceIp",
    "$context.routeKey",
    "$context.status",
    "$context.protocol",
    "$context.responseLength",
    "$context.integrationLatency",
    "$context.integrationStatus",
    "$context.integrationErrorMessage",
    "$context.authorizer.error",
    "$context.error.message",
}


def test_deploy_logs_have_retention_and_the_access_log_no_credentials() -> None:
    template = SamTemplate.load()
    resources = template.resources
    api = resources["HttpApi"]["Properties"]
    log_format = json.loads(api["AccessLogSettings"]["Format"])
    # Only these $context variables: never a header (Authorization), the path or a query string
    assert set(log_format.values()) <= _ACCESS_LOG_FIELDS
    assert api["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    log_groups = template.resources_of_type("AWS::Logs::LogGroup")
    for stage, days in (("dev", 14), ("prod", 90)):
        for logical_id, res in log_groups.items():
            assert template.resolve(res["Properties"]["RetentionInDays"], {"Stage": stage}) == days, logical_id
    for logical_id, res in template.resources_of_type("AWS::Serverless::Function").items():
        assert res["Properties"]["LoggingConfig"] == {"LogGroup": {"Ref": f"{logical_id}LogGroup"}}
        assert f"{logical_id}LogGroup" in log_groups
    # Names other stacks of the same stage cannot take
    assert resources["EventBus"]["Properties"]["Name"] == {"Fn::Sub": "${AWS::StackName}-events"}
    # The reconciler's schedule: retried, then dead-lettered; so are failed runs
    reconcile = resources["ReconcileFunction"]["Properties"]
    schedule = reconcile["Events"]["Reconcile"]["Properties"]
    queue_arn = {"Fn::GetAtt": ["ReconcileDeadLetterQueue", "Arn"]}
    assert schedule["DeadLetterConfig"] == {"Arn": queue_arn}
    assert schedule["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert reconcile["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": queue_arn}
    statement = resources["ReconcileDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    rule_arn = template.resolve(statement["Condition"]["ArnEquals"]["aws:SourceArn"], {})
    assert rule_arn.endswith(":rule/" + template.resolve(schedule["Name"], {}))


def test_the_fal_webhook_route_has_a_throttle_of_its_own_and_the_limits_reach_every_function() -> None:
    """API Gateway's throttles are per route: the webhook's own RouteSettings (keyed by a route the
    template declares) keep the app routes' traffic from ever spending fal's deliveries' budget."""
    template = SamTemplate.load()
    api = template.resources["HttpApi"]["Properties"]
    route_keys = {f"{r.method} {r.path}" for r in template.routes()}
    assert (
        set(api["RouteSettings"])
        == {"POST /webhooks/fal", "POST /webhooks/app-store", "POST /webhooks/google-play"}
        <= route_keys
    )
    for stage, route in [(s, r) for s in ("dev", "prod") for r in api["RouteSettings"]]:
        webhook = {k: template.resolve(v, {"Stage": stage}) for k, v in api["RouteSettings"][route].items()}
        default = {k: template.resolve(v, {"Stage": stage}) for k, v in api["DefaultRouteSettings"].items()}
        assert set(webhook) == set(default) == {"ThrottlingBurstLimit", "ThrottlingRateLimit"}
        assert all(isinstance(v, int) and v > 0 for v in (*webhook.values(), *default.values()))
        assert webhook["ThrottlingBurstLimit"] >= webhook["ThrottlingRateLimit"]
    env = template.data["Globals"]["Function"]["Environment"]["Variables"]
    assert env["USER_REQUESTS_PER_MINUTE"] == {"Ref": "UserRequestsPerMinute"}
    assert env["USER_REQUEST_BURST"] == {"Ref": "UserRequestBurst"}
    assert env["DAILY_CREDIT_CAP"] == {"Ref": "DailyCreditCap"}
    assert template.parameters["DailyCreditCap"]["Default"] == 0  # off unless the operator sets it
    # the store webhooks never share the fal webhook's budget: their own mapping keys (and each
    # route's throttle is its own in API Gateway, so Apple's and Google's never share one either)
    for route in ("POST /webhooks/app-store", "POST /webhooks/google-play"):
        store = api["RouteSettings"][route]
        assert [v["Fn::FindInMap"][2] for v in store.values()] == [
            "StoreWebhookThrottleBurst",
            "StoreWebhookThrottleRate",
        ]


# --- provisioning -------------------------------------------------------------------------


def test_provision_creates_table_bucket_bus_secret_and_state_machine(stack: Stack) -> None:
    res = stack.resources
    ddb = boto3.client("dynamodb", region_name=REGION)

    table = ddb.describe_table(TableName=res.table_name)["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    indexes = {ix["IndexName"]: ix for ix in table["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"ByUser", "ByUserStatus", "Active", "ByFalRequest"}
    assert [k["AttributeName"] for k in indexes["ByUserStatus"]["KeySchema"]] == ["gsi1pk", "status_sk"]
    assert indexes["Active"]["Projection"]["ProjectionType"] == "ALL"
    assert [k["AttributeName"] for k in indexes["Active"]["KeySchema"]] == ["active_pk", "active_sk"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName=res.table_name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")

    s3 = boto3.client("s3", region_name=REGION)
    s3.head_bucket(Bucket=res.bucket_name)
    assert s3.get_public_access_block(Bucket=res.bucket_name)["PublicAccessBlockConfiguration"]["BlockPublicAcls"]

    boto3.client("events", region_name=REGION).describe_event_bus(Name=res.event_bus_name)

    token_arn = res.secret_arns["WebhookTokenSecret"]
    token = boto3.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=token_arn)["SecretString"]
    assert len(token) == 48 and set(token) <= set(string.ascii_letters + string.digits)

    sfn = boto3.client("stepfunctions", region_name=REGION)
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=res.state_machine_arn)["definition"])
    assert definition["States"]["SubmitToFal"]["Parameters"]["FunctionName"] == res.function_arns["FalSubmitFunction"]
    assert definition["States"]["Check"]["Parameters"]["FunctionName"] == res.function_arns["FalCheckFunction"]
    assert definition["States"]["FailJob"]["Parameters"]["FunctionName"] == res.function_arns["JobFailFunction"]
    assert "${" not in json.dumps(definition)
    assert res.function_arns["FalSubmitFunction"] == (
        f"arn:aws:lambda:{REGION}:123456789012:function:{PREFIX}-FalSubmitFunction"
    )

    # The handlers' environment names exactly these local resources
    assert res.env["TABLE_NAME"] == res.table_name
    assert res.env["BUCKET_NAME"] == res.bucket_name
    assert res.env["EVENT_BUS_NAME"] == res.event_bus_name
    assert res.env["STATE_MACHINE_ARN"] == res.state_machine_arn
    assert res.env["WEBHOOK_TOKEN_PARAMETER"] == token_arn
    # The required fal key parameter names a local stand-in secret
    fal_key_arn = res.env["FAL_KEY_PARAMETER"]
    fal_key = boto3.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=fal_key_arn)
    assert fal_key["SecretString"] == "local-simulator-key"
    assert re.fullmatch(stack.template.parameters["FalKeySecretArn"]["AllowedPattern"], fal_key_arn)


def test_provision_overrides_parameters_and_env_and_is_idempotent(stack: Stack) -> None:
    again = provision(
        stack.template,
        prefix=PREFIX,
        region=REGION,
        overrides={"MaxActiveJobs": "3", "WEBHOOK_BASE_URL": "http://127.0.0.1:3000", "ENVIRONMENT": "local"},
    )

    assert again.table_name == stack.resources.table_name
    assert again.state_machine_arn == stack.resources.state_machine_arn
    assert again.secret_arns == stack.resources.secret_arns
    assert again.env["MAX_ACTIVE_JOBS"] == "3"
    assert again.env["WEBHOOK_BASE_URL"] == "http://127.0.0.1:3000"
    assert again.env["ENVIRONMENT"] == "local"


# --- lambda:Invoke routed in-process ------------------------------------------------------


def test_invoke_answers_like_lambda_including_unhandled_errors(stack: Stack) -> None:
    stack.fake("FalSubmitFunction", lambda event, n: {"echo": event})
    client = boto3.client("lambda", region_name=REGION)

    ok = client.invoke(FunctionName=stack.resources.function_arns["FalSubmitFunction"], Payload=b'{"a": 1}')
    assert ok["StatusCode"] == 200 and "FunctionError" not in ok
    assert json.loads(ok["Payload"].read()) == {"echo": {"a": 1}}

    def boom(event: dict[str, Any], n: int) -> Any:
        raise FalTransientError("fal answered 503")

    stack.fake("FalSubmitFunction", boom)
    failed = client.invoke(FunctionName=f"{PREFIX}-FalSubmitFunction", Payload=b"{}")
    payload = json.loads(failed["Payload"].read())
    assert failed["FunctionError"] == "Unhandled"
    assert (payload["errorType"], payload["errorMessage"]) == ("FalTransientError", "fal answered 503")

    with pytest.raises(ClientError) as missing:
        client.invoke(FunctionName="no-such-function", Payload=b"{}")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_real_handler_modules_load_by_path_with_the_layer_importable(tmp_path: Path) -> None:
    fn_dir = tmp_path / "functions" / "hello"
    fn_dir.mkdir(parents=True)
    (fn_dir / "greeting.py").write_text("WORD = 'hello'\n")
    (fn_dir / "app.py").write_text(
        "import videogen.config\n"
        "from greeting import WORD\n"
        "def lambda_handler(event, context):\n"
        "    return {'word': WORD, 'name': context.function_name, 'ms': context.get_remaining_time_in_millis()}\n"
    )
    (tmp_path / "template.yaml").write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Resources:\n"
        "  HelloFunction:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties: {CodeUri: functions/hello/, Handler: app.lambda_handler, Runtime: python3.13, Timeout: 5}\n"
    )
    template = SamTemplate.load(tmp_path / "template.yaml")
    resources = LocalResources(
        table_name="",
        bucket_name="",
        event_bus_name="",
        state_machine_arn="",
        function_arns={"HelloFunction": "arn:aws:lambda:us-east-1:123456789012:function:p-HelloFunction"},
        env={},
    )
    lambdas = LocalLambdas(template, resources)

    result = lambdas.invoke("p-HelloFunction", {})

    assert result["word"] == "hello" and result["name"] == "p-HelloFunction"
    assert 0 < result["ms"] <= 5000
    assert lambdas.handler("HelloFunction") is lambdas.handler("HelloFunction")
    assert "videogen_fn_hello" in sys.modules
    sys.modules.pop("videogen_fn_hello", None)
    sys.modules.pop("greeting", None)


# --- the real state machine ---------------------------------------------------------------


def test_poll_loop_ends_when_check_reports_done(stack: Stack) -> None:
    # Given fal accepts the job and the third check finds it finished
    stack.fake("FalSubmitFunction", lambda event, n: {"done": False})
    stack.fake(
        "FalCheckFunction",
        lambda event, n: {"done": n >= 3, "expired": False, "next_wait_s": 0},
    )
    stack.fake("JobFailFunction", lambda event, n: {"ok": True})

    execution = stack.run(job_input("job-happy", max_checks=5))

    assert execution["status"] == "SUCCEEDED"
    assert stack.calls.of("FalSubmitFunction") == [{"job_id": "job-happy"}]
    checks = stack.calls.of("FalCheckFunction")
    assert [c["attempt"] for c in checks] == [0, 1, 2]
    assert all(c["job_id"] == "job-happy" and c["timing"]["max_checks"] == 5 for c in checks)
    assert stack.calls.of("JobFailFunction") == []


def test_submit_reporting_done_skips_the_poll_loop(stack: Stack) -> None:
    # Given the job was already finished (e.g. canceled) when the workflow submits it
    stack.fake("FalSubmitFunction", lambda event, n: {"done": True})
    stack.fake("FalCheckFunction", not_done)

    execution = stack.run(job_input("job-done"))

    assert execution["status"] == "SUCCEEDED"
    assert stack.calls.of("FalCheckFunction") == []


def test_transient_submit_error_is_retried(stack: Stack) -> None:
    def flaky(event: dict[str, Any], n: int) -> dict[str, Any]:
        if n == 1:
            raise FalTransientError("fal answered 503")
        return {"done": False}

    stack.fake("FalSubmitFunction", flaky)
    stack.fake("FalCheckFunction", lambda event, n: {"done": True, "expired": False, "next_wait_s": 0})
    stack.fake("JobFailFunction", lambda event, n: {"ok": True})

    execution = stack.run(job_input("job-retry"))

    assert execution["status"] == "SUCCEEDED"
    assert len(stack.calls.of("FalSubmitFunction")) == 2
    assert len(stack.calls.of("FalCheckFunction")) == 1
    assert stack.calls.of("JobFailFunction") == []


def test_final_submit_error_fails_the_job_with_submit_failed(stack: Stack) -> None:
    def rejected(event: dict[str, Any], n: int) -> Any:
        raise FalRequestRejected("422 from fal")

    stack.fake("FalSubmitFunction", rejected)
    stack.fake("FalCheckFunction", not_done)
    stack.fake("JobFailFunction", lambda event, n: {"ok": True})

    execution = stack.run(job_input("job-rejected"))

    assert execution["status"] == "SUCCEEDED"
    assert len(stack.calls.of("FalSubmitFunction")) == 1  # not retried
    assert stack.calls.of("FalCheckFunction") == []
    assert stack.calls.of("JobFailFunction") == [
        {"job_id": "job-rejected", "reason": "submit_failed", "cause": "FalRequestRejected", "cancel_at_fal": False}
    ]


def test_expired_check_expires_the_job_and_cancels_at_fal(stack: Stack) -> None:
    stack.fake("FalSubmitFunction", lambda event, n: {"done": False})
    stack.fake("FalCheckFunction", lambda event, n: {"done": False, "expired": n >= 2, "next_wait_s": 0})
    stack.fake("JobFailFunction", lambda event, n: {"ok": True})

    execution = stack.run(job_input("job-expired", max_checks=10))

    assert execution["status"] == "SUCCEEDED"
    assert len(stack.calls.of("FalCheckFunction")) == 2
    assert stack.calls.of("JobFailFunction") == [
        {"job_id": "job-expired", "reason": "deadline_exceeded", "cancel_at_fal": True}
    ]


def test_check_budget_exhausted_expires_the_job(stack: Stack) -> None:
    stack.fake("FalSubmitFunction", lambda event, n: {"done": False})
    stack.fake("FalCheckFunction", not_done)
    stack.fake("JobFailFunction", lambda event, n: {"ok": True})

    execution = stack.run(job_input("job-budget", max_checks=2))

    assert execution["status"] == "SUCCEEDED"
    # attempt counts 0..max_checks: the check with attempt == max_checks is the last one
    assert [c["attempt"] for c in stack.calls.of("FalCheckFunction")] == [0, 1, 2]
    assert stack.calls.of("JobFailFunction") == [
        {"job_id": "job-budget", "reason": "deadline_exceeded", "cancel_at_fal": True}
    ]


def test_failing_check_hands_the_job_over_to_the_reconciler(stack: Stack) -> None:
    def broken(event: dict[str, Any], n: int) -> Any:
        raise RuntimeError("bug")

    stack.fake("FalSubmitFunction", lambda event, n: {"done": False})
    stack.fake("FalCheckFunction", broken)
    stack.fake("JobFailFunction", lambda event, n: {"ok": True})

    execution = stack.run(job_input("job-broken"))

    assert execution["status"] == "FAILED"
    assert execution.get("error") == "CheckFailed"
    assert len(stack.calls.of("FalCheckFunction")) == 1  # RuntimeError is not retried
    assert stack.calls.of("JobFailFunction") == []  # the job stays active for the reconciler


def test_template_root_is_the_project_root() -> None:
    assert (ROOT / "template.yaml").is_file()
    assert (ROOT / "statemachines" / "video_job.asl.json").is_file()

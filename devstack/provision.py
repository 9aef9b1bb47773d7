"""Create the template's stateful resources in moto (or any AWS-compatible endpoint).

Everything goes through boto3 clients from the default session, so the same
code works inside ``moto.mock_aws()`` and against a moto server reached through
``AWS_ENDPOINT_URL``. No Lambda functions are created: their ARNs only name
the in-process handlers of :mod:`devstack.lambdas`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from devstack.template import PSEUDO_PARAMETER_DEFAULTS, SamTemplate

ACCOUNT_ID = "123456789012"
FAL_KEY_SECRET_PARAMETER = "FalKeySecretArn"
"""The template parameter naming the fal key's secret; provision creates a local one for it."""

_STATES_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


@dataclass
class LocalResources:
    table_name: str
    bucket_name: str
    event_bus_name: str
    state_machine_arn: str
    function_arns: dict[str, str]
    env: dict[str, str]
    """The functions' environment: Globals + the union of every function's variables, resolved to the local names."""
    event_log_group: str = ""
    """A CloudWatch log group every event on the bus is also delivered to (a rule's target): what
    the bus received, for audits to read back (local only; nothing in the template)."""
    secret_arns: dict[str, str] = field(default_factory=dict)
    """Logical id -> ARN of each ``AWS::SecretsManager::Secret`` of the template (e.g. ``WebhookTokenSecret``)."""
    refs: dict[str, str] = field(default_factory=dict)
    """What every ``Ref``/``GetAtt`` of the template resolved to locally (feed to ``SamTemplate.resolve``)."""

    def apply_env(self, environ: MutableMapping[str, str] | None = None) -> None:
        """Copy :attr:`env` into ``environ`` (default ``os.environ``) for the in-process handlers."""
        (os.environ if environ is None else environ).update(self.env)


def local_function_name(prefix: str, logical_id: str) -> str:
    return f"{prefix}-{logical_id}"


def local_function_arn(prefix: str, logical_id: str, region: str) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{local_function_name(prefix, logical_id)}"


def provision(
    template: SamTemplate,
    *,
    prefix: str = "videogen-local",
    region: str = "us-east-1",
    overrides: dict[str, str] | None = None,
) -> LocalResources:
    """Create table(s) (with TTL), bucket, event bus, secrets, a state machine role and the state machine.

    ``overrides``: a key naming a template parameter (``Stage``, ``MaxActiveJobs``),
    pseudo parameter (``AWS::StackName``) or resource logical id (``HttpApi``)
    replaces that value wherever the template references it; any other key
    (``FAL_KEY_PARAMETER``, ``WEBHOOK_BASE_URL``, ``ENVIRONMENT``, ...) is set
    in the returned ``env`` after resolution. Idempotent: existing resources
    with the same names are reused (the state machine definition is updated).
    """
    overrides = dict(overrides or {})
    resources = template.resources
    ref_keys = set(template.parameters) | set(PSEUDO_PARAMETER_DEFAULTS) | set(resources)
    ref_overrides = {k: v for k, v in overrides.items() if k in ref_keys}
    env_overrides = {k: v for k, v in overrides.items() if k not in ref_keys}

    refs: dict[str, Any] = {
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackName": prefix,
        "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{prefix}/local",
    }
    # Placeholders for everything not created here (API, user pool, roles, ...).
    for logical_id in resources:
        refs[logical_id] = f"{prefix}-{_kebab(logical_id)}"
    for logical_id in template.resources_of_type("AWS::Serverless::Function"):
        refs[logical_id] = local_function_name(prefix, logical_id)
        refs[f"{logical_id}.Arn"] = local_function_arn(prefix, logical_id, region)
    refs.update(ref_overrides)

    dynamodb = boto3.client("dynamodb", region_name=region)
    s3 = boto3.client("s3", region_name=region)
    events = boto3.client("events", region_name=region)
    secretsmanager = boto3.client("secretsmanager", region_name=region)
    iam = boto3.client("iam", region_name=region)
    sfn = boto3.client("stepfunctions", region_name=region)

    tables: dict[str, str] = {}
    for logical_id, spec in template.table_specs().items():
        name = str(ref_overrides.get(logical_id) or f"{prefix}-{_kebab(logical_id)}")
        create_table(dynamodb, name, spec)
        tables[logical_id] = refs[logical_id] = name
        refs[f"{logical_id}.Arn"] = f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{name}"

    buckets: dict[str, str] = {}
    for logical_id in template.resources_of_type("AWS::S3::Bucket"):
        name = str(ref_overrides.get(logical_id) or f"{prefix}-{_kebab(logical_id)}").lower()
        _create_bucket(s3, name, region)
        buckets[logical_id] = refs[logical_id] = name
        refs[f"{logical_id}.Arn"] = f"arn:aws:s3:::{name}"

    buses: dict[str, str] = {}
    for logical_id in template.resources_of_type("AWS::Events::EventBus"):
        name = str(ref_overrides.get(logical_id) or f"{prefix}-{_kebab(logical_id)}")
        try:
            arn = events.create_event_bus(Name=name)["EventBusArn"]
        except ClientError as exc:
            if _code(exc) != "ResourceAlreadyExistsException":
                raise
            arn = events.describe_event_bus(Name=name)["Arn"]
        buses[logical_id] = refs[logical_id] = refs[f"{logical_id}.Name"] = name
        refs[f"{logical_id}.Arn"] = arn
    event_log_group = f"/{prefix}/delivered-events"
    if buses:
        _archive_events(boto3.client("logs", region_name=region), events, next(iter(buses.values())), event_log_group)

    secret_arns: dict[str, str] = {}
    for logical_id, res in template.resources_of_type("AWS::SecretsManager::Secret").items():
        if logical_id in ref_overrides:
            secret_arns[logical_id] = str(ref_overrides[logical_id])
            continue
        props = template.resolve(res.get("Properties") or {}, refs)
        secret_arns[logical_id] = refs[logical_id] = _create_secret(secretsmanager, f"{prefix}/{logical_id}", props)
    # The fal key's secret is a required parameter (deployed stacks never run without it): locally
    # a stand-in secret takes its place, so the functions' env and IAM grants name a real ARN.
    if FAL_KEY_SECRET_PARAMETER in template.parameters and FAL_KEY_SECRET_PARAMETER not in ref_overrides:
        refs[FAL_KEY_SECRET_PARAMETER] = _create_secret(
            secretsmanager, f"{prefix}/fal-key", {"SecretString": "local-simulator-key"}
        )

    # Push is ON locally: moto's SNS plays APNs and FCM, with one local platform application each.
    from devstack.push_local import PLATFORM_PARAMETERS, create_applications

    if any(p in template.parameters and p not in ref_overrides for p in PLATFORM_PARAMETERS):
        wanted = [p for p in template.parameters if p in PLATFORM_PARAMETERS and p not in ref_overrides]
        refs.update(create_applications(boto3.client("sns", region_name=region), prefix, wanted))

    machines = template.resources_of_type("AWS::Serverless::StateMachine")
    if not machines:
        raise ValueError("the template defines no AWS::Serverless::StateMachine")
    sm_logical_id, sm_res = next(iter(machines.items()))
    sm_name = str(
        ref_overrides.get(f"{sm_logical_id}.Name")
        or template.resolve((sm_res.get("Properties") or {}).get("Name"), refs)
        or f"{prefix}-{_kebab(sm_logical_id)}"
    )
    sm_arn = f"arn:aws:states:{region}:{ACCOUNT_ID}:stateMachine:{sm_name}"
    refs[sm_logical_id] = sm_arn
    refs[f"{sm_logical_id}.Arn"] = sm_arn
    refs[f"{sm_logical_id}.Name"] = sm_name
    refs.update(ref_overrides)

    role_arn = _ensure_role(iam, f"{prefix}-{sm_logical_id}"[:64])
    definition = template.state_machine_definition(refs, sm_logical_id)
    sm_type = str(template.resolve((sm_res.get("Properties") or {}).get("Type", "STANDARD"), refs))
    sm_arn = _ensure_state_machine(sfn, sm_name, definition, role_arn, sm_type)

    from devstack import s3_events

    s3_events.configure(s3, template, refs)  # the buckets' S3 event notifications, as deployed

    functions = template.functions(refs)
    for rule in template.event_rules(refs):  # delivered to the in-process handler (devstack.event_targets)
        events.put_rule(Name=rule.rule_name, EventBusName=rule.bus, EventPattern=json.dumps(rule.pattern))
        events.put_targets(
            Rule=rule.rule_name,
            EventBusName=rule.bus,
            Targets=[{"Id": rule.function, "Arn": str(refs[f"{rule.function}.Arn"])}],
        )
    env: dict[str, str] = {}
    for fn in functions.values():  # one process runs them all: a value one function blanks keeps the others'
        env.update({k: v for k, v in fn.environment.items() if v or k not in env})
    env.update({k: str(v) for k, v in env_overrides.items()})

    return LocalResources(
        table_name=next(iter(tables.values()), ""),
        bucket_name=next(iter(buckets.values()), ""),
        event_bus_name=next(iter(buses.values()), ""),
        state_machine_arn=sm_arn,
        event_log_group=event_log_group if buses else "",
        function_arns={lid: str(refs[f"{lid}.Arn"]) for lid in functions},
        env=env,
        secret_arns=secret_arns,
        refs={k: v if isinstance(v, str) else json.dumps(v) for k, v in refs.items()},
    )


def create_table(dynamodb: Any, table_name: str, spec: Mapping[str, Any]) -> None:
    """Create one table from a :meth:`SamTemplate.table_specs` entry (TTL and PITR included); reuse it if it exists."""
    kwargs = dict(spec)
    ttl_attribute = kwargs.pop("TimeToLiveAttribute", None)
    try:
        dynamodb.create_table(TableName=table_name, **kwargs)
    except ClientError as exc:
        if _code(exc) != "ResourceInUseException":
            raise
    dynamodb.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    if ttl_attribute:
        current = dynamodb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") not in {"ENABLED", "ENABLING"}:
            dynamodb.update_time_to_live(
                TableName=table_name,
                TimeToLiveSpecification={"AttributeName": ttl_attribute, "Enabled": True},
            )
    dynamodb.update_continuous_backups(
        TableName=table_name,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
    )


def _create_bucket(s3: Any, name: str, region: str) -> None:
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        if _code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
            raise
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )


def _archive_events(logs: Any, events: Any, bus: str, log_group: str) -> None:
    """A rule on ``bus`` matching every event, targeting ``log_group`` (moto delivers to it)."""
    try:
        logs.create_log_group(logGroupName=log_group)
    except ClientError as exc:
        if _code(exc) != "ResourceAlreadyExistsException":
            raise
    rule = "local-delivered-events"
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": [{"prefix": ""}]}))
    arn = f"arn:aws:logs:{events.meta.region_name}:{ACCOUNT_ID}:log-group:{log_group}"
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "archive", "Arn": arn}])


def _create_secret(secretsmanager: Any, name: str, props: Mapping[str, Any]) -> str:
    try:
        return str(secretsmanager.describe_secret(SecretId=name)["ARN"])
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
    if "SecretString" in props:
        value = str(props["SecretString"])
    else:
        gen = props.get("GenerateSecretString") or {}
        alphabet = string.ascii_letters + string.digits
        if not gen.get("ExcludePunctuation", False):
            alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
        excluded = set(str(gen.get("ExcludeCharacters", "")))
        alphabet = "".join(c for c in alphabet if c not in excluded)
        value = "".join(secrets.choice(alphabet) for _ in range(int(gen.get("PasswordLength", 32))))
    return str(secretsmanager.create_secret(Name=name, SecretString=value)["ARN"])


def _ensure_role(iam: Any, name: str) -> str:
    try:
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])
    except ClientError as exc:
        if _code(exc) not in {"NoSuchEntity", "NoSuchEntityException"}:
            raise
    return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(_STATES_TRUST_POLICY))["Role"]["Arn"])


def _ensure_state_machine(sfn: Any, name: str, definition: str, role_arn: str, sm_type: str) -> str:
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                sfn.update_state_machine(
                    stateMachineArn=machine["stateMachineArn"], definition=definition, roleArn=role_arn
                )
                return str(machine["stateMachineArn"])
    return str(
        sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn, type=sm_type)["stateMachineArn"]
    )


def _kebab(logical_id: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", logical_id).lower()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))

"""Least privilege, proven: every AWS call a function makes is checked against its role.

moto does not evaluate IAM, so the local stack would run just as well with roles that
allow too little. This module closes that gap:

* :func:`function_policies` expands ``template.yaml`` with aws-sam-translator (the
  library SAM CLI deploys with), so SAM policy templates such as ``DynamoDBCrudPolicy``
  become the IAM statements a deployed role gets, and resolves them against a local
  stack's names and ARNs.
* :class:`CallRecorder` hooks botocore's ``provide-client-params`` event on every client
  created after :meth:`CallRecorder.install` (API calls *and* presigned URLs, whose
  later GET is authorised with the signer's role), maps each call to the IAM actions
  and resource ARNs AWS evaluates for it (:func:`authorizations`), and records it for
  the function running in the current thread (:func:`acting_as`, which
  :class:`devstack.lambdas.LocalLambdas` wraps around every invocation).
* :func:`is_allowed` is a small IAM matcher: ``Action``/``NotAction`` with ``*`` and
  ``?`` wildcards (case-insensitive), ``Resource``/``NotResource`` ARN globs
  (case-sensitive), explicit ``Deny`` over ``Allow``. Condition blocks are not
  evaluated: a statement with a ``Condition`` never proves an ``Allow`` (the call is
  reported as not allowed) and always applies as a ``Deny``, so the check errs towards
  failing. None of the functions' roles carries a condition today.
* :func:`report` lists denied calls (the suite fails on any) and every granted action
  no recorded call used, with the reason it is kept (:data:`KEPT_UNUSED`).

The test suite installs a recorder for the whole session (tests/conftest.py) and fails
when a call is denied; the chaos run can do the same: ``recorder = install_recorder()``
before the stack starts, then ``print(report(recorder))`` and exit non-zero when
``recorder.denied()`` is not empty.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session

from devstack.template import SamTemplate

# --- the roles, as deployed -------------------------------------------------------------

_URI_PROPERTIES = ("CodeUri", "ContentUri", "DefinitionUri")

RUNTIME_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": "the Lambda runtime writes the function's logs",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": "the Lambda runtime sends the X-Ray segments (Tracing: Active)",
}
"""Managed policies SAM attaches to every function role, used by the runtime, never by our code."""

_TRANSFER = (
    "the video transfer WebhookFunction runs (adapters/media.py): it also finishes jobs here; part copies read"
    " _staging/, a failed transfer aborts its upload and deletes the parts"
)
_TABLE = "JobsTableAccess is one policy for the one store every function uses (GetItem, Query, PutItem, UpdateItem)"
KEPT_UNUSED: dict[tuple[str, str], str] = {
    ("*", "secretsmanager:GetSecretValue"): (
        "read once per cold start in AWS; the local stack passes the fal key, the webhook token and the Play"
        " service account's key in the environment instead, and its functions share one process, whose"
        " Powertools secret cache serves the account-token secret one of them read to the others, so no local"
        " call may show it"
    ),
    (
        "ReconcileFunction",
        "sqs:SendMessage",
    ): "Lambda itself sends a failed asynchronous run to ReconcileDeadLetterQueue",
    (
        "ApiFunction",
        "s3:GetObject",
    ): "presigned GETs of finished videos (the e2e stack that serves them runs in a subprocess)",
    (
        "NotifierFunction",
        "sqs:SendMessage",
    ): "Lambda itself sends a failed asynchronous run to NotifierDeadLetterQueue",
    ("NotifierFunction", "s3:GetObject"): "presigns the poster of a rich notification once the media λ stored it",
    (
        "NotifierFunction",
        "sns:SetEndpointAttributes",
    ): "a token whose endpoint SNS already has (other attributes) is taken over at the first send",
    ("FalSubmitFunction", "events:PutEvents"): "a submit fal rejects fails the job, which emits Job Failed",
    (
        "UploadValidatorFunction",
        "sqs:SendMessage",
    ): "Lambda itself sends an S3 event that failed its retries to UploadValidatorDeadLetterQueue",
    ("WebhookFunction", "dynamodb:Query"): "the ByFalRequest lookup of a delivery whose job id is unknown",
    **{
        (fn, action): (
            "the outbox of a job this function ends (a cancel, a submit fal refused) removes a video an actor"
            " stored and died with, found by listing the job's prefix (JobFinisher.publish); only a crash"
            " between the store and the transition leaves one (tests/unit/test_job_finisher.py)"
        )
        for fn in ("ApiFunction", "FalSubmitFunction")
        for action in ("s3:DeleteObject", "s3:ListBucket")
    },
    ("MediaFunction", "s3:ListBucket"): (
        "S3 answers a missing key 403 without it, 404 with it: a video gone before its poster was cut is"
        " VideoMissing (final), not a retried AccessDenied"
    ),
    ("MediaFunction", "sqs:SendMessage"): "Lambda itself sends a failed asynchronous run to MediaDeadLetterQueue",
    ("*", "dynamodb:Query"): _TABLE,
    ("*", "dynamodb:PutItem"): _TABLE,
    ("*", "dynamodb:UpdateItem"): _TABLE,
    ("*", "dynamodb:GetItem"): _TABLE,
    **{
        (fn, action): _TRANSFER
        for fn in ("WebhookFunction", "FalCheckFunction", "JobFailFunction", "ReconcileFunction")
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListBucket")
    },
}
"""Granted actions no local call uses, kept on purpose, with the reason (the report prints it)."""


class _NoManagedPolicies:
    """The translator asks for managed policy ARNs only for policies named by name; the template names none."""

    def load(self) -> dict[str, str]:
        return {}


@functools.cache
def _translated_roles(path: str) -> dict[str, dict[str, Any]]:
    """Function logical id -> its translated ``AWS::IAM::Role`` properties (intrinsics unresolved)."""
    from samtranslator.translator.transform import transform

    template = SamTemplate.load(Path(path))
    data = copy.deepcopy(template.data)
    for res in data["Resources"].values():
        props = res.get("Properties") or {}
        for key in _URI_PROPERTIES:
            if key in props:  # the translator wants S3 URIs (sam package writes them); policies do not depend on them
                props[key] = f"s3://local/{key}"
    params = {name: spec.get("Default", "") for name, spec in template.parameters.items()}
    params["AWS::Region"] = "us-east-1"  # only to satisfy the translator; the local refs resolve the ARNs
    out = transform(data, params, _NoManagedPolicies())
    roles: dict[str, dict[str, Any]] = {}
    for logical_id in template.resources_of_type("AWS::Serverless::Function"):
        role = out["Resources"].get(f"{logical_id}Role")
        if role is None or role["Type"] != "AWS::IAM::Role":
            raise ValueError(f"{logical_id} has no generated role (an explicit Role is not supported here)")
        roles[logical_id] = role["Properties"]
    return roles


@dataclass(frozen=True)
class Grant:
    """One statement's action pattern on its resource patterns (for the unused-grant report)."""

    function: str
    action: str
    resources: tuple[str, ...]


def function_policies(template: SamTemplate, refs: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Function logical id -> the IAM statements of its role (inline policies), resolved against ``refs``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for logical_id, role in _translated_roles(str(template.path)).items():
        statements: list[dict[str, Any]] = []
        # a policy under Fn::If (e.g. the media CDN's key, only with MediaCdn=on) is resolved with its condition
        policies = template.resolve(role.get("Policies") or [], refs) or []
        documents = [policy["PolicyDocument"] for policy in policies]
        documents += [
            template.resources[name]["Properties"]["PolicyDocument"]
            for name in _own_managed(template, role, f"{logical_id}Role")
        ]
        for document in documents:
            found = template.resolve(document, refs)["Statement"]
            statements.extend(found if isinstance(found, list) else [found])
        out[logical_id] = statements
    return out


def _own_managed(template: SamTemplate, role: Mapping[str, Any], role_id: str = "") -> list[str]:
    """Logical ids of the template's own ``AWS::IAM::ManagedPolicy`` resources attached to ``role``:
    named in its ``ManagedPolicyArns``, or naming the role (``Roles: [!Ref <Function>Role]``, how a
    policy on a resource that depends on the function is attached without a cycle)."""
    managed = template.resources_of_type("AWS::IAM::ManagedPolicy")
    refs = [arn.get("Ref") for arn in role.get("ManagedPolicyArns") or [] if isinstance(arn, Mapping)]
    for name, policy in managed.items():
        roles = (policy.get("Properties") or {}).get("Roles") or []
        if role_id and {"Ref": role_id} in roles and name not in refs:
            refs.append(name)
    return [str(name) for name in refs if name in managed]


def managed_policy_arns(template: SamTemplate) -> dict[str, list[str]]:
    """Function logical id -> the AWS managed policies (ARNs) of its role; the template's own are statements."""
    return {
        logical_id: [str(arn) for arn in role.get("ManagedPolicyArns") or [] if isinstance(arn, str)]
        for logical_id, role in _translated_roles(str(template.path)).items()
    }


# --- the matcher ------------------------------------------------------------------------


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    # IAM wildcards: * any run of characters (":" and "/" included), ? exactly one character.
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, 0 if case_sensitive else re.IGNORECASE)


def _matches_any(patterns: list[str], value: str, case_sensitive: bool) -> bool:
    return any(_glob(p, case_sensitive).fullmatch(value) for p in patterns)


def _statement_applies(statement: Mapping[str, Any], action: str, resource: str) -> bool:
    if "NotAction" in statement:
        action_ok = not _matches_any(_as_list(statement["NotAction"]), action, case_sensitive=False)
    else:
        action_ok = _matches_any(_as_list(statement.get("Action")), action, case_sensitive=False)
    if "NotResource" in statement:
        resource_ok = not _matches_any(_as_list(statement["NotResource"]), resource, case_sensitive=True)
    else:
        resource_ok = _matches_any(_as_list(statement.get("Resource")), resource, case_sensitive=True)
    return action_ok and resource_ok


def is_allowed(statements: Iterable[Mapping[str, Any]], action: str, resource: str) -> bool:
    """Whether an identity policy made of ``statements`` allows ``action`` on ``resource``.

    Explicit Deny wins; an Allow with a Condition is not taken as proof (see the module doc).
    """
    allowed = False
    for statement in statements:
        if not _statement_applies(statement, action, resource):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow" and not statement.get("Condition"):
            allowed = True
    return allowed


# --- calls -> IAM actions and resources -------------------------------------------------

_S3_ACTIONS = {  # S3 operations whose IAM action has another name (object-level unless listed in _S3_BUCKET_LEVEL)
    "HeadObject": "s3:GetObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "ListParts": "s3:ListMultipartUploadParts",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "DeleteObjects": "s3:DeleteObject",
}
_S3_BUCKET_LEVEL = {"ListObjectsV2", "ListObjects", "HeadBucket", "ListMultipartUploads"}
_DDB_TRANSACT = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _copy_source(source: Any, partition: str) -> str:
    if isinstance(source, Mapping):
        return f"arn:{partition}:s3:::{source['Bucket']}/{source['Key']}"
    bucket_key = str(source).lstrip("/").split("?", 1)[0]
    return f"arn:{partition}:s3:::{bucket_key}"


def authorizations(
    service: str, operation: str, params: Mapping[str, Any], region: str, account: str, partition: str = "aws"
) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs AWS authorises for one call (all must be allowed)."""
    if service == "s3":
        bucket = f"arn:{partition}:s3:::{params.get('Bucket', '')}"
        action = _S3_ACTIONS.get(operation, f"s3:{operation}")
        if operation in _S3_BUCKET_LEVEL:
            return [(action, bucket)]
        if operation == "DeleteObjects":
            keys = [o["Key"] for o in (params.get("Delete") or {}).get("Objects") or []]
            return [(action, f"{bucket}/{key}") for key in keys]
        pairs = [(action, f"{bucket}/{params.get('Key', '')}")]
        if operation in ("CopyObject", "UploadPartCopy"):
            pairs.append(("s3:GetObject", _copy_source(params.get("CopySource"), partition)))
        return pairs
    if service == "dynamodb":
        table = f"arn:{partition}:dynamodb:{region}:{account}:table/"
        if operation == "TransactWriteItems":
            return [
                (f"dynamodb:{_DDB_TRANSACT[kind]}", table + body["TableName"])
                for item in params.get("TransactItems") or []
                for kind, body in item.items()
            ]
        if operation == "TransactGetItems":
            return [("dynamodb:GetItem", table + i["Get"]["TableName"]) for i in params.get("TransactItems") or []]
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [(f"dynamodb:{operation}", table + name) for name in params.get("RequestItems") or {}]
        arn = table + str(params.get("TableName", ""))
        if params.get("IndexName"):
            arn += f"/index/{params['IndexName']}"
        return [(f"dynamodb:{operation}", arn)]
    if service == "events":
        buses = {str(e.get("EventBusName") or "default") for e in params.get("Entries") or []} or {"default"}
        return [
            (
                f"events:{operation}",
                b if b.startswith("arn:") else f"arn:{partition}:events:{region}:{account}:event-bus/{b}",
            )
            for b in sorted(buses)
        ]
    if service == "states":
        arn = params.get("stateMachineArn") or params.get("executionArn") or "*"
        return [(f"states:{operation}", str(arn))]
    if service == "secretsmanager":
        secret = str(params.get("SecretId", ""))
        if not secret.startswith("arn:"):
            secret = f"arn:{partition}:secretsmanager:{region}:{account}:secret:{secret}"
        return [(f"secretsmanager:{operation}", secret)]
    if service == "sqs":
        return [(f"sqs:{operation}", str(params.get("QueueUrl", "*")))]
    if service == "sns":  # mobile push: the platform application, or the endpoint, the call names
        arn = params.get("TargetArn") or params.get("EndpointArn") or params.get("PlatformApplicationArn")
        arn = arn or params.get("TopicArn") or "*"
        return [(f"sns:{operation}", str(arn))]
    if service == "lambda":
        name = str(params.get("FunctionName", ""))
        arn = name if name.startswith("arn:") else f"arn:{partition}:lambda:{region}:{account}:function:{name}"
        return [("lambda:InvokeFunction" if operation == "Invoke" else f"lambda:{operation}", arn)]
    return [(f"{service}:{operation}", "*")]


# --- recording --------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleContext:
    """What a running function may do: its logical id and its role's resolved statements."""

    function: str
    statements: tuple[Mapping[str, Any], ...]
    account: str
    grants: tuple[Grant, ...]
    recorder: CallRecorder | None = None
    """Only this recorder sees the calls (a test of the recorder itself); None: every installed one."""


_current: contextvars.ContextVar[RoleContext | None] = contextvars.ContextVar("videogen_iam_role", default=None)

_roles_cache: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, RoleContext]] = {}
_roles_lock = threading.Lock()


def roles_for(template: SamTemplate, refs: Mapping[str, Any]) -> dict[str, RoleContext]:
    """Each function's :class:`RoleContext` for one local stack (cached per template and refs)."""
    key = (str(template.path), tuple(sorted((k, str(v)) for k, v in refs.items())))
    with _roles_lock:
        if key not in _roles_cache:
            account = str(refs.get("AWS::AccountId", "123456789012"))
            contexts: dict[str, RoleContext] = {}
            for logical_id, statements in function_policies(template, refs).items():
                grants = tuple(
                    Grant(logical_id, action, tuple(_as_list(st.get("Resource"))))
                    for st in statements
                    if st.get("Effect") == "Allow"
                    for action in _as_list(st.get("Action"))
                )
                contexts[logical_id] = RoleContext(logical_id, tuple(statements), account, grants)
            _roles_cache[key] = contexts
        return _roles_cache[key]


@contextlib.contextmanager
def acting_as(role: RoleContext) -> Iterator[None]:
    """AWS calls made in this thread meanwhile are checked against ``role``."""
    token = _current.set(role)
    try:
        yield
    finally:
        _current.reset(token)


@dataclass(frozen=True)
class Call:
    function: str
    action: str
    resource: str
    allowed: bool


@dataclass
class CallRecorder:
    """Every AWS call of an in-process function, with whether its role allows it."""

    calls: dict[Call, int] = field(default_factory=dict)
    grants: set[Grant] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _original: Any = None

    def install(self) -> None:
        """Hook every botocore client created from now on (any session)."""
        if self._original is not None:
            return
        original = botocore.session.Session.create_client
        recorder = self

        @functools.wraps(original)
        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            client.meta.events.register(
                "provide-client-params", functools.partial(recorder._on_call, client.meta.region_name)
            )
            if client.meta.service_model.service_name == "s3":
                recorder._watch_presigned_post(client)
            return client

        self._original = original
        botocore.session.Session.create_client = create_client  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        if self._original is not None:
            botocore.session.Session.create_client = self._original  # type: ignore[method-assign]
            self._original = None

    def _watch_presigned_post(self, client: Any) -> None:
        """A presigned POST is authorised, when the app sends it, as ``s3:PutObject`` of its key
        with the signer's role. botocore signs it through the ``CreateBucket`` operation model
        (whose event :meth:`_on_call` skips): record it as the ``PutObject`` it is."""
        original = client.generate_presigned_post
        region = client.meta.region_name

        @functools.wraps(original)
        def generate_presigned_post(Bucket: str, Key: str, *args: Any, **kwargs: Any) -> Any:
            self._record(region, "s3", "PutObject", {"Bucket": Bucket, "Key": Key})
            return original(Bucket, Key, *args, **kwargs)

        client.generate_presigned_post = generate_presigned_post

    def _on_call(
        self,
        region: str,
        params: Mapping[str, Any] | None = None,
        model: Any = None,
        context: Mapping[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if model is None:
            return
        if model.name == "CreateBucket" and (context or {}).get("is_presign_request"):
            return  # generate_presigned_post's signing model: recorded as PutObject by _watch_presigned_post
        self._record(region, str(model.service_model.signing_name), str(model.name), params or {})

    def _record(self, region: str, service: str, operation: str, params: Mapping[str, Any]) -> None:
        role = _current.get()
        if role is None:
            return  # test set-up and the local stack's own calls, not a function's
        if role.recorder is not None and role.recorder is not self:
            return
        for action, resource in authorizations(service, operation, params, region or "", role.account):
            call = Call(role.function, action, resource, is_allowed(role.statements, action, resource))
            with self._lock:
                self.calls[call] = self.calls.get(call, 0) + 1
                self.grants.update(role.grants)

    def denied(self) -> list[Call]:
        with self._lock:
            return sorted((c for c in self.calls if not c.allowed), key=lambda c: (c.function, c.action, c.resource))

    def unused_grants(self) -> list[Grant]:
        """Granted (function, action pattern) pairs that no recorded call of that function matched."""
        with self._lock:
            used = [(c.function, c.action) for c in self.calls if c.allowed]
            grants = sorted(self.grants, key=lambda g: (g.function, g.action))
        unused: dict[tuple[str, str], Grant] = {}  # one line per function and action, whatever stack granted it
        for g in grants:
            if not any(fn == g.function and _glob(g.action, False).fullmatch(action) for fn, action in used):
                unused.setdefault((g.function, g.action), g)
        return list(unused.values())


_recorder: CallRecorder | None = None


def install_recorder() -> CallRecorder:
    """The process's one recorder, installed (idempotent): for the test session and the chaos run."""
    global _recorder
    if _recorder is None:
        _recorder = CallRecorder()
    _recorder.install()
    return _recorder


def active_recorder() -> CallRecorder | None:
    return _recorder


def report(recorder: CallRecorder, template: SamTemplate | None = None) -> str:
    """The denied calls, the calls per function, and each unused grant with the reason it is kept."""
    lines: list[str] = []
    denied = recorder.denied()
    with recorder._lock:
        calls = dict(recorder.calls)
    lines.append(
        f"IAM check: {sum(calls.values())} AWS calls by the functions, {len(denied)} not allowed by their role"
    )
    for call in denied:
        lines.append(f"  DENIED {call.function}: {call.action} on {call.resource}")
    used: dict[tuple[str, str], int] = {}
    for call, n in calls.items():
        used[(call.function, call.action)] = used.get((call.function, call.action), 0) + n
    lines.append("calls per function and action:")
    for (function, action), n in sorted(used.items()):
        lines.append(f"  {function:<18} {action:<34} {n}")
    unused = recorder.unused_grants()
    lines.append(f"granted, never called: {len(unused)}")
    for grant in unused:
        reason = kept_reason(grant) or "NO REASON: remove it from the template or give one"
        lines.append(f"  {grant.function:<18} {grant.action:<34} {reason}")
    if template is not None:
        for function, arns in sorted(managed_policy_arns(template).items()):
            for arn in arns:
                why = RUNTIME_MANAGED_POLICIES.get(arn, "NO REASON")
                lines.append(f"  {function:<18} {arn.rsplit('/', 1)[-1]:<34} managed: {why}")
    return "\n".join(lines)


def kept_reason(grant: Grant) -> str | None:
    """Why an unused grant stays (:data:`KEPT_UNUSED`, the function's own entry first), or None."""
    return KEPT_UNUSED.get((grant.function, grant.action)) or KEPT_UNUSED.get(("*", grant.action))


def unjustified(recorder: CallRecorder) -> list[Grant]:
    """Unused grants without a reason in :data:`KEPT_UNUSED`."""
    return [g for g in recorder.unused_grants() if kept_reason(g) is None]

"""Run the template's Lambda handlers in-process, and answer ``lambda:Invoke`` with them.

No Lambda service, no Docker: :class:`LocalLambdas` imports each function's real
``functions/<dir>/app.py`` (by file path, under a unique module name) and, once
installed, short-circuits every boto3 ``lambda:Invoke`` made from a session it
is installed on (moto's Step Functions interpreter uses boto3's default session)
by running the handler in this process. Handler exceptions come back exactly
like real Lambda's: ``FunctionError: "Unhandled"`` and a payload
``{"errorType": <exception class name>, "errorMessage": ..., ...}``, so ASL
``Retry``/``Catch`` on names like ``FalTransientError`` behave as deployed.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, cast
from urllib.parse import unquote

import boto3
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody

from devstack import iam
from devstack.provision import LocalResources
from devstack.template import ROOT, FunctionDef, SamTemplate

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]

_LAYER_DIR = ROOT / "layers" / "videogen"
_EVENT = "before-call.lambda.Invoke"


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    timeout_s: int = 30
    started_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        remaining = self.timeout_s - (time.monotonic() - self.started_at)
        return max(0, int(remaining * 1000))


class UnknownFunction(KeyError):
    """``invoke`` was given a name that is not one of the template's functions."""


class LocalLambdas:
    """The template's functions as in-process handlers, optionally answering boto3 ``lambda:Invoke``."""

    def __init__(self, template: SamTemplate, resources: LocalResources) -> None:
        self.template = template
        self.resources = resources
        self.functions: dict[str, FunctionDef] = template.functions(resources.refs or None)
        self._handlers: dict[str, Handler] = {}
        self._overrides: dict[str, Handler] = {}
        self._lock = threading.RLock()
        self._installed: list[Any] = []  # event emitters we registered on
        self._unique_id = f"videogen-local-lambdas-{id(self)}"
        self._roles: dict[str, iam.RoleContext] | None = None  # each function's deployed role (devstack.iam)
        self._names: dict[str, str] = {}
        for logical_id in self.functions:
            self._names[logical_id] = logical_id
            arn = resources.function_arns.get(logical_id)
            if arn:
                self._names[arn] = logical_id
                self._names[arn.rsplit(":", 1)[-1]] = logical_id  # the function name

    # -- handlers --

    def override(self, logical_id: str, fn: Handler) -> None:
        """Answer ``logical_id``'s invocations with ``fn(event, context)`` instead of its real handler (tests)."""
        self._function(logical_id)
        with self._lock:
            self._overrides[logical_id] = fn

    def clear_overrides(self) -> None:
        with self._lock:
            self._overrides.clear()

    def handler(self, logical_id: str) -> Handler:
        """The function's handler (its override if one is set), imported on first use and cached."""
        fn_def = self._function(logical_id)
        with self._lock:
            if logical_id in self._overrides:
                return self._overrides[logical_id]
            if logical_id not in self._handlers:
                self._handlers[logical_id] = self._import_handler(fn_def)
            return self._handlers[logical_id]

    def _function(self, logical_id: str) -> FunctionDef:
        try:
            return self.functions[logical_id]
        except KeyError:
            raise UnknownFunction(f"no function {logical_id!r} in {self.template.path.name}") from None

    def _import_handler(self, fn_def: FunctionDef) -> Handler:
        module_file, _, attr = fn_def.handler.rpartition(".")
        path = fn_def.code_dir / (module_file.replace(".", "/") + ".py")
        module_name = f"videogen_fn_{fn_def.code_dir.name}"
        if module_file != "app":
            module_name += "_" + module_file.replace(".", "_")
        module = sys.modules.get(module_name)
        if module is None or getattr(module, "__file__", None) != str(path):
            module = self._load_module(module_name, path, fn_def)
        handler: Handler = getattr(module, attr)
        return handler

    @staticmethod
    def _load_module(module_name: str, path: Any, fn_def: FunctionDef) -> ModuleType:
        layer = str(_LAYER_DIR)
        if _LAYER_DIR.is_dir() and layer not in sys.path:
            sys.path.insert(0, layer)
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        # As in Lambda, the function's own directory is importable while it loads.
        code_dir = str(fn_def.code_dir)
        sys.path.insert(0, code_dir)
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        finally:
            if code_dir in sys.path:
                sys.path.remove(code_dir)
        return module

    # -- invocation --

    def logical_id_for(self, function_name_or_arn: str) -> str:
        """Map a logical id, local function name, (partial) ARN, optionally qualified, to the logical id."""
        name = function_name_or_arn
        if name in self._names:
            return self._names[name]
        parts = name.split(":")
        if "function" in parts:
            index = parts.index("function")
            if index + 1 < len(parts) and parts[index + 1] in self._names:
                return self._names[parts[index + 1]]
        elif len(parts) == 2 and parts[0] in self._names:  # name:qualifier
            return self._names[parts[0]]
        raise UnknownFunction(f"Function not found: {function_name_or_arn}")

    def context_for(self, logical_id: str) -> LambdaContext:
        fn_def = self._function(logical_id)
        arn = self.resources.function_arns.get(logical_id, logical_id)
        return LambdaContext(
            function_name=arn.rsplit(":", 1)[-1],
            memory_limit_in_mb=fn_def.memory,
            invoked_function_arn=arn,
            timeout_s=fn_def.timeout,
        )

    def invoke(self, function_name_or_arn: str, event: dict[str, Any]) -> Any:
        """Run the function's handler on ``event`` with a fake context; its exceptions propagate."""
        logical_id = self.logical_id_for(function_name_or_arn)
        handler = self.handler(logical_id)
        context = self.context_for(logical_id)
        if iam.active_recorder() is None:
            return handler(event, context)
        if self._roles is None:
            self._roles = iam.roles_for(self.template, self.resources.refs)
        with iam.acting_as(self._roles[logical_id]):  # its AWS calls are checked against its role
            return handler(event, context)

    # -- boto3 integration --

    def install(self, session: boto3.Session | None = None) -> None:
        """Answer ``lambda:Invoke`` in-process for clients created from now on from boto3's default session
        (and ``session``).

        Call it *after* ``moto.mock_aws()`` has started: moto swaps in a fresh
        ``boto3.DEFAULT_SESSION`` on start (and restores the old one on stop).
        """
        emitters = [boto3._get_default_session().events]
        if session is not None:
            emitters.append(session.events)
        for emitter in emitters:
            if any(e is emitter for e in self._installed):
                continue
            emitter.register(_EVENT, cast(Any, self._on_invoke), unique_id=self._unique_id)
            self._installed.append(emitter)

    def uninstall(self) -> None:
        for emitter in self._installed:
            emitter.unregister(_EVENT, cast(Any, self._on_invoke), unique_id=self._unique_id)
        self._installed.clear()

    def _on_invoke(
        self, model: Any = None, params: dict[str, Any] | None = None, **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]]:
        params = params or {}
        url_path = str(params.get("url_path", ""))
        function_name = unquote(url_path.split("/functions/", 1)[-1].rsplit("/invocations", 1)[0])
        headers = {str(k).lower(): v for k, v in (params.get("headers") or {}).items()}
        invocation_type = _text(headers.get("x-amz-invocation-type", "RequestResponse"))
        body = params.get("body") or b""
        if hasattr(body, "read"):
            body = body.read()
        raw = body.encode() if isinstance(body, str) else bytes(body)
        request_id = str(uuid.uuid4())

        try:
            logical_id = self.logical_id_for(function_name)
        except UnknownFunction:
            error = {"Code": "ResourceNotFoundException", "Message": f"Function not found: {function_name}"}
            return _response(
                404, {"Error": error, "Type": "User", "Message": error["Message"]}, request_id, error_code=error["Code"]
            )

        event = json.loads(raw) if raw.strip() else {}
        if invocation_type == "DryRun":
            return _response(204, {"StatusCode": 204, "Payload": _stream(b"")}, request_id)
        if invocation_type == "Event":
            threading.Thread(target=self._run_async, args=(logical_id, event), daemon=True).start()
            return _response(202, {"StatusCode": 202, "Payload": _stream(b"")}, request_id)

        parsed: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
        try:
            result = self.invoke(logical_id, event)
        except Exception as exc:
            logger.warning("local lambda %s raised %s: %s", logical_id, type(exc).__name__, exc, exc_info=True)
            payload = json.dumps(error_payload(exc, request_id)).encode()
            parsed["FunctionError"] = "Unhandled"
        else:
            try:
                payload = json.dumps(result).encode()
            except (TypeError, ValueError) as exc:  # what the Python runtime reports for an unserializable result
                body = {"errorMessage": f"Unable to marshal response: {exc}", "errorType": "Runtime.MarshalError"}
                payload = json.dumps({**body, "requestId": request_id, "stackTrace": []}).encode()
                parsed["FunctionError"] = "Unhandled"
        parsed["Payload"] = _stream(payload)
        extra = {"x-amz-function-error": parsed["FunctionError"]} if "FunctionError" in parsed else {}
        return _response(200, parsed, request_id, extra_headers=extra)

    def _run_async(self, logical_id: str, event: dict[str, Any]) -> None:
        try:
            self.invoke(logical_id, event)
        except Exception:
            logger.exception("local lambda %s (async) failed", logical_id)


def error_payload(exc: BaseException, request_id: str | None = None) -> dict[str, Any]:
    """The payload real Lambda (Python runtime) returns for an unhandled exception.

    An exception may name the error Lambda would report instead of its class
    (``lambda_error_type``): a simulated crash reports ``Runtime.ExitError``, as a
    runtime that died does.
    """
    return {
        "errorMessage": str(exc),
        "errorType": getattr(exc, "lambda_error_type", None) or type(exc).__name__,
        "requestId": request_id or str(uuid.uuid4()),
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def _stream(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _response(
    status: int,
    parsed: dict[str, Any],
    request_id: str,
    *,
    extra_headers: dict[str, str] | None = None,
    error_code: str | None = None,
) -> tuple[AWSResponse, dict[str, Any]]:
    headers = {"x-amzn-requestid": request_id, "content-type": "application/json", **(extra_headers or {})}
    if error_code:
        headers["x-amzn-errortype"] = error_code
    http = AWSResponse("http://lambda.local", status, cast(Any, headers), None)
    parsed["ResponseMetadata"] = {
        "RequestId": request_id,
        "HTTPStatusCode": status,
        "HTTPHeaders": headers,
        "RetryAttempts": 0,
    }
    return http, parsed

"""Read ``template.yaml`` so the local stack and the tests use the deployed shapes.

Routes, functions (Globals merged in), table schemas and the state machine
definition all come from the SAM template itself: the template is the single
source of truth, the local stack only interprets it. CloudFormation intrinsic
functions are resolved against a caller-supplied ``refs`` mapping.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT: Path = Path(__file__).resolve().parent.parent
"""The project root (the directory holding ``template.yaml``)."""

DEFAULT_TEMPLATE = ROOT / "template.yaml"

PSEUDO_PARAMETER_DEFAULTS: dict[str, Any] = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "videogen-local",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/videogen-local/local",
    "AWS::NotificationARNs": [],
}


class UnresolvedReference(KeyError):
    """A ``Ref``/``GetAtt`` (or ``${...}``) names something ``refs`` does not hold."""


class _NoValue:
    """``AWS::NoValue``: removes the enclosing property or list item."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()

# --- YAML with CloudFormation short-form tags ------------------------------------------

_FN_TAGS = (
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
)


class CfnLoader(yaml.SafeLoader):
    """A safe YAML loader that turns ``!Ref x`` into ``{"Ref": "x"}``, ``!Sub s`` into ``{"Fn::Sub": s}``, ..."""


def _construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node!r}", node.start_mark)


def _fn_constructor(name: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        return {name: _construct(loader, node)}

    return construct


def _construct_getatt(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    value = _construct(loader, node)
    if isinstance(value, str):
        logical_id, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [logical_id, attribute]}
    return {"Fn::GetAtt": value}


CfnLoader.add_constructor("!Ref", _fn_constructor("Ref"))
CfnLoader.add_constructor("!Condition", _fn_constructor("Condition"))
CfnLoader.add_constructor("!GetAtt", _construct_getatt)
for _tag in _FN_TAGS:
    CfnLoader.add_constructor(f"!{_tag}", _fn_constructor(f"Fn::{_tag}"))


def load_yaml(text: str) -> Any:
    """Parse CloudFormation/SAM YAML (short-form tags become their long-form dicts)."""
    return yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader


# --- the template's views ---------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str
    authorized: bool


@dataclass(frozen=True)
class FunctionDef:
    logical_id: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout: int
    memory: int


@dataclass(frozen=True)
class EventRule:
    """A function's ``EventBridgeRule`` event: a rule on a bus whose target is the function."""

    function: str
    event: str
    bus: str  # the bus name ("default" when the event names none)
    rule_name: str  # its ``RuleName``, or a name made from the function and event
    pattern: dict[str, Any]


class SamTemplate:
    """A parsed SAM template plus the views the local stack needs."""

    def __init__(self, data: dict[str, Any], path: Path) -> None:
        self.data = data
        self.path = path
        self.root = path.parent

    @classmethod
    def load(cls, path: Path | None = None) -> SamTemplate:
        path = Path(path or DEFAULT_TEMPLATE).resolve()
        data = load_yaml(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "Resources" not in data:
            raise ValueError(f"{path} is not a CloudFormation template")
        return cls(data, path)

    # -- raw sections --

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.data.get("Resources") or {})

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return dict(self.data.get("Parameters") or {})

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Logical id -> resource (``Type``, ``Properties``, ...) for one resource type, in template order."""
        return {lid: res for lid, res in self.resources.items() if res.get("Type") == resource_type}

    def parameter_defaults(self) -> dict[str, Any]:
        return {name: spec["Default"] for name, spec in self.parameters.items() if "Default" in spec}

    # -- intrinsic functions --

    def resolve(self, value: Any, refs: Mapping[str, Any], *, strict: bool = False) -> Any:
        """Resolve ``Ref``/``Fn::GetAtt``/``Fn::Sub``/``Fn::If``/... in ``value`` against ``refs``.

        ``refs`` maps a logical id, parameter or pseudo parameter name to its value
        (what ``Ref`` answers), and ``"LogicalId.Attribute"`` to what ``GetAtt``
        answers. Parameters absent from ``refs`` take their template default,
        pseudo parameters a local default (us-east-1, account 123456789012).
        Conditions are evaluated with the same values. A reference to anything
        else raises :class:`UnresolvedReference` when ``strict``, and otherwise
        resolves to its own name (``"JobsTable"``, ``"JobsTable.Arn"``).
        ``AWS::NoValue`` removes the property/list item (``None`` at top level).
        """
        out = _Resolver(self, refs, strict).resolve(value)
        return None if out is NO_VALUE else out

    def condition(self, name: str, refs: Mapping[str, Any]) -> bool:
        """Evaluate one of the template's ``Conditions``."""
        return _Resolver(self, refs, strict=False).condition(name)

    # -- views --

    def routes(self) -> list[Route]:
        """Every ``HttpApi`` event of every function, in template order."""
        globals_api = (self.data.get("Globals") or {}).get("HttpApi") or {}
        routes: list[Route] = []
        for logical_id, res in self.resources_of_type("AWS::Serverless::Function").items():
            events = (res.get("Properties") or {}).get("Events") or {}
            for event in events.values():
                if event.get("Type") != "HttpApi":
                    continue
                props = event.get("Properties") or {}
                api_auth = self._http_api_auth(props.get("ApiId"), globals_api)
                authorizer = (props.get("Auth") or {}).get("Authorizer") or api_auth.get("DefaultAuthorizer")
                routes.append(
                    Route(
                        method=str(props.get("Method", "ANY")).upper(),
                        path=str(props.get("Path", "$default")),
                        function=logical_id,
                        authorized=bool(authorizer) and authorizer != "NONE",
                    )
                )
        return routes

    def _http_api_auth(self, api_id: Any, globals_api: dict[str, Any]) -> dict[str, Any]:
        if isinstance(api_id, dict) and isinstance(api_id.get("Ref"), str):
            api = self.resources.get(api_id["Ref"]) or {}
            auth = (api.get("Properties") or {}).get("Auth")
            if auth:
                return dict(auth)
        return dict(globals_api.get("Auth") or {})

    def functions(self, refs: Mapping[str, Any] | None = None) -> dict[str, FunctionDef]:
        """Logical id -> :class:`FunctionDef`, ``Globals.Function`` merged in, env resolved through ``refs``."""
        refs = refs or {}
        global_props = (self.data.get("Globals") or {}).get("Function") or {}
        out: dict[str, FunctionDef] = {}
        for logical_id, res in self.resources_of_type("AWS::Serverless::Function").items():
            props = _merge_globals(global_props, res.get("Properties") or {})
            variables = ((props.get("Environment") or {}).get("Variables")) or {}
            resolved = self.resolve(variables, refs) or {}
            code_uri = self.resolve(props.get("CodeUri", "."), refs)
            out[logical_id] = FunctionDef(
                logical_id=logical_id,
                code_dir=(self.root / str(code_uri)).resolve(),
                handler=str(self.resolve(props.get("Handler", "app.lambda_handler"), refs)),
                environment={k: _env_str(v) for k, v in resolved.items()},
                timeout=int(self.resolve(props.get("Timeout", 3), refs)),
                memory=int(self.resolve(props.get("MemorySize", 128), refs)),
            )
        return out

    def event_rules(self, refs: Mapping[str, Any] | None = None) -> list[EventRule]:
        """Every ``EventBridgeRule`` event of every function, in template order, resolved through ``refs``."""
        refs = refs or {}
        rules: list[EventRule] = []
        for logical_id, res in self.resources_of_type("AWS::Serverless::Function").items():
            for name, event in ((res.get("Properties") or {}).get("Events") or {}).items():
                if event.get("Type") != "EventBridgeRule":
                    continue
                props = self.resolve(event.get("Properties") or {}, refs) or {}
                rules.append(
                    EventRule(
                        function=logical_id,
                        event=name,
                        bus=str(props.get("EventBusName") or "default"),
                        rule_name=str(props.get("RuleName") or f"{logical_id}-{name}"),
                        pattern=dict(props.get("Pattern") or {}),
                    )
                )
        return rules

    def table_specs(self) -> dict[str, dict[str, Any]]:
        """Logical id -> ``dynamodb.create_table`` kwargs (no ``TableName``) plus ``TimeToLiveAttribute``.

        ``TimeToLiveAttribute`` (the TTL attribute name, or ``None``) is not a
        ``create_table`` argument: pop it and pass it to ``update_time_to_live``.
        """
        specs: dict[str, dict[str, Any]] = {}
        for logical_id, res in self.resources_of_type("AWS::DynamoDB::Table").items():
            props = self.resolve(res.get("Properties") or {}, {})
            spec: dict[str, Any] = {
                "KeySchema": copy.deepcopy(props["KeySchema"]),
                "AttributeDefinitions": copy.deepcopy(props["AttributeDefinitions"]),
                "BillingMode": props.get("BillingMode", "PROVISIONED"),
            }
            if spec["BillingMode"] == "PROVISIONED":
                spec["ProvisionedThroughput"] = copy.deepcopy(props["ProvisionedThroughput"])
            for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
                if props.get(key):
                    spec[key] = [_index_spec(ix) for ix in props[key]]
            ttl = props.get("TimeToLiveSpecification") or {}
            spec["TimeToLiveAttribute"] = ttl.get("AttributeName") if ttl.get("Enabled", False) else None
            specs[logical_id] = spec
        return specs

    def state_machine_definition(self, substitutions: Mapping[str, Any], logical_id: str | None = None) -> str:
        """The ASL text of the (first, or named) state machine with its ``DefinitionSubstitutions`` applied.

        Each ``DefinitionSubstitutions`` value is resolved through ``substitutions``
        used as refs (e.g. ``{"FalSubmitFunction.Arn": "arn:..."}``); a
        substitution name given directly (``{"FalSubmitFunctionArn": "arn:..."}``)
        wins. Raises :class:`UnresolvedReference` if a ``${...}`` stays unresolved.
        """
        machines = {
            lid: res
            for lid, res in self.resources.items()
            if res.get("Type") in {"AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"}
        }
        if not machines:
            raise KeyError("the template has no state machine")
        lid = logical_id or next(iter(machines))
        props = machines[lid].get("Properties") or {}
        uri = props.get("DefinitionUri")
        if not isinstance(uri, str):
            raise ValueError(f"{lid}: only a local DefinitionUri file is supported")
        text = (self.root / uri).read_text(encoding="utf-8")
        raw_subs = props.get("DefinitionSubstitutions") or {}
        values = {name: self.resolve(v, substitutions, strict=True) for name, v in raw_subs.items()}
        values.update({k: v for k, v in substitutions.items() if k in raw_subs})

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                raise UnresolvedReference(f"{lid}: no substitution for ${{{name}}}")
            # The placeholders sit inside JSON strings: escape like a JSON string body.
            return json.dumps(str(values[name]))[1:-1]

        return re.sub(r"\$\{([A-Za-z0-9_.:]+)\}", replace, text)


# --- helpers -----------------------------------------------------------------------------


def _merge_globals(global_props: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals merge: maps merge recursively, lists concatenate, scalars from the resource win."""
    merged: dict[str, Any] = copy.deepcopy(dict(global_props))
    for key, value in props.items():
        base = merged.get(key)
        if isinstance(base, dict) and isinstance(value, dict) and not _is_intrinsic(value):
            merged[key] = _merge_globals(base, value)
        elif isinstance(base, list) and isinstance(value, list):
            merged[key] = base + copy.deepcopy(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _is_intrinsic(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and (next(iter(value)) in {"Ref", "Condition"} or next(iter(value)).startswith("Fn::"))
    )


def _index_spec(index: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
    return {k: copy.deepcopy(index[k]) for k in keep if k in index}


def _env_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_env_str(v) for v in value)
    return "" if value is None else str(value)


class _Resolver:
    def __init__(self, template: SamTemplate, refs: Mapping[str, Any], strict: bool) -> None:
        self.template = template
        self.refs = refs
        self.strict = strict
        self._conditions: dict[str, bool] = {}

    # references

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.refs:
            return self._param_value(name, self.refs[name])
        params = self.template.parameters
        if name in params:
            if "Default" not in params[name]:
                raise UnresolvedReference(f"parameter {name} has no default and no value in refs")
            return self._param_value(name, params[name]["Default"])
        if name in PSEUDO_PARAMETER_DEFAULTS:
            return PSEUDO_PARAMETER_DEFAULTS[name]
        if self.strict:
            raise UnresolvedReference(f"Ref {name}")
        return name

    def _param_value(self, name: str, value: Any) -> Any:
        spec = self.template.parameters.get(name) or {}
        if str(spec.get("Type", "")).startswith(("CommaDelimitedList", "List<")) and isinstance(value, str):
            return [v.strip() for v in value.split(",")] if value else []
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return value

    def getatt(self, logical_id: str, attribute: str) -> Any:
        key = f"{logical_id}.{attribute}"
        if key in self.refs:
            return self.refs[key]
        if self.strict:
            raise UnresolvedReference(f"GetAtt {key}")
        return key

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.data.get("Conditions") or {}
            if name not in conditions:
                raise KeyError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    # evaluation

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = (self.resolve(v) for v in value)
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if _is_intrinsic(value):
            ((fn, arg),) = value.items()
            return self.intrinsic(fn, arg)
        out = {}
        for key, item in value.items():
            resolved = self.resolve(item)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def intrinsic(self, fn: str, arg: Any) -> Any:
        if fn == "Ref":
            return self.ref(arg)
        if fn == "Condition":
            return self.condition(arg)
        if fn == "Fn::GetAtt":
            parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return self.getatt(str(self.resolve(parts[0])), str(self.resolve(parts[1])))
        if fn == "Fn::Sub":
            return self.sub(arg)
        if fn == "Fn::If":
            name, if_true, if_false = arg
            return self.resolve(if_true if self.condition(name) else if_false)
        if fn == "Fn::Equals":
            left, right = (self.resolve(v) for v in arg)
            return _scalar(left) == _scalar(right)
        if fn == "Fn::Not":
            return not self._truth(arg[0])
        if fn == "Fn::And":
            return all(self._truth(v) for v in arg)
        if fn == "Fn::Or":
            return any(self._truth(v) for v in arg)
        if fn == "Fn::Join":
            delimiter, items = arg
            return str(delimiter).join(_scalar(v) for v in self.resolve(items))
        if fn == "Fn::Split":
            delimiter, source = arg
            return str(self.resolve(source)).split(str(delimiter))
        if fn == "Fn::Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        if fn == "Fn::FindInMap":
            name, top, second = (self.resolve(v) for v in arg)
            return self.resolve(self.template.data["Mappings"][name][top][second])
        if fn == "Fn::GetAZs":
            region = self.resolve(arg) or self.ref("AWS::Region")
            return [f"{region}{zone}" for zone in "abc"]
        if fn == "Fn::Base64":
            return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        if fn == "Fn::ImportValue":
            name = str(self.resolve(arg))
            if name in self.refs:
                return self.refs[name]
            if self.strict:
                raise UnresolvedReference(f"ImportValue {name}")
            return name
        if fn == "Fn::Length":
            return len(self.resolve(arg))
        if fn == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg), separators=(",", ":"))
        raise NotImplementedError(f"{fn} is not supported by the local resolver")

    def _truth(self, value: Any) -> bool:
        return bool(self.resolve(value))

    def sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in (arg[1] or {}).items()}
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _scalar(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, _, attribute = name.partition(".")
                return _scalar(self.getatt(logical_id, attribute))
            return _scalar(self.ref(name))

        return re.sub(r"\$\{([^}]*)\}", replace, str(text))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        raise TypeError(f"expected a scalar, got {value!r}")
    return str(value)

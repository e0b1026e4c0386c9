"""Bicep parsed with its tree-sitter grammar and evaluated for given parameters, as ARM would.

No Bicep compiler or ARM is reachable here. This evaluates the part of Bicep the deployment
uses (literals, interpolation, objects, arrays, operators, ternaries, loops, conditions,
modules, parameter decorators and a few functions) into the resources a deployment would
send. What is only known on Azure (a resource's ID, an identity's principal ID) evaluates to
an ``Opaque`` placeholder; anything outside the subset raises ``UnsupportedBicep``, so a test
never passes on a guess.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

_PARSER = Parser(Language(tree_sitter_bicep.language()))
_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}

PUBLIC_CLOUD = {"name": "AzureCloud", "suffixes": {"storage": "core.windows.net"}}
US_GOVERNMENT_CLOUD = {"name": "AzureUSGovernment", "suffixes": {"storage": "core.usgovcloudapi.net"}}


class UnsupportedBicep(Exception):
    """Raised for Bicep this evaluator does not understand."""


class InvalidParameter(Exception):
    """Raised when a parameter value breaks its type or decorators, as a deployment would fail."""


class Opaque(str):
    """A value only Azure knows at deployment time, shown as ``<expression>``."""


def parse(source: str) -> Node:
    """The syntax tree of Bicep source; syntax errors raise."""
    root = _PARSER.parse(source.encode()).root_node
    if root.has_error:
        bad = next(_error_nodes(root))
        raise UnsupportedBicep(f"syntax error at line {bad.start_point[0] + 1}: {_text(bad)[:60]!r}")
    return root


def syntax_errors(source: str) -> list[int]:
    """Line numbers of ERROR or MISSING nodes in Bicep source."""
    return [n.start_point[0] + 1 for n in _error_nodes(_PARSER.parse(source.encode()).root_node)]


def _error_nodes(node: Node) -> Any:
    if node.type == "ERROR" or node.is_missing:
        yield node
    for child in node.children:
        yield from _error_nodes(child)


def _text(node: Node) -> str:
    return (node.text or b"").decode()


def _named(node: Node) -> list[Node]:
    return [c for c in node.children if c.is_named and c.type != "comment"]


@dataclass(frozen=True)
class Param:
    """A ``param`` declaration: its type, default and decorators (name to argument nodes)."""

    name: str
    type: str
    default: Node | None
    decorators: dict[str, list[Node]]


@dataclass
class Resource:
    """One resource as a deployment would send it."""

    symbol: str
    type: str
    name: str
    body: dict[str, Any]
    module: str


@dataclass
class Deployment:
    """What evaluating a Bicep file for some parameters produced, modules included."""

    params: dict[str, Any]
    resources: list[Resource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, kind: str) -> list[Resource]:
        """Every resource of a type (without API version)."""
        return [r for r in self.resources if r.type == kind]

    def one(self, kind: str) -> Resource:
        """The single resource of a type."""
        found = self.of_type(kind)
        assert len(found) == 1, f"{len(found)} resources of type {kind}"
        return found[0]


@dataclass(frozen=True)
class ResourceRef:
    """A resource symbol used as a value (``scope: vault``, ``parent: account``)."""

    symbol: str
    type: str
    name: Any

    def member(self, name: str) -> Any:
        if name == "name":
            return self.name
        if name == "id":
            return Opaque(f"<{self.type}/{self.name}>")
        return Opaque(f"<{self.symbol}.{name}>")


class BicepFile:
    """One Bicep file, its declarations indexed by name."""

    def __init__(self, path: Path, source: str | None = None) -> None:
        self.path = path
        self.root = parse(source if source is not None else path.read_text(encoding="utf-8"))
        self.params: dict[str, Param] = {}
        self.declarations: list[tuple[str, str, Node]] = []  # kind, symbol, node
        pending: dict[str, list[Node]] = {}
        for node in _named(self.root):
            if node.type == "decorators":
                for decorator in _named(node):
                    call = _named(decorator)[0]
                    target, args = _named(call)
                    pending[_text(target)] = _named(args) if args.type == "arguments" else []
                continue
            if node.type == "parameter_declaration":
                parts = _named(node)
                self.params[_text(parts[0])] = Param(
                    _text(parts[0]), _text(parts[1]), parts[2] if len(parts) > 2 else None, pending
                )
            elif node.type in ("variable_declaration", "resource_declaration", "module_declaration",
                               "output_declaration"):
                kind = node.type.split("_")[0].replace("variable", "var")
                self.declarations.append((kind, _text(_named(node)[0]), node))
            elif node.type not in ("target_scope_assignment", "import_statement", "metadata_declaration"):
                raise UnsupportedBicep(f"{path.name}: {node.type}")
            pending = {}

    def decorator_value(self, param: str, decorator: str) -> Any:
        """The value a parameter's decorator is given, e.g. the list of ``@allowed``."""
        return Evaluator(self, {}).eval(self.params[param].decorators[decorator][0])


@dataclass
class Evaluator:
    """Evaluates one Bicep file's declarations for the given parameters."""

    file: BicepFile
    values: dict[str, Any]
    cloud: Mapping[str, Any] = field(default_factory=lambda: PUBLIC_CLOUD)
    environment: Mapping[str, str] = field(default_factory=dict)
    module: str = "main"
    deployment: Deployment = field(init=False)
    loop: dict[str, Any] = field(default_factory=dict)
    _symbols: dict[str, Any] = field(default_factory=dict)

    def run(self) -> Deployment:
        """Validates parameters, then evaluates every declaration in source order."""
        params = {name: self._param(spec) for name, spec in self.file.params.items()}
        unknown = set(self.values) - set(params)
        if unknown:
            raise InvalidParameter(f"{self.file.path.name}: unknown parameters {sorted(unknown)}")
        self._symbols.update(params)
        self.deployment = Deployment(params)
        for kind, symbol, node in self.file.declarations:
            parts = _named(node)
            if kind == "var":
                self._symbols[symbol] = self.eval(parts[-1])
            elif kind == "output":
                self.deployment.outputs[symbol] = self.eval(parts[-1])
            elif kind == "resource":
                self._symbols[symbol] = self._resource(symbol, node, None)
            else:
                self._symbols[symbol] = self._module(symbol, parts)
        return self.deployment

    def _param(self, spec: Param) -> Any:
        if spec.name in self.values:
            value = self.values[spec.name]
        elif spec.default is not None:
            value = self.eval(spec.default)
        else:
            raise InvalidParameter(f"{self.file.path.name}: parameter {spec.name} has no value")
        expected = {"string": str, "int": int, "bool": bool, "object": dict}.get(spec.type, list)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise InvalidParameter(f"{spec.name}: {value!r} is not {spec.type}")
        checks: dict[str, Callable[[Any, Any], bool]] = {
            "allowed": lambda v, a: v in a, "minValue": lambda v, a: v >= a,
            "maxValue": lambda v, a: v <= a, "minLength": lambda v, a: len(v) >= a,
            "maxLength": lambda v, a: len(v) <= a,
        }
        for name, args in spec.decorators.items():
            if name in checks and not isinstance(value, Opaque) and not checks[name](value, self.eval(args[0])):
                raise InvalidParameter(f"{spec.name}: {value!r} breaks @{name}({_text(args[0])})")
        return value

    def _resource(self, symbol: str, node: Node, parent: ResourceRef | None) -> Any:
        parts = _named(node)
        declared = self.eval(parts[1])
        kind = declared.split("@")[0]
        if parent is not None:
            kind = f"{parent.type}/{kind}"
        body_node = parts[-1]
        if "existing" in [c.type for c in node.children]:
            name = self.eval(_property(body_node, "name"))
            parent_node = _property(body_node, "parent", required=False)
            if parent_node is not None:
                owner = self.eval(parent_node)
                name = f"{owner.name}/{name}"
            return ResourceRef(symbol, kind, name)
        if body_node.type == "for_statement":
            return [self._with_loop(item, functools.partial(self._resource_body, symbol, kind, body, parent))
                    for item, body in self._iterate(body_node)]
        if body_node.type == "if_statement":
            condition, body_node = _named(body_node)
            if not self._truth(self.eval(condition)):
                return ResourceRef(symbol, kind, Opaque(f"<{symbol} not deployed>"))
        return self._resource_body(symbol, kind, body_node, parent)

    def _resource_body(self, symbol: str, kind: str, body_node: Node, parent: ResourceRef | None) -> ResourceRef:
        children = [p for p in _named(body_node) if _named(p)[0].type == "resource_declaration"]
        plain = [p for p in _named(body_node) if p not in children]
        body = {key: value for key, value in (self._property(p) for p in plain) if key != "dependsOn"}
        name = body["name"]
        owner = body.pop("parent", None) or parent
        if owner is not None:
            name = f"{owner.name}/{name}"
        ref = ResourceRef(symbol, kind, name)
        self.deployment.resources.append(Resource(symbol, kind, name, body, self.module))
        for child in children:
            declaration = _named(child)[0]
            self._resource(_text(_named(declaration)[0]), declaration, ref)
        return ref

    def _module(self, symbol: str, parts: list[Node]) -> Any:
        path = self.file.path.parent / self.eval(parts[1])
        body_node = parts[-1]
        if body_node.type == "if_statement":
            condition, body_node = _named(body_node)
            if not self._truth(self.eval(condition)):
                return {"outputs": {}}
        body = dict(self._property(p) for p in _named(body_node) if _text(_named(p)[0]) == "params")
        child = Evaluator(BicepFile(path), body.get("params", {}), self.cloud, self.environment, module=symbol)
        result = child.run()
        self.deployment.resources.extend(result.resources)
        return {"outputs": result.outputs, "name": symbol}

    def _property(self, node: Node) -> tuple[str, Any]:
        key, value = _named(node)
        name = self.eval(key) if key.type == "string" else _text(key)
        return name, self.eval(value)

    def _iterate(self, node: Node) -> list[tuple[dict[str, Any], Node]]:
        parts = _named(node)
        variable, source, body = parts[0], parts[-2], parts[-1]
        items = self.eval(source)
        if variable.type == "for_loop_parameters":
            names = [_text(n) for n in _named(variable)]
            return [(dict(zip(names, (item, i), strict=False)), body) for i, item in enumerate(items)]
        return [({_text(variable): item}, body) for item in items]

    def _with_loop(self, bound: dict[str, Any], action: Callable[[], Any]) -> Any:
        saved = dict(self.loop)
        self.loop.update(bound)
        try:
            return action()
        finally:
            self.loop = saved

    def _truth(self, value: Any) -> bool:
        if isinstance(value, Opaque) or not isinstance(value, bool):
            raise UnsupportedBicep(f"condition is not a known bool: {value!r}")
        return value

    def eval(self, node: Node) -> Any:
        """The value of one expression node."""
        handler = getattr(self, f"_eval_{node.type}", None)
        if handler is None:
            raise UnsupportedBicep(f"{node.type}: {_text(node)[:60]!r}")
        return handler(node)

    def _eval_string(self, node: Node) -> Any:
        out: list[str] = []
        for child in node.children:
            if child.type == "string_content":
                out.append(_text(child))
            elif child.type == "escape_sequence":
                out.append(_ESCAPES[_text(child)])
            elif child.type == "interpolation":
                out.append(str(self.eval(_named(child)[0])))
        text = "".join(out)
        return text.removeprefix("\n") if _text(node).startswith("'''") else text

    def _eval_number(self, node: Node) -> int:
        return int(_text(node))

    def _eval_boolean(self, node: Node) -> bool:
        return _text(node) == "true"

    def _eval_null(self, node: Node) -> None:
        return None

    def _eval_parenthesized_expression(self, node: Node) -> Any:
        return self.eval(_named(node)[0])

    def _eval_object(self, node: Node) -> dict[str, Any]:
        return dict(self._property(p) for p in _named(node))

    def _eval_array(self, node: Node) -> list[Any]:
        return [self.eval(n) for n in _named(node)]

    def _eval_for_statement(self, node: Node) -> list[Any]:
        return [self._with_loop(bound, functools.partial(self.eval, body)) for bound, body in self._iterate(node)]

    def _eval_identifier(self, node: Node) -> Any:
        name = _text(node)
        for scope in (self.loop, self._symbols):
            if name in scope:
                return scope[name]
        raise UnsupportedBicep(f"unknown symbol {name}")

    def _eval_member_expression(self, node: Node) -> Any:
        target, member = _named(node)[0], _text(_named(node)[-1])
        value = self.eval(target)
        if isinstance(value, ResourceRef):
            return value.member(member)
        if isinstance(value, Opaque):
            return Opaque(f"<{_text(node)}>")
        if isinstance(value, dict):
            if member not in value:
                if "?" in [c.type[-1] for c in node.children if not c.is_named]:
                    return None
                raise UnsupportedBicep(f"{_text(node)}: no member {member}")
            return value[member]
        raise UnsupportedBicep(f"{_text(node)} on {value!r}")

    def _eval_subscript_expression(self, node: Node) -> Any:
        target, index = _named(node)
        return self.eval(target)[self.eval(index)]

    def _eval_unary_expression(self, node: Node) -> Any:
        operator = _text(node.children[0])
        value = self.eval(_named(node)[0])
        return not self._truth(value) if operator == "!" else -value

    def _eval_binary_expression(self, node: Node) -> Any:
        left_node, right_node = _named(node)
        operator = _text(next(c for c in node.children if not c.is_named))
        left = self.eval(left_node)
        if operator == "&&":
            return self._truth(left) and self._truth(self.eval(right_node))
        if operator == "||":
            return self._truth(left) or self._truth(self.eval(right_node))
        if operator == "??":
            return self.eval(right_node) if left is None else left
        right = self.eval(right_node)
        if isinstance(left, Opaque) or isinstance(right, Opaque):
            raise UnsupportedBicep(f"{_text(node)}: compares a value only Azure knows")
        operations: dict[str, Callable[[Any, Any], Any]] = {
            "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
            "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
            "/": lambda a, b: a // b, "%": lambda a, b: a % b,
        }
        return operations[operator](left, right)

    def _eval_ternary_expression(self, node: Node) -> Any:
        condition, when_true, when_false = _named(node)
        return self.eval(when_true) if self._truth(self.eval(condition)) else self.eval(when_false)

    def _eval_call_expression(self, node: Node) -> Any:
        target, arguments = _named(node)
        args = [self.eval(n) for n in _named(arguments)]
        name = _text(target)
        function = _FUNCTIONS.get(name)
        if function is not None:
            return function(*args)
        if name == "environment":
            return self.cloud
        if name == "readEnvironmentVariable":
            return self.environment.get(args[0], *args[1:])
        if name == "loadTextContent":
            return (self.file.path.parent / args[0]).read_text(encoding="utf-8")
        raise UnsupportedBicep(f"function {name}")


def _property(body: Node, name: str, *, required: bool = True) -> Any:
    for prop in _named(body):
        key = _named(prop)[0]
        if _text(key).strip("'") == name:
            return _named(prop)[1]
    if required:
        raise UnsupportedBicep(f"no property {name}")
    return None


def _unique_string(*parts: Any) -> Opaque | str:
    """A deterministic stand-in for ARM's uniqueString: 13 lowercase characters."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return base64.b32encode(digest).decode().lower()[:13]


def _bool(value: Any) -> bool:
    """ARM's bool(): true or false in any case, or a number; anything else fails the deployment."""
    if isinstance(value, bool | int):
        return bool(value)
    if str(value).lower() not in ("true", "false"):
        raise InvalidParameter(f"bool({value!r}) is neither true nor false")
    return str(value).lower() == "true"


def _union(*items: Any) -> Any:
    if all(isinstance(i, dict) for i in items):
        merged: dict[str, Any] = {}
        for item in items:
            merged.update(item)
        return merged
    return list(dict.fromkeys(x for i in items for x in i))


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "empty": lambda v: v is None or len(v) == 0,
    "union": _union,
    "contains": lambda container, item: item in container,
    "length": len,
    "string": lambda v: str(v).lower() if isinstance(v, bool) else str(v),
    "int": int,
    "bool": _bool,
    "toLower": lambda v: v.lower(),
    "take": lambda v, n: v[:n],
    "concat": lambda *v: "".join(v) if all(isinstance(i, str) for i in v) else [x for i in v for x in i],
    "format": lambda text, *args: re.sub(r"\{(\d+)\}", lambda m: str(args[int(m.group(1))]), text),
    "uniqueString": _unique_string,
    # ARM computes it at deployment; its value matters to no check here.
    "resourceId": lambda *parts: Opaque(f"<resourceId({', '.join(map(str, parts))})>"),
    "guid": lambda *parts: str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(map(str, parts)))),
    "subscription": lambda: {"id": "/subscriptions/sub", "subscriptionId": "sub", "tenantId": "tenant"},
    "resourceGroup": lambda: {"id": "/subscriptions/sub/resourceGroups/rg", "name": "rg", "location": "region"},
    "tenant": lambda: {"tenantId": "tenant"},
    "subscriptionResourceId": lambda kind, name: f"/subscriptions/sub/providers/{kind}/{name}",
}


def bicepparam_values(path: Path, environment: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """The Bicep file a .bicepparam file is for, and its parameter values for an environment.

    The grammar has no .bicepparam syntax: ``using`` is read by a pattern and each
    ``param x = expr`` is evaluated as the Bicep expression it is.
    """
    source = path.read_text(encoding="utf-8")
    using = re.search(r"^using '([^']+)'\s*$", source, re.M)
    if using is None:
        raise UnsupportedBicep(f"{path.name}: no using statement")
    as_bicep = re.sub(r"^param (\w+) =", r"var \1 =", source[: using.start()] + source[using.end():], flags=re.M)
    file = BicepFile(path, as_bicep)
    evaluator = Evaluator(file, {}, environment=environment)
    evaluator.run()
    names = [symbol for kind, symbol, _ in file.declarations if kind == "var"]
    return using.group(1), {name: evaluator._symbols[name] for name in names}


def deploy(path: Path, params: Mapping[str, Any], *, cloud: Mapping[str, Any] = PUBLIC_CLOUD) -> Deployment:
    """Evaluates a Bicep file and its modules for the given parameter values."""
    return Evaluator(BicepFile(path), dict(params), cloud).run()


def deploy_with_bicepparam(path: Path, environment: Mapping[str, str], **overrides: Any) -> Deployment:
    """Evaluates the Bicep file a .bicepparam file names, with the values it reads from ``environment``."""
    using, values = bicepparam_values(path, environment)
    return deploy(path.parent / using, values | overrides)

"""Tool definitions: loaded from JSON, sent in each protocol's own form, calls checked against them.

tokenrace never executes a tool. A definition is ``{name, description, parameters}`` with a JSON
Schema for the arguments; a streamed call is timed (``ttft_tool_ms``), and its arguments are
checked: do they parse as JSON, and do they validate against the tool's schema (``jsonschema``,
imported only when a call is checked). In a later turn a past call goes back as text, so a
conversation moves between protocols without any protocol's tool-result plumbing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.events import ToolCall

# The strictest of the four APIs (Gemini and OpenAI: letters, digits, _ and -, at most 64).
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class ToolsError(ValueError):
    """Tool definitions that cannot be used; the message names the file and the tool."""


@dataclass(frozen=True, slots=True)
class ToolDef:
    """One tool the model may call: its name, what it does, and a JSON Schema of its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCheck:
    """Whether a call's arguments parse as JSON and validate against its tool's schema."""

    json_valid: bool
    schema_valid: bool  # False when the JSON is invalid or the tool is unknown
    message: str = ""

    @property
    def valid(self) -> bool:
        return self.json_valid and self.schema_valid


def parse_tools(obj: Any, where: str) -> tuple[ToolDef, ...]:
    """Tool definitions from a JSON value: a list (or ``{"tools": [...]}``) of ``{name,
    description, parameters}``; OpenAI's ``{"type": "function", "function": {…}}`` is taken too."""
    if isinstance(obj, dict) and "tools" in obj:
        obj = obj["tools"]
    if not isinstance(obj, list) or not obj:
        raise ToolsError(f"{where}: tools must be a non-empty JSON list of tool definitions")
    out: list[ToolDef] = []
    for i, given in enumerate(obj):
        item = given
        if isinstance(given, dict) and isinstance(given.get("function"), dict):
            item = given["function"]
        if not isinstance(item, dict):
            raise ToolsError(f"{where}: tool {i + 1} is not a JSON object")
        name = item.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ToolsError(
                f"{where}: tool {i + 1} needs a name of letters, digits, _ . - (at most 64), "
                f"got {name!r}"
            )
        desc = item.get("description", "")
        if not isinstance(desc, str):
            raise ToolsError(f"{where}: tool {name!r}: description must be a string")
        params = item.get("parameters", item.get("input_schema", EMPTY_PARAMETERS))
        _check_schema(params, f"{where}: tool {name!r}")
        if any(t.name == name for t in out):
            raise ToolsError(f"{where}: two tools are called {name!r}")
        out.append(ToolDef(name=name, description=desc, parameters=params))
    return tuple(out)


def _check_schema(schema: Any, where: str) -> None:
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, dict):
        raise ToolsError(f"{where}: parameters must be a JSON Schema object")
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        why = exc.message
        raise ToolsError(f"{where}: parameters are not a valid JSON Schema: {why}") from None


def load_tools(path: Path) -> tuple[ToolDef, ...]:
    """Read and check a JSON file of tool definitions."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ToolsError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ToolsError(f"{path}: is not UTF-8 text") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolsError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    return parse_tools(obj, str(path))


# The keys of Gemini's Schema object (the OpenAPI 3.0 subset that "parameters" takes).
_GEMINI_SCHEMA_KEYS = frozenset(
    [
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    ]
)


def _fits_gemini_schema(schema: Any) -> bool:
    if not isinstance(schema, Mapping):
        return False
    for key, value in schema.items():
        if key not in _GEMINI_SCHEMA_KEYS:
            return False
        if key == "type" and not isinstance(value, str):
            return False  # ["string", "null"] is JSON Schema's, not OpenAPI's
        if key == "properties" and not (
            isinstance(value, Mapping) and all(_fits_gemini_schema(v) for v in value.values())
        ):
            return False
        if key == "items" and not _fits_gemini_schema(value):
            return False
        if key == "anyOf" and not (
            isinstance(value, list) and all(_fits_gemini_schema(v) for v in value)
        ):
            return False
    return True


def _gemini_field(schema: Mapping[str, Any]) -> str:
    """Which field of a Gemini function declaration carries ``schema``."""
    return "parameters" if _fits_gemini_schema(schema) else "parametersJsonSchema"


def request_tools(protocol: str, tools: Sequence[ToolDef]) -> list[dict[str, Any]]:
    """The ``tools`` field of a request in ``protocol``'s documented form."""
    if protocol == "anthropic":
        return [
            {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
            for t in tools
        ]
    if protocol == "gemini":
        # "parameters" takes an OpenAPI subset (the documented example's field); a schema using
        # more of JSON Schema ($ref, additionalProperties, a list of types…) goes as
        # "parametersJsonSchema", which takes it as is (the two are mutually exclusive).
        decls = [
            {
                "name": t.name,
                "description": t.description,
                _gemini_field(t.parameters): dict(t.parameters),
            }
            for t in tools
        ]
        return [{"functionDeclarations": decls}]
    if protocol == "responses":
        return [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
            }
            for t in tools
        ]
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
            },
        }
        for t in tools
    ]


def check_call(tools: Iterable[ToolDef], call: ToolCall) -> ToolCheck:
    """Check a call's arguments: JSON first, then the named tool's schema."""
    try:
        args = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError as exc:
        return ToolCheck(False, False, f"arguments are not JSON ({getattr(exc, 'msg', exc)})")
    tool = next((t for t in tools if t.name == call.name), None)
    if tool is None:
        return ToolCheck(True, False, f"no tool is called {call.name!r}")
    from jsonschema.validators import validator_for

    schema = dict(tool.parameters)
    errors = list(validator_for(schema)(schema).iter_errors(args))
    if not errors:
        return ToolCheck(True, True)
    first = min(errors, key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]))
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path)
    return ToolCheck(True, False, f"schema invalid at {where}: {first.message[:200]}")


def valid_calls(tools: Sequence[ToolDef], calls: Iterable[ToolCall]) -> int:
    """How many calls parse as JSON and validate against their tool's schema."""
    return sum(1 for c in calls if check_call(tools, c).valid)


def pretty_arguments(arguments: str) -> str:
    """Arguments indented when they parse as JSON; as they came while they do not (yet)."""
    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments


def call_as_text(call: ToolCall) -> str:
    """A past tool call as the text a later turn carries (tokenrace runs no tool)."""
    return f"[tool call {call.name}({call.arguments or '{}'}); not executed]"


def calls_to_json(calls: Iterable[ToolCall]) -> str:
    """Tool calls stored with a message (id, name, arguments), as JSON."""
    return json.dumps(
        [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls],
        ensure_ascii=False,
    )


def calls_from_json(text: str | None) -> tuple[ToolCall, ...]:
    """Tool calls back from ``calls_to_json``; nothing for an empty or unreadable value."""
    try:
        items = json.loads(text) if text else []
    except ValueError:
        return ()
    if not isinstance(items, list):
        return ()
    return tuple(
        ToolCall(
            index=i,
            id=it.get("id") if isinstance(it.get("id"), str) else None,
            name=str(it.get("name", "")),
            arguments=str(it.get("arguments", "")),
        )
        for i, it in enumerate(items)
        if isinstance(it, dict)
    )

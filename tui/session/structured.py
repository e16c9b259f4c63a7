"""Structured output: load a JSON Schema and check a reply against it (with ``jsonschema``).

The library is imported when a schema is used, so commands that never see one start without it.
A reply is checked as sent: surrounding whitespace aside, it must parse as JSON, then validate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SchemaError(ValueError):
    """The schema file cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class SchemaCheck:
    """Whether a reply validates; where and why not (the first error, by path)."""

    valid: bool
    path: str | None = None  # "$.items[0].name"; "$" for the whole value
    message: str | None = None

    def describe(self) -> str:
        if self.valid:
            return "schema valid"
        return f"schema invalid at {self.path}: {self.message}"


def json_path(parts: Sequence[str | int]) -> str:
    """A JSONPath-like location: ``$``, ``$.name``, ``$.items[2]``."""
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def check_schema(schema: Any, where: str) -> dict[str, Any]:
    """``schema`` if it is a valid JSON Schema (for its own ``$schema`` draft), else SchemaError."""
    from jsonschema.exceptions import SchemaError as BadSchema
    from jsonschema.validators import validator_for

    if not isinstance(schema, dict):
        raise SchemaError(f"{where}: a JSON Schema must be a JSON object")
    try:
        validator_for(schema).check_schema(schema)
    except BadSchema as exc:
        raise SchemaError(f"{where}: not a valid JSON Schema: {exc.message}") from None
    return schema


def read_utf8(path: Path, error: type[Exception]) -> str:
    """A text file's contents; else ``error`` naming the file and why it cannot be read."""
    try:
        return path.read_text("utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: is not UTF-8 text") from None


def load_schema(path: Path) -> dict[str, Any]:
    """Read and check a JSON Schema file."""
    text = read_utf8(path, SchemaError)
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    return check_schema(schema, str(path))


def validate_reply(text: str, schema: Mapping[str, Any]) -> SchemaCheck:
    """Check a reply's text against ``schema``; not JSON at all is invalid at ``$``."""
    from jsonschema.validators import validator_for

    try:
        value = json.loads(text)
    except ValueError as exc:
        return SchemaCheck(False, "$", f"not JSON ({getattr(exc, 'msg', exc)})")
    validator = validator_for(schema)(schema)
    errors = list(validator.iter_errors(value))
    if not errors:
        return SchemaCheck(True)
    # The first error in document order: shallow paths before deep ones, then by path text.
    first = min(errors, key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]))
    message = first.message if len(first.message) <= 200 else first.message[:199] + "…"
    return SchemaCheck(False, json_path(list(first.absolute_path)), message)

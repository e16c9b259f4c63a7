"""Roles: named system prompts and settings from ``[roles.NAME]``, applied to a request.

A role sets what it names and leaves the rest: its system prompt replaces the session's, its
temperature, max_tokens, JSON mode and schema replace the user's for as long as it is on.
The same function serves ``/role NAME`` in the app, ``ask --role`` and a suite's ``"role"``,
so a role means the same everywhere. No textual or rich here (DESIGN §1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from providers.capabilities import ChatParams
from providers.config import Role


class RoleError(ValueError):
    """An unknown role, or one whose schema is not a JSON Schema."""


@dataclass(frozen=True, slots=True)
class Applied:
    """A request's system prompt and parameters with a role on."""

    system: str | None
    params: ChatParams


def find_role(roles: Mapping[str, Role], name: str) -> Role:
    """The role called ``name``; ``RoleError`` listing the known ones otherwise."""
    try:
        return roles[name]
    except KeyError:
        known = ", ".join(sorted(roles)) or "none: add [roles.NAME] to config.toml"
        raise RoleError(f"no role {name!r} (roles: {known})") from None


def apply_role(role: Role | None, system: str | None, params: ChatParams) -> Applied:
    """``system`` and ``params`` with ``role``'s settings over them (unchanged for None)."""
    if role is None:
        return Applied(system, params)
    schema = params.json_schema
    if role.schema is not None:
        from tui.session.structured import SchemaError, check_schema

        try:
            schema = check_schema(dict(role.schema), f"role {role.name}")
        except SchemaError as exc:
            raise RoleError(str(exc)) from None
    return Applied(
        role.system if role.system is not None else system,
        replace(
            params,
            temperature=params.temperature if role.temperature is None else role.temperature,
            max_tokens=params.max_tokens if role.max_tokens is None else role.max_tokens,
            json_mode=params.json_mode or role.json_mode,
            json_schema=schema,
        ),
    )


def complete_role(roles: Mapping[str, Role], prefix: str) -> list[str]:
    """Role names starting with ``prefix``, sorted (Tab after ``/role ``)."""
    return sorted(n for n in roles if n.startswith(prefix))


def role_label(role: Role | None) -> str:
    """The top bar's mention of the role on ("" when none)."""
    return "" if role is None else f"role {role.name}"

"""What the UI asks the engine for: one chat request (a plain, picklable dataclass)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from providers.capabilities import ChatParams


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One request: ``endpoint/model``, the messages so far, and the user's parameters."""

    model: str
    messages: tuple[Mapping[str, Any], ...]
    params: ChatParams = field(default_factory=ChatParams)


def messages_for(
    history: Sequence[Mapping[str, Any]],
    system: str | None = None,
) -> tuple[dict[str, Any], ...]:
    """The messages of a request: an optional system prompt, then the history."""
    out: list[dict[str, Any]] = []
    if system:
        out.append({"role": "system", "content": system})
    out.extend({"role": m["role"], "content": m["content"]} for m in history)
    return tuple(out)

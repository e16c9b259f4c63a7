"""What the UI asks the engine for: one chat request (a plain, picklable dataclass)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from providers.capabilities import ChatParams


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One request: ``endpoint/model``, the messages so far, and the user's parameters.

    A message may carry ``images`` (``providers.attachments.Image``, bytes included): each
    protocol sends them in its own form, and the engine refuses them before sending to a model
    that takes none or beyond its provider's limits.
    """

    model: str
    messages: tuple[Mapping[str, Any], ...]
    params: ChatParams = field(default_factory=ChatParams)


def messages_for(
    history: Sequence[Mapping[str, Any]],
    system: str | None = None,
) -> tuple[dict[str, Any], ...]:
    """The messages of a request: an optional system prompt, then the history (a message's
    ``images``, a tuple of ``providers.attachments.Image``, go with it)."""
    out: list[dict[str, Any]] = []
    if system:
        out.append({"role": "system", "content": system})
    for m in history:
        msg = {"role": m["role"], "content": m["content"]}
        if m.get("images"):
            msg["images"] = tuple(m["images"])
        out.append(msg)
    return tuple(out)

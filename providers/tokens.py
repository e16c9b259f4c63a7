"""Token estimates, used only where no count is available; always shown with ``≈``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CHARS_PER_TOKEN = 4.0
# Per-message framing that chat templates add (role markers, separators).
MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """A rough token count for ``text``: characters / 4, at least 1 for non-empty text."""
    if not text:
        return 0
    return max(1, round(len(text) / CHARS_PER_TOKEN))


def estimate_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """A rough prompt size for a chat request."""
    total = 3
    for m in messages:
        content = m.get("content") or ""
        total += MESSAGE_OVERHEAD + estimate_tokens(content if isinstance(content, str) else "")
    return total

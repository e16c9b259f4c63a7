"""Known secrets, so any text leaving the engine (messages, logs, exports) can be redacted."""

from __future__ import annotations

import logging
import threading

_lock = threading.Lock()
_secrets: set[str] = set()

# Keys shorter than this are not redacted by substring: "abc" would mangle ordinary text.
_MIN_REDACT_LEN = 6


def mask(key: str | None) -> str:
    """Show a key the way the UI and `keys list` do: ``sk-…abcd``."""
    if not key:
        return "—"
    if len(key) < 12:
        return "…" + key[-2:] if len(key) > 4 else "****"
    head = key[:3]
    return f"{head}…{key[-4:]}"


def register(value: str | None) -> None:
    """Remember a secret so ``redact`` hides it everywhere from now on."""
    if value and len(value) >= _MIN_REDACT_LEN:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Replace every known secret in ``text`` with its masked form."""
    if not _secrets or not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, mask(secret))
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts known secrets from every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        red = redact(msg)
        if red != msg:
            record.msg = red
            record.args = None
        return True

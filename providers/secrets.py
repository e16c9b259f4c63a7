"""Known secrets, so any text leaving the engine (messages, logs, exports) can be redacted."""

from __future__ import annotations

import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()

# Keys shorter than this are not redacted by substring: "abc" would mangle ordinary text.
_MIN_REDACT_LEN = 6

# ``scheme://user:password@host``: the userinfo is a credential (httpx sends it as Basic auth).
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)([^/\s@]+)@")
# A word that looks like a token: long, letters and digits (no paths, no prose).
_TOKENISH = re.compile(r"[A-Za-z0-9_+=-]{20,}")


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
    """Replace every known secret in ``text`` with its masked form, and the credentials in any
    URL's userinfo with ``***``."""
    if not text:
        return text
    if "@" in text and "://" in text:
        text = redact_url(text)
    if not _secrets:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, mask(secret))
    return text


def redact_url(url: str) -> str:
    """``url`` (or any text holding URLs) with each userinfo shown as ``***``."""
    return _USERINFO.sub(r"\1***@", url)


def userinfo_secrets(url: str) -> list[str]:
    """The password (and a token-like user name) in ``url``'s userinfo, to ``register``."""
    m = _USERINFO.search(url)
    if m is None:
        return []
    user, _, password = m.group(2).partition(":")
    found = [password] if password else []
    if _TOKENISH.fullmatch(user):
        found.append(user)  # https://TOKEN@host: the user name is the credential
    return found


def redact_tokens(text: str) -> str:
    """``redact``, and every token-like word (20+ letters/digits with both) masked: for
    text that may hold a secret nobody registered, such as ``api_key_cmd``'s stderr."""
    text = redact(text)

    def hide(m: re.Match[str]) -> str:
        word = m.group(0)
        has_digit = any(c.isdigit() for c in word)
        has_alpha = any(c.isalpha() for c in word)
        return mask(word) if has_digit and has_alpha else word

    return _TOKENISH.sub(hide, text)

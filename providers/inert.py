"""Make text from servers harmless to print: no byte of it can steer the terminal.

tokenrace prints what other people's servers wrote: replies, reasoning, error bodies, model ids.
A terminal obeys escape sequences wherever they come from, so a reply could write the user's
clipboard (OSC 52), retitle the window, clear the screen or plant links, and a stored reply
would do it again on every ``--resume``. Every string a server supplied passes through one of
these functions before it reaches a terminal (the TUI's widgets, headless stdout and stderr,
Markdown exports); stored text keeps what arrived.

- ``inert(text)``: for running text (replies, reasoning, messages). Keeps newline and tab;
  drops CR (a line ending, and on a terminal a jump back over what was written); shows every
  other C0 control, ESC and DEL as its Unicode control picture (ESC → ␛), and C1 controls
  and lone surrogates as U+FFFD.
- ``inert_label(text)``: for one-line names (model ids, endpoint names, titles). As ``inert``,
  and also newline and tab as pictures, and the invisible characters that make one name look
  like another (bidi overrides and isolates, zero-width characters, BOM, soft hyphen) as
  ``<U+202E>``.
- ``json_inert(text)``: JSON already escapes C0; this escapes C1, DEL and lone surrogates as
  ``\\u`` too, so a JSON document written to a terminal is inert and still parses to the same value.

Each is a regex search (0.5 µs for a short delta, 0.5 ms for 100 KB) and, only when it finds
something, one ``str.translate`` with a prebuilt table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_CR = 0x0D

# Running text: C0 (except tab, newline), ESC, DEL -> control pictures; C1, surrogates -> U+FFFD.
_TEXT: dict[int, str | None] = {c: chr(0x2400 + c) for c in range(0x20) if c not in (0x09, 0x0A)}
_TEXT[_CR] = None
_TEXT[0x7F] = "\u2421"  # ␡
_TEXT.update({c: "\ufffd" for c in range(0x80, 0xA0)})
_TEXT.update({c: "\ufffd" for c in range(0xD800, 0xE000)})

# Characters that change how nearby text reads without being seen: shown by code point.
INVISIBLE = [
    0x00AD,  # soft hyphen
    0x061C,  # Arabic letter mark
    0x180E,  # Mongolian vowel separator
    *range(0x200B, 0x2010),  # zero-width space/joiners, LRM, RLM
    *range(0x202A, 0x202F),  # bidi embeddings and overrides
    *range(0x2060, 0x2065),  # word joiner, invisible operators
    *range(0x2066, 0x2070),  # bidi isolates, deprecated format characters
    0xFEFF,  # BOM / zero-width no-break space
    *range(0xFFF9, 0xFFFC),  # interlinear annotation
]

_LABEL: dict[int, str | None] = dict(_TEXT)
_LABEL[0x09] = "\u2409"  # ␉
_LABEL[0x0A] = "\u240a"  # ␊
_LABEL[_CR] = "\u240d"  # ␍: in a name, every character shows
_LABEL.update({c: f"<U+{c:04X}>" for c in INVISIBLE})

# Lone surrogates too: written raw they are not UTF-8 at all (the write would fail).
_JSON: dict[int, str] = {
    c: f"\\u{c:04x}" for c in [0x7F, *range(0x80, 0xA0), *range(0xD800, 0xE000)]
}


def _finder(codes: Iterable[int]) -> re.Pattern[str]:
    """A character class of ``codes``, written as ranges: one alternative per code point
    (2,048 surrogates among them) took 14 ms to compile at every start of the UI and engine."""
    parts: list[str] = []
    run: list[int] = []
    for c in sorted(codes):
        if run and c != run[-1] + 1:
            parts.append(_span(run[0], run[-1]))
            run = []
        run.append(c)
    if run:
        parts.append(_span(run[0], run[-1]))
    return re.compile("[" + "".join(parts) + "]")


def _span(first: int, last: int) -> str:
    if first == last:
        return re.escape(chr(first))
    return f"{re.escape(chr(first))}-{re.escape(chr(last))}"


# A search is ~10x cheaper than a translate, and almost all text has nothing to replace.
_TEXT_FIND = _finder(_TEXT)
_LABEL_FIND = _finder(_LABEL)
_JSON_FIND = _finder(_JSON)


def inert(text: str) -> str:
    """``text`` with nothing a terminal would act on; newline and tab stay."""
    return text.translate(_TEXT) if _TEXT_FIND.search(text) else text


def inert_label(text: str) -> str:
    """A one-line name with every control and invisible character shown, not obeyed."""
    return text.translate(_LABEL) if _LABEL_FIND.search(text) else text


def json_inert(document: str) -> str:
    """A JSON document (from ``json.dumps``) with C1 controls, DEL and lone surrogates
    escaped as ``\\u``: the same value, inert on a terminal."""
    return document.translate(_JSON) if _JSON_FIND.search(document) else document


def is_inert(text: str) -> bool:
    """True when ``text`` holds no control character but newline and tab (tests, asserts)."""
    return _TEXT_FIND.search(text) is None


__all__ = ["INVISIBLE", "inert", "inert_label", "is_inert", "json_inert"]

"""``providers.chunks.loads`` calls json's scanner straight: it must give what ``json.loads``
gives (then made well-formed), value or error, on any text a server may send."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from providers.chunks import _clean, loads

CHUNK = (
    '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    '"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}'
)


def reference(text: str) -> tuple[str, Any]:
    """``json.loads``'s answer, surrogates cleaned as ``loads`` cleans them."""
    try:
        return "value", _clean(json.loads(text))
    except json.JSONDecodeError as exc:
        return "error", (exc.msg, exc.pos, exc.lineno, exc.colno)


def fast(text: str) -> tuple[str, Any]:
    try:
        return "value", loads(text)
    except json.JSONDecodeError as exc:
        return "error", (exc.msg, exc.pos, exc.lineno, exc.colno)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
space = st.text(alphabet=" \t\r\n\x0b\ufeff\u00a0", max_size=3)


@given(value=json_values, before=space, after=space, cut=st.integers(0, 400))
@settings(max_examples=400, deadline=None)
def test_loads_gives_what_json_loads_gives(value: Any, before: str, after: str, cut: int) -> None:
    text = json.dumps(value, ensure_ascii=bool(cut % 2))
    for candidate in (text, before + text + after, text[:cut], text + text, text[cut:]):
        assert fast(candidate) == reference(candidate), repr(candidate)


def test_chunks_and_their_breakages_load_as_json_loads_them() -> None:
    cases = [
        CHUNK,
        " " + CHUNK,
        CHUNK + "\n",
        "\ufeff" + CHUNK,
        CHUNK + "x",
        CHUNK[:-1],
        "",
        "[DONE]",
        "nul",
        '"\\ud800 lone"',
        '{"a": "\\udfff"}',
        "1 2",
        "NaN",
        "-Infinity",
        '{"a":1,}',
        "[" * 50 + "]" * 50,
    ]
    for text in cases + [CHUNK[:i] for i in range(len(CHUNK))]:
        assert fast(text) == reference(text), repr(text)

"""Property tests of the SSE decoding (hypothesis).

Any list of events, encoded with LF, CR or CRLF line endings and split at any byte boundaries,
decodes to the same events; and random bytes only ever produce the engine's own error types.
"""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.chunks import ChunkParser
from providers.events import StreamError
from providers.sse import BytesSource, EventTooLarge, aiter_sse

# Field values never contain line breaks (SSE has no escaping for them).
text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\x00"),
    max_size=40,
)
event = st.fixed_dictionaries(
    {
        "event": st.sampled_from(["", "message", "error", "ping"]),
        "data": st.lists(text, min_size=1, max_size=3),
        "comment": st.booleans(),
    }
)


def encode(events: list[dict[str, object]], eol: str) -> bytes:
    out = []
    for ev in events:
        lines = []
        if ev["comment"]:
            lines.append(": keep-alive")
        if ev["event"]:
            lines.append(f"event: {ev['event']}")
        lines += [f"data: {d}" for d in ev["data"]]  # type: ignore[attr-defined]
        out.append(eol.join(lines) + eol + eol)
    return "".join(out).encode("utf-8")


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, last = [], 0
    for p in points:
        chunks.append(data[last:p])
        last = p
    chunks.append(data[last:])
    return [c for c in chunks if c]


def decode(chunks: list[bytes], cap: int = 1 << 20) -> list[tuple[str, str]]:
    async def run() -> list[tuple[str, str]]:
        return [(e.event, e.data) async for e in aiter_sse(BytesSource(chunks), cap)]

    return asyncio.run(run())


def expected(events: list[dict[str, object]]) -> list[tuple[str, str]]:
    # An event without a name is a "message" event (the SSE spec, and httpx-sse).
    return [
        (str(ev["event"]) or "message", "\n".join(ev["data"]))  # type: ignore[arg-type]
        for ev in events
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(event, min_size=1, max_size=8),
    eol=st.sampled_from(["\n", "\r", "\r\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_any_split_any_line_ending_decodes_the_same(
    events: list[dict[str, object]], eol: str, cuts: list[int]
) -> None:
    data = encode(events, eol)
    assert decode(split(data, cuts)) == expected(events)


@settings(max_examples=100, deadline=None)
@given(events=st.lists(event, min_size=1, max_size=5), eol=st.sampled_from(["\n", "\r", "\r\n"]))
def test_one_byte_at_a_time(events: list[dict[str, object]], eol: str) -> None:
    data = encode(events, eol)
    assert decode([data[i : i + 1] for i in range(len(data))]) == expected(events)


@settings(max_examples=300, deadline=None)
@given(
    blob=st.binary(max_size=2000),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=8),
)
def test_random_bytes_only_produce_our_own_errors(blob: bytes, cuts: list[int]) -> None:
    parser = ChunkParser("fuzz")
    try:
        decoded = decode(split(blob, cuts), cap=512)
    except EventTooLarge:
        return  # our own error type: the engine turns it into StreamError(kind="too_large")
    for name, data in decoded:
        for ev in parser.feed(name, data, 0):
            if isinstance(ev, StreamError):
                assert ev.kind in ("malformed", "remote_error")


@settings(max_examples=200, deadline=None)
@given(
    obj=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_any_json_value_in_a_chunk_is_handled(obj: object) -> None:
    parser = ChunkParser("fuzz")
    for wrapped in (
        obj,
        {"choices": [obj]},
        {"choices": [{"delta": obj}]},
        {"usage": obj},
        {"error": obj},
    ):
        for ev in parser.feed("", json.dumps(wrapped), 0):
            assert not isinstance(ev, StreamError) or ev.kind in ("malformed", "remote_error")

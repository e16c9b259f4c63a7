"""``Engine.stream_batches(sink=…)``: the reads' events handed over by the task that read them.

The engine process takes a reply's events this way (a queue and a task step a read fewer); it
must see exactly the events, in the order, that a reply gives without a sink, and none after
the generator has ended, whatever the reply does: recorded streams, retries, drops, errors.
"""

from __future__ import annotations

import dataclasses

import pytest

from providers.config import parse_config
from providers.engine import Engine, collect
from providers.events import Connected, Event, Retrying, TextDelta
from providers.keys import KeyStore
from providers.request import ChatRequest
from tests.conftest import SAMPLES
from tests.support.raw_server import RawServer, Script, sse_events

REQUEST = ChatRequest("rec/m", ({"role": "user", "content": "hi"},))
TOKEN = b'data: {"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
END = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'


def unstamped(events: list[Event]) -> list[Event]:
    """The events without their times, which two runs of one script never share (a new
    connection's time, and whether there is one; a retry's jittered wait)."""
    out: list[Event] = []
    for ev in events:
        if isinstance(ev, Connected):
            continue
        bare = dataclasses.replace(ev, t_ns=0)
        if isinstance(bare, Retrying):
            bare = dataclasses.replace(bare, delay_s=0.0)
        out.append(bare)
    return out


async def both_ways(raw_server: RawServer, scripts: list[Script]) -> tuple[list[Event], ...]:
    """The events of one reply to ``scripts`` without a sink, and of another with one: all of
    them in order, then those the sink took, then those it took after the generator ended."""
    config = parse_config(
        {"engine": {"retries": 2}, "endpoints": {"rec": {"base_url": raw_server.base_url}}}
    )
    engine = Engine(config, KeyStore(use_keyring=False))
    try:
        for script in scripts:
            raw_server.push(script)
        plain = await collect(engine, REQUEST)
        for script in scripts:
            raw_server.push(script)
        seen: list[Event] = []
        sunk: list[Event] = []
        late: list[Event] = []
        ended = False

        def sink(events: list[Event]) -> None:
            (late if ended else sunk).extend(events)
            seen.extend(events)

        async for events in engine.stream_batches(REQUEST, sink=sink):
            seen.extend(events)
        ended = True
    finally:
        await engine.aclose()
    return plain, seen, sunk, late


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in SAMPLES.glob("*.sse") if p.name.startswith(("openai_chat", "deepseek"))),
)
async def test_a_recorded_stream_gives_the_same_events_through_the_sink(
    raw_server: RawServer, name: str
) -> None:
    chunks = sse_events((SAMPLES / name).read_text(encoding="utf-8"))
    plain, seen, sunk, late = await both_ways(raw_server, [Script(chunks=chunks)])
    assert unstamped(seen) == unstamped(plain)
    assert sunk and not late  # the reads' events went to the sink, none after the end


@pytest.mark.parametrize(
    "scripts",
    [
        # retried before the first token, then a reply
        [Script(status=503, chunks=[b"busy"]), Script(chunks=[TOKEN] * 20 + [END])],
        # dropped mid-reply: interrupted, the text kept
        [Script(chunks=[TOKEN] * 20, ending="abort")],
        # ends without a finish reason or [DONE]
        [Script(chunks=[TOKEN] * 5)],
        # malformed JSON mid-stream
        [Script(chunks=[TOKEN] * 3 + [b"data: {nope\n\n"] + [TOKEN])],
        # an error event mid-stream
        [Script(chunks=[TOKEN, b'event: error\ndata: {"error":{"message":"boom"}}\n\n'])],
    ],
    ids=["retried", "dropped", "no-end", "malformed", "error-event"],
)
async def test_failures_give_the_same_events_through_the_sink(
    raw_server: RawServer, scripts: list[Script]
) -> None:
    plain, seen, sunk, late = await both_ways(raw_server, scripts)
    assert unstamped(seen) == unstamped(plain)
    assert any(isinstance(ev, TextDelta) for ev in sunk) and not late

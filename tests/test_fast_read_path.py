"""The engine's read path at thousands of events a second (issue 21): a read's events in one pass.

``SSEStream`` splits a read's text into events itself, taking the common ``data: …`` shape
directly and giving every other line to httpx-sse's ``SSEDecoder``; it must give exactly what
httpx-sse's ``EventSource`` gives, on every recorded stream and however the bytes are split.
``ChunkJoiner`` hands h11 one chunk a read; h11 must then see the same body, and the same
errors, as without it. And events are stamped when the read that carried them returned.
"""

from __future__ import annotations

import asyncio
import random

import h11
import httpcore
import httpx
import pytest

from providers.config import parse_config
from providers.engine import Engine, collect
from providers.events import TextDelta, fold
from providers.keys import KeyStore
from providers.request import ChatRequest
from providers.sse import BytesSource, DecodeStats, EventTooLarge, SSEStream, aiter_sse_httpx
from providers.transport import JOIN_CHUNKS, AsyncioStream, ChunkJoiner, make_transport
from tests.conftest import SAMPLES
from tests.support.engine_run import events_from
from tests.support.raw_server import RawServer, Script, sse_events

Decoded = tuple[list[tuple[str, str]], str | None, int]


def reference(chunks: list[bytes], cap: int = 1 << 20) -> Decoded:
    """httpx-sse's ``EventSource``, line by line: events, the cap error, bytes replaced."""
    stats = DecodeStats()

    async def run() -> Decoded:
        out: list[tuple[str, str]] = []
        try:
            async for e in aiter_sse_httpx(BytesSource(chunks), cap, stats):
                out.append((e.event, e.data))
        except EventTooLarge as exc:
            return out, str(exc), stats.replaced_bytes
        return out, None, stats.replaced_bytes

    return asyncio.run(run())


def one_pass(chunks: list[bytes], cap: int = 1 << 20) -> Decoded:
    """``SSEStream``, a read at a time, as the engine uses it."""
    stream = SSEStream(cap)
    out: list[tuple[str, str]] = []
    for raw in chunks:
        out += stream.feed(raw)
        if stream.too_large is not None:
            return out, str(stream.too_large), stream.stats.replaced_bytes
    out += stream.close()
    err = str(stream.too_large) if stream.too_large is not None else None
    return out, err, stream.stats.replaced_bytes


def reads_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


SAMPLE_NAMES = sorted(p.name for p in SAMPLES.glob("*.sse"))


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_every_recorded_stream_decodes_as_httpx_sse_does_at_any_split(name: str) -> None:
    data = (SAMPLES / name).read_bytes()
    want = reference(sse_events(data.decode("utf-8")))
    assert want[0] or b"data:" not in data  # one sample is an HTTP 400's JSON body
    # Reads of one byte split every event, line and character at every position.
    for size in (1, 2, 3, 7, 64, 1000, len(data)):
        assert one_pass(reads_of(data, size)) == want, size
    assert one_pass(sse_events(data.decode("utf-8"))) == want


# Every shape the general parser handles, next to the common one: comments, named events,
# multi-line data, ids (after which httpx-sse dispatches even a bare blank line), retry, a
# field without a colon, blank-line runs, a data line with no space, split UTF-8.
TRICKY = (
    ": hello\n\n"
    'data: {"a": 1}\n\n'
    "data:no-space\n\n"
    "data\n\n"
    "event: ping\ndata: p\n\n"
    "data: one\ndata: two\n\n"
    "\n\n\n"
    "retry: 10\n\n"
    'data: {"é": "日本語 🎉"}\n\n'
    ": keep-alive\n"
    "data: after a comment\n\n"
    "id: 7\n"
    "data: with id\n\n"
    "\n\n"
    "data: plain after an id\n\n"
    "event: error\n\n"
    "data: [DONE]\n\n"
    "data: unterminated"
)


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_every_line_shape_split_at_every_position_decodes_as_httpx_sse_does(eol: str) -> None:
    data = TRICKY.replace("\n", eol).encode("utf-8")
    want = reference([data])
    assert ("message", "plain after an id") in want[0] and ("ping", "p") in want[0]
    for cut in range(1, len(data)):
        assert one_pass([data[:cut], data[cut:]]) == want, cut
    for cut in range(1, len(data), 5):
        third = min(len(data) - 1, cut + 9)
        assert one_pass([data[:cut], data[cut:third], data[third:]]) == want, cut


def test_invalid_utf8_and_the_cap_match_httpx_sse_at_every_split() -> None:
    data = (
        b'data: {"x": "ok"}\n\n' + b"data: bad \xff\xfe here\n\n" + b"data: " + b"y" * 60 + b"\n\n"
    )
    for cap in (1 << 20, 40):
        want = reference([data], cap)
        assert want[2] == 2 and (want[1] is not None) == (cap == 40)
        for cut in range(1, len(data)):
            reads = [data[:cut], data[cut:]]
            # The size "so far" in the cap's message depends on the split: same reads.
            assert one_pass(reads, cap) == reference(reads, cap), (cap, cut)


def test_random_streams_decode_as_httpx_sse_does() -> None:
    rnd = random.Random(21)
    pieces = ["data: x", "data: {}", "data:", "", ": c", "event: e", "id: 1", "retry: 5", "d"]
    for _ in range(300):
        text = "\n".join(rnd.choice(pieces) for _ in range(rnd.randrange(1, 14))) + "\n\n"
        data = text.encode()
        cuts = sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, rnd.randrange(4))))
        reads = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert one_pass(reads) == reference([data]), text


# --- ChunkJoiner: h11 sees one chunk a read ---------------------------------------------------

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def chunked(parts: list[bytes], trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n" + trailer + b"\r\n"


def h11_reads(reads: list[bytes], join: bool) -> tuple[bytes, int, str]:
    """What h11 makes of a response read in ``reads``: the body, its Data events, the end."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(
        h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "0")])
    )
    conn.send(h11.EndOfMessage())
    joiner = ChunkJoiner()
    joiner.arm()
    body, data_events = b"", 0
    try:
        for raw in reads:
            fed = joiner.feed(raw) if join else raw
            while joiner.held:  # what AsyncioStream.read passes on at its next call
                held, joiner.held = joiner.held, b""
                fed += joiner.feed(held)
            if fed:
                conn.receive_data(fed)
            while (event := conn.next_event()) is not h11.NEED_DATA:
                if isinstance(event, h11.Data):
                    body += event.data
                    data_events += 1
                elif isinstance(event, h11.EndOfMessage):
                    return body, data_events, "end"
            if joiner.error is not None:
                raise joiner.error
    except (h11.RemoteProtocolError, httpcore.RemoteProtocolError):
        return body, data_events, "error"
    return body, data_events, "incomplete"


def test_joined_chunks_give_h11_the_same_body_at_every_split() -> None:
    events = sse_events((SAMPLES / "openai_chat_tool_call.sse").read_text(encoding="utf-8"))
    data = HEAD + chunked(events, b"X-Trailer: 1\r\n")
    want = h11_reads([data], join=False)
    assert want[2] == "end" and want[0] == b"".join(events)
    for cut in range(1, len(data)):
        got = h11_reads([data[:cut], data[cut:]], join=True)
        assert got[:1] + got[2:] == want[:1] + want[2:], cut
        assert got[1] <= 2  # one chunk a read
    for size in (1, 5, 17):
        assert h11_reads(reads_of(data, size), join=True)[::2] == want[::2]
    # Without joining, h11 makes a Data event of every chunk.
    assert want[1] == len(events)


@pytest.mark.parametrize(
    "body",
    [
        b"5\r\nhello\r\nzz\r\n",  # an illegal chunk header
        b"5\r\nhelloXX3\r\nabc\r\n0\r\n\r\n",  # no CRLF after the data
        b"5\r\nhel",  # the connection ends mid-chunk
    ],
)
def test_malformed_chunks_fail_as_they_do_without_joining(body: bytes) -> None:
    data = HEAD + body
    want = h11_reads([data], join=False)
    assert want[2] in ("error", "incomplete")
    for cut in range(1, len(data)):
        got = h11_reads([data[:cut], data[cut:]], join=True)
        assert (got[0], got[2]) == (want[0], want[2]), cut


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 500 Oops\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
)
def test_other_responses_pass_untouched(head: bytes) -> None:
    data = head + chunked([b"data: 1\n\n", b"data: 2\n\n"])
    joiner = ChunkJoiner()
    joiner.arm()
    assert b"".join(joiner.feed(r) for r in reads_of(data, 7)) == data


def test_an_informational_head_is_passed_and_the_real_one_joined() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\n" + HEAD + chunked([b"data: 1\n\n", b"data: 2\n\n"])
    got = h11_reads([data], join=True)
    assert got == (b"data: 1\n\ndata: 2\n\n", 1, "end")


async def test_a_stream_reads_as_few_chunks_and_its_connection_is_reused(
    raw_server: RawServer,
) -> None:
    events = [b'data: {"n": %d}\n\n' % i for i in range(300)]
    for _ in range(2):
        raw_server.push(Script(chunks=events, delays_s=[0.05] + [0.0] * (len(events) - 1)))
    raw_server.push(Script(chunks=events))
    client = httpx.AsyncClient(
        transport=make_transport(verify=True, proxy=None, trust_env=False, limits=httpx.Limits())
    )
    seen: list[tuple[bytes, int, object]] = []
    try:
        for join in (True, True, False):
            JOIN_CHUNKS.set(join)
            async with client.stream("POST", f"{raw_server.base_url}/chat/completions") as r:
                parts = [b async for b in r.aiter_bytes()]
                seen.append((b"".join(parts), len(parts), r.extensions["network_stream"]))
    finally:
        await client.aclose()
    assert all(body == b"".join(events) for body, _, _ in seen)
    # 300 chunks written back to back: a few reads, each one chunk for httpx, when joined;
    # and one chunk each without.
    assert seen[0][1] <= 5 and seen[1][1] <= 5 and seen[2][1] == 300
    assert seen[0][2] is seen[1][2] is seen[2][2]  # one connection, kept alive throughout


async def test_events_of_one_read_are_stamped_when_that_read_returned(
    raw_server: RawServer,
) -> None:
    """200 events written at once reach the engine in a read or two: they carry that read's
    time, not the time their turn to be decoded came (which grew with every event before)."""
    n = 200
    chunk = b'data: {"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
    end = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    chunks = [chunk] * n + [end]
    raw_server.push(Script(chunks=chunks, delays_s=[0.05] + [0.0] * n))
    events = await events_from(raw_server.base_url)
    stamps = [e.t_ns for e in events if isinstance(e, TextDelta)]
    assert len(stamps) == n
    assert len(set(stamps)) <= 3, sorted(set(stamps))


def dechunked_reads(reads: list[bytes]) -> tuple[bytes, bytes, int, str]:
    """``read_body``'s view of a response read in ``reads``: the head and the held-back start
    passed on, then the body de-chunked; what is left for h11; the reads that gave data; and
    whether h11, given the head and what was left for it, sees the end of an empty body."""
    joiner = ChunkJoiner()
    joiner.arm()
    head, body, for_h11, data_reads = b"", b"", b"", 0
    pending = list(reads)
    while pending and not joiner.in_body:
        head += joiner.feed(pending.pop(0))
    assert joiner.in_body
    pending.insert(0, joiner.held)
    joiner.held = b""
    while pending and joiner.in_body:
        data = joiner.dechunk(pending.pop(0))
        body += data
        data_reads += bool(data)
    assert joiner.error is None
    for_h11 = joiner.held + b"".join(pending)
    conn = h11.Connection(h11.CLIENT)
    conn.send(
        h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "0")])
    )
    conn.send(h11.EndOfMessage())
    conn.receive_data(head + for_h11)
    seen = []
    while (event := conn.next_event()) is not h11.NEED_DATA:
        seen.append(type(event).__name__)
        if isinstance(event, h11.EndOfMessage):
            break
    return body, for_h11, data_reads, ",".join(seen)


def test_a_body_read_past_h11_is_the_same_and_h11_still_sees_its_end() -> None:
    events = sse_events((SAMPLES / "openai_chat_tool_call.sse").read_text(encoding="utf-8"))
    data = HEAD + chunked(events, b"X-Trailer: 1\r\n")
    for cut in range(len(HEAD), len(data)):
        body, for_h11, data_reads, seen = dechunked_reads([data[:cut], data[cut:]])
        assert body == b"".join(events), cut
        assert for_h11 == b"0\r\nX-Trailer: 1\r\n\r\n"
        assert seen == "Response,EndOfMessage" and data_reads <= 2
    for size in (1, 3, 64):
        assert dechunked_reads(reads_of(data, size))[0] == b"".join(events)


async def test_the_engine_reads_the_body_past_h11_and_keeps_its_connection(
    raw_server: RawServer,
) -> None:
    chunk = b'data: {"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
    # No [DONE]: the engine stops reading at [DONE] (closing the connection), at the body's end
    # otherwise.
    end = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    for _ in range(2):
        raw_server.push(Script(chunks=[chunk] * 50 + [end]))
    config = parse_config({"endpoints": {"rec": {"base_url": raw_server.base_url}}})
    engine = Engine(config, KeyStore(use_keyring=False))
    streams: list[object] = []
    plain = AsyncioStream.read_body

    async def spy(self: AsyncioStream, max_bytes: int = 64 * 1024) -> bytes:
        streams.append(self)
        return await plain(self, max_bytes)

    try:
        AsyncioStream.read_body = spy  # type: ignore[method-assign]
        for _ in range(2):
            events = await collect(
                engine, ChatRequest("rec/m", ({"role": "user", "content": "hi"},))
            )
            assert fold(events).text == "tok " * 50 and fold(events).finish_reason == "stop"
    finally:
        AsyncioStream.read_body = plain  # type: ignore[method-assign]
        await engine.aclose()
    assert streams and len(set(map(id, streams))) == 1  # both replies, one kept-alive connection

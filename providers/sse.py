"""SSE decoding on top of httpx-sse, with the safety httpx-sse leaves to us (DESIGN §3).

httpx-sse keeps an unbounded line buffer and decodes with the response's charset. ``SSEStream``
decodes a body read by read so that: bytes are decoded as UTF-8 incrementally (a character split
across reads is joined, undecodable bytes become U+FFFD and are counted); CR and CRLF line endings
are normalised to LF without holding a byte back (a CR-terminated event dispatches at once); and
an event larger than the cap raises ``EventTooLarge`` instead of growing memory.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

import httpx
from httpx_sse import EventSource, ServerSentEvent
from httpx_sse._decoders import SSEDecoder


class EventTooLarge(Exception):
    """An SSE event grew past the size cap."""

    def __init__(self, size: int, cap: int):
        super().__init__(f"an event exceeded {cap:,} characters ({size:,} so far)")
        self.size = size
        self.cap = cap


@dataclass
class DecodeStats:
    """What the decoder saw: bytes received and bytes it had to replace."""

    bytes_received: int = 0
    replaced_bytes: int = 0


class _Counter:
    current: DecodeStats | None = None


def _count_and_replace(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    if _Counter.current is not None:
        _Counter.current.replaced_bytes += exc.end - exc.start
    return ("\ufffd", exc.end)


_ERRORS = "tokenrace-count-replace"
codecs.register_error(_ERRORS, _count_and_replace)


class ByteSource(Protocol):
    """Anything that yields raw body chunks (an httpx response, or a test's list of bytes)."""

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...


class SSEStream:
    """The SSE events of one response body, decoded a read at a time.

    ``feed`` takes the bytes of one read and returns the ``(event, data)`` of every event they
    complete, in one pass over the read's text: an event of the common shape (one ``data:`` line
    and a blank line, nothing pending) is taken as it is; every other line goes through
    httpx-sse's own ``SSEDecoder``, so both give what ``EventSource.aiter_sse`` gives (tests
    compare them on every recorded stream and on every split). When an event grows past the
    cap, the events before it are returned and ``too_large`` is set: raise it after them.
    """

    def __init__(self, max_event_chars: int = 1 << 20, stats: DecodeStats | None = None):
        self.stats = stats if stats is not None else DecodeStats()
        self.too_large: EventTooLarge | None = None
        self._cap = max_event_chars
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors=_ERRORS)
        self._first = True
        self._skip_lf = False
        self._since_boundary = 0
        self._ends_with_lf = False
        self._partial = ""  # a line not yet ended
        self._fields = SSEDecoder()  # httpx-sse's decoder: every line not of the common shape
        self._clean = True  # nothing pending in ``_fields`` (no event, data or retry)

    def feed(self, raw: bytes) -> list[tuple[str, str]]:
        """The events completed by one read's bytes."""
        text = self.text(raw)
        return self._lines(text) if text else []

    def close(self) -> list[tuple[str, str]]:
        """The events completed by the end of the body (bytes of a split character, if any)."""
        text = self.text_end()
        return self._lines(text) if text else []

    def text(self, raw: bytes) -> str:
        """One read's bytes as text: decoded, line endings made LF, cut before an event over
        the cap (then ``too_large`` is set)."""
        if not raw or self.too_large is not None:
            return ""
        stats = self.stats
        stats.bytes_received += len(raw)
        if self._first:
            self._first = False
            if raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
        _Counter.current = stats
        try:
            text = self._utf8.decode(raw)
        finally:
            _Counter.current = None
        return self._checked(text)

    def text_end(self) -> str:
        """The text left at the end of the body (bytes of a split character, as U+FFFD)."""
        if self.too_large is not None:
            return ""
        _Counter.current = self.stats
        try:
            tail = self._utf8.decode(b"", final=True)
        finally:
            _Counter.current = None
        return self._checked(tail)

    def _checked(self, text: str) -> str:
        # CR and CRLF become LF without holding a byte back (a CR-terminated event dispatches).
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]
        self._skip_lf = text.endswith("\r")
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not text:
            return ""
        over = self._oversize(text)
        if over is not None:
            start, size = over
            text = text[:start]
            self.too_large = EventTooLarge(size, self._cap)
        return text

    def _lines(self, text: str) -> list[tuple[str, str]]:
        if "\n" not in text:
            self._partial += text
            return []
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        out: list[tuple[str, str]] = []
        fields = self._fields
        clean = self._clean
        i, n = 0, len(lines)
        while i < n:
            line = lines[i]
            i += 1
            if clean and line.startswith("data:") and i < n and not lines[i]:
                value = line[5:]
                out.append(("message", value[1:] if value.startswith(" ") else value))
                i += 1
                continue
            sse = fields.decode(line)
            if sse is not None:
                out.append((sse.event, sse.data))
                clean = True  # a dispatch resets the event, data and retry
            elif not line:
                clean = True  # a blank line that dispatched nothing: nothing was pending
            elif not line.startswith(":"):
                clean = False
        self._clean = clean
        return out

    def _oversize(self, text: str) -> tuple[int, int] | None:
        """Where in ``text`` an event over the cap starts, and its size so far; else None.

        Events before it in the same read are complete and must still be decoded, so the
        caller keeps ``text[:start]`` before raising.
        """
        cap = self._cap
        pos = 0
        run = self._since_boundary
        if self._ends_with_lf and text.startswith("\n"):
            run, pos = 0, 1  # a blank line split across reads
        while True:
            idx = text.find("\n\n", pos)
            end = len(text) if idx < 0 else idx
            if run + end - pos > cap:
                return pos, run + end - pos
            if idx < 0:
                run += len(text) - pos
                break
            run, pos = 0, idx + 2
        self._ends_with_lf = text.endswith("\n")
        self._since_boundary = run
        return None


async def aiter_sse(
    source: ByteSource, max_event_chars: int = 1 << 20, stats: DecodeStats | None = None
) -> AsyncIterator[ServerSentEvent]:
    """Decode SSE events from raw body chunks, capped and UTF-8 safe (``SSEStream``)."""
    stream = SSEStream(max_event_chars, stats)
    async for raw in source.aiter_bytes():
        for event, data in stream.feed(raw):
            yield ServerSentEvent(event, data)
        if stream.too_large is not None:
            raise stream.too_large
    for event, data in stream.close():
        yield ServerSentEvent(event, data)
    if stream.too_large is not None:
        raise stream.too_large


async def aiter_sse_httpx(
    source: ByteSource, max_event_chars: int = 1 << 20, stats: DecodeStats | None = None
) -> AsyncIterator[ServerSentEvent]:
    """The same through httpx-sse's ``EventSource`` line by line: what ``SSEStream`` must
    equal (tests compare the two)."""
    text_source = _TextSource(source, max_event_chars, stats or DecodeStats())
    event_source = EventSource(cast(httpx.Response, cast(Any, text_source)))
    async for sse in event_source.aiter_sse():
        yield sse


class _TextSource:
    """Looks enough like an ``httpx.Response`` for ``httpx_sse.EventSource`` (reference path)."""

    def __init__(self, source: ByteSource, max_event_chars: int, stats: DecodeStats):
        self.headers = httpx.Headers({"content-type": "text/event-stream"})
        self._source = source
        self._stream = SSEStream(max_event_chars, stats)

    async def aiter_text(self) -> AsyncIterator[str]:
        stream = self._stream
        async for raw in self._source.aiter_bytes():
            text = stream.text(raw)
            if text:
                yield text
            if stream.too_large is not None:
                raise stream.too_large
        text = stream.text_end()
        if text:
            yield text
        if stream.too_large is not None:
            raise stream.too_large


class BytesSource:
    """A ``ByteSource`` over a list of chunks, for tests and recorded streams."""

    def __init__(self, chunks: list[bytes]):
        self._chunks = chunks

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for c in self._chunks:
            yield c

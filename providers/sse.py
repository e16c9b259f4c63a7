"""SSE decoding on top of httpx-sse, with the safety httpx-sse leaves to us (DESIGN §3).

httpx-sse keeps an unbounded line buffer and decodes with the response's charset. We wrap the
response's text iterator so that: bytes are decoded as UTF-8 incrementally (a character split
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


class _TextSource:
    """Looks enough like an ``httpx.Response`` for ``httpx_sse.EventSource``."""

    def __init__(self, source: ByteSource, max_event_chars: int, stats: DecodeStats):
        self.headers = httpx.Headers({"content-type": "text/event-stream"})
        self._source = source
        self._cap = max_event_chars
        self._stats = stats
        self._skip_lf = False
        self._since_boundary = 0
        self._ends_with_lf = False

    def _normalise(self, text: str) -> str:
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]
        self._skip_lf = text.endswith("\r")
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text

    def _oversize(self, text: str) -> tuple[int, int] | None:
        """Where in ``text`` an event over the cap starts, and its size so far; else None.

        Events before it in the same read are complete and must still be decoded, so the
        caller passes ``text[:start]`` on before raising.
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

    def _checked(self, text: str) -> tuple[str, EventTooLarge | None]:
        over = self._oversize(text)
        if over is None:
            return text, None
        start, size = over
        return text[:start], EventTooLarge(size, self._cap)

    async def aiter_text(self) -> AsyncIterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors=_ERRORS)
        stats = self._stats
        first = True
        async for raw in self._source.aiter_bytes():
            if not raw:
                continue
            stats.bytes_received += len(raw)
            chunk = raw
            if first:
                first = False
                if raw.startswith(codecs.BOM_UTF8):
                    chunk = raw[len(codecs.BOM_UTF8) :]
            _Counter.current = stats
            try:
                text = decoder.decode(chunk)
            finally:
                _Counter.current = None
            text = self._normalise(text)
            if text:
                text, too_large = self._checked(text)
                if text:
                    yield text
                if too_large is not None:
                    raise too_large
        _Counter.current = stats
        try:
            tail = decoder.decode(b"", final=True)
        finally:
            _Counter.current = None
        tail = self._normalise(tail)
        if tail:
            tail, too_large = self._checked(tail)
            if tail:
                yield tail
            if too_large is not None:
                raise too_large


async def aiter_sse(
    source: ByteSource, max_event_chars: int = 1 << 20, stats: DecodeStats | None = None
) -> AsyncIterator[ServerSentEvent]:
    """Decode SSE events from raw body chunks with httpx-sse, capped and UTF-8 safe."""
    text_source = _TextSource(source, max_event_chars, stats or DecodeStats())
    event_source = EventSource(cast(httpx.Response, cast(Any, text_source)))
    async for sse in event_source.aiter_sse():
        yield sse


class BytesSource:
    """A ``ByteSource`` over a list of chunks, for tests and recorded streams."""

    def __init__(self, chunks: list[bytes]):
        self._chunks = chunks

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for c in self._chunks:
            yield c

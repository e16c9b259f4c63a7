# ruff: noqa: ASYNC109  (httpcore's interface passes timeouts as arguments)
"""An asyncio network backend for httpcore that stamps the moment request bytes leave.

DESIGN §4 defines t0 as the moment the last byte of the request is handed to the socket, and
suggests httpcore's ``send_request_body.complete`` trace event. Measured here against the mock
server on loopback, that event fires 0.05–0.8 ms after the bytes actually left: httpcore's anyio
backend yields to the event loop before each write (anyio's checkpoint), and on a 2-core machine
the write that wakes the server often lets the kernel run the server first, so a stamp taken
after the write returns is late by whatever ran in between. That skew, and the server's own,
made 3 ms TTFT comparisons fail about one run in three.

This backend writes straight to the asyncio transport: ``StreamWriter.write`` makes the send
system call at once when the buffer is empty, and we stamp just before it. When the kernel could
not take everything (a large body), the stamp is taken when the buffer has drained instead. The
stamp reaches the request's trace hook through a context variable (same task, same context).

Reading, the stream notes when each read returned (``read_ns``): the engine stamps the events a
read carried with it (DESIGN §4), however long decoding the ones before them took. And an event
stream sent in chunks (``Transfer-Encoding: chunked``, one chunk an event at most servers) is
not passed through h11 chunk by chunk, which made h11, httpcore and httpx a third of the
engine's CPU at 8,000 events a second: the engine reads its body straight from here
(``read_body``, de-chunked by ``ChunkJoiner``), and h11 then reads only its last chunk, so the
connection is kept; any other reader of such a body gets each read's data as one chunk. Only a
body whose head was checked (2xx, chunked, no content coding, an event stream) after a request
sent with ``JOIN_CHUNKS`` set is touched; anything else passes as it came.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import ssl
import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

now_ns = time.perf_counter_ns

LAST_WRITE_NS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "tokenrace_last_write_ns", default=None
)

# Set by the engine around a streaming request: join the chunks of its event-stream response.
JOIN_CHUNKS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tokenrace_join_chunks", default=False
)

# h11's own grammar for a chunk header (h11._abnf.chunk_header), and its limit on a line.
_CHUNK_HEADER = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?\r\n")
_HEAD_END = re.compile(rb"\n\r?\n")
_MAX_LINE = 100 * 1024  # httpcore's MAX_INCOMPLETE_EVENT_SIZE

_PASS, _HEAD, _SIZE, _DATA, _CRLF, _BROKEN = range(6)


def _joinable(head: bytes) -> bool | None:
    """Whether a response head announces a body to join (None: an informational head, 1xx)."""
    lines = head.split(b"\n")
    status_line = lines[0].rstrip(b"\r").split(b" ", 2)
    if len(status_line) < 2 or status_line[0] != b"HTTP/1.1" or not status_line[1].isdigit():
        return False
    status = int(status_line[1])
    if 100 <= status < 200:
        return None if status != 101 else False
    if not 200 <= status < 300 or status == 204:
        return False
    fields: dict[bytes, list[bytes]] = {}
    for raw_line in lines[1:]:
        line = raw_line.rstrip(b"\r")
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or line[:1] in b" \t" or name != name.strip():
            return False  # h11 decides what to make of it
        fields.setdefault(name.lower(), []).append(value.strip().lower())
    return (
        fields.get(b"transfer-encoding") == [b"chunked"]
        and b"content-length" not in fields
        and fields.get(b"content-encoding", [b"identity"]) == [b"identity"]
        and any(b"text/event-stream" in v for v in fields.get(b"content-type", []))
    )


class ChunkJoiner:
    """Follows a response's framing and reads its chunked event-stream body a read at a time.

    ``feed`` takes the bytes of one read and returns what h11 should see: the response head as
    it came, then the body re-framed (the data of the read's chunks joined under one chunk
    header), and from the last chunk on (``0``, trailers) the bytes as they came. ``dechunk``
    returns a read's data without framing instead, for a reader past h11. A malformed chunk
    sets ``error`` (the data before it is still returned), as h11 would have raised.
    """

    def __init__(self) -> None:
        self._state = _PASS
        self._head = bytearray()
        self._line = b""
        self._need = 0
        self._crlf = b""
        self.error: httpcore.RemoteProtocolError | None = None
        # Bytes already read and not yet passed on: a joined body's start, kept back from the
        # read that ended its head (so that whoever reads the body gets it), or the end of a
        # body read by ``dechunk`` (for h11, which has seen none of it).
        self.held = b""

    def arm(self) -> None:
        """Expect a response head next (a request has just been sent)."""
        self._state = _HEAD
        self._head = bytearray()
        self._line = b""
        self.error = None
        self.held = b""

    def disarm(self) -> None:
        """Pass everything through (a request sent without ``JOIN_CHUNKS``)."""
        self._state = _PASS
        self.held = b""

    @property
    def in_body(self) -> bool:
        """Whether a joined body is being read (its head passed, its last chunk not yet)."""
        return self._state in (_SIZE, _DATA, _CRLF) and self.error is None

    def dechunk(self, raw: bytes) -> bytes:
        """The data of the body's chunks in one read's bytes, without their framing. From the
        last chunk on, the bytes are kept in ``held`` for h11: it then sees an empty body."""
        data, tail = self._body(raw)
        if self._state == _PASS:
            self.held = tail
        return data

    def feed(self, raw: bytes) -> bytes:
        """What h11 should receive for the bytes of one read."""
        if self._state == _PASS or not raw:
            return raw
        if self._state == _HEAD:
            self._head += raw
            m = _HEAD_END.search(self._head)
            if m is None:
                if len(self._head) > _MAX_LINE:
                    self._state = _PASS
                return raw
            start = len(raw) - (len(self._head) - m.end())  # where the body starts in raw
            verdict = _joinable(bytes(self._head[: m.end()]))
            self._head = bytearray()
            if verdict is None:  # 1xx: the real head follows
                return raw[:start] + self.feed(raw[start:])
            if not verdict:
                self._state = _PASS
                return raw
            self._state = _SIZE
            self.held = raw[start:]  # for the body's reader, h11 or ``dechunk``
            return raw[:start]
        data, tail = self._body(raw)
        return (b"%x\r\n%b\r\n" % (len(data), data) if data else b"") + tail

    def _fail(self, message: str) -> None:
        self.error = httpcore.RemoteProtocolError(message)
        self._state = _BROKEN

    def _body(self, data: bytes) -> tuple[bytes, bytes]:
        """The chunks' data in ``data``, and the bytes from the last chunk on (else b"")."""
        parts: list[bytes] = []
        size = 0
        i, n = 0, len(data)
        tail = b""
        while i < n:
            state = self._state
            if state == _DATA:
                take = min(self._need, n - i)
                parts.append(data[i : i + take])
                size += take
                i += take
                self._need -= take
                if not self._need:
                    self._state, self._crlf = _CRLF, b"\r\n"
            elif state == _CRLF:
                want = self._crlf
                got = data[i : i + len(want)]
                if got != want[: len(got)]:
                    self._fail(f"malformed chunk footer: {got!r} (expected {want!r})")
                    break
                i += len(got)
                self._crlf = want[len(got) :]
                if not self._crlf:
                    self._state = _SIZE
            elif state == _SIZE:
                if not self._line:
                    # The common case first: whole chunks, each header, data and CRLF in
                    # this read (anything else goes the long way below).
                    while (j := data.find(b"\r\n", i)) >= 0:
                        m = _CHUNK_HEADER.fullmatch(data, i, j + 2)
                        if m is None:
                            break
                        need = int(m[1], 16)
                        end = j + 2 + need
                        if not need or data[end : end + 2] != b"\r\n":
                            break
                        parts.append(data[j + 2 : end])
                        size += need
                        i = end + 2
                    if i >= n:
                        break
                if self._line and self._line.endswith(b"\r") and data[i : i + 1] == b"\n":
                    header, i = self._line + b"\n", i + 1
                else:
                    j = data.find(b"\r\n", i)
                    if j < 0:
                        self._line += data[i:]
                        if len(self._line) > _MAX_LINE:
                            self._fail("chunk header too long")
                        break
                    header, i = self._line + data[i : j + 2], j + 2
                self._line = b""
                m = _CHUNK_HEADER.fullmatch(header)
                if m is None:
                    self._fail(f"illegal chunk header: {header!r}")
                    break
                self._need = int(m[1], 16)
                if not self._need:  # the last chunk: it and the trailers go as they came
                    tail = header + data[i:]
                    self._state = _PASS
                    break
                self._state = _DATA
            else:  # _BROKEN: nothing more is passed on; read() raises the error
                break
        return (parts[0] if len(parts) == 1 else b"".join(parts)), tail


SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


# What one read of a socket asks for. asyncio asks for 256 KiB, and a buffer that large is
# allocated with mmap and freed with munmap on every read: recv of a 300-byte event cost 15 µs
# against 1.8 µs at 64 KiB on this machine (a socket pair, 20,000 reads), and a fast stream
# is read once an event.
READ_SIZE = 64 * 1024


def small_reads(transport: asyncio.BaseTransport) -> None:
    """Make an asyncio socket or pipe transport read at most ``READ_SIZE`` bytes a call."""
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = READ_SIZE  # type: ignore[attr-defined]


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection on asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer
        small_reads(writer.transport)
        self._joiner = ChunkJoiner()
        self.read_ns = 0  # when the last read returned (perf_counter_ns)

    async def _read(self, max_bytes: int, timeout: float | None) -> bytes:
        joiner = self._joiner
        if joiner.error is not None:
            error, joiner.error = joiner.error, None
            raise error
        if joiner.held:  # read earlier (with the head, when read_ns was taken)
            raw, joiner.held = joiner.held, b""
            return raw
        try:
            if timeout is None:
                raw = await self._reader.read(max_bytes)
            else:
                async with asyncio.timeout(timeout):
                    raw = await self._reader.read(max_bytes)
        except TimeoutError:
            raise httpcore.ReadTimeout("timed out reading from the server") from None
        except (OSError, ConnectionError) as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc
        self.read_ns = now_ns()
        return raw

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        while True:
            raw = await self._read(max_bytes, timeout)
            data = self._joiner.feed(raw)
            if data or not raw:
                return data
            # Only chunk framing arrived: nothing for h11 yet (an empty read means EOF to it).

    def body_joined(self) -> bool:
        """Whether this connection is reading a joined event-stream body (see ``read_body``)."""
        return self._joiner.in_body

    async def read_body(self, max_bytes: int = READ_SIZE) -> bytes:
        """The next data of a joined body, read straight from the socket, de-chunked; b"" at its
        end. Past h11 and httpx: one step a read instead of a dozen. Call it only after the head
        and before anything else reads the body; when it returns b"", h11 still has to read the
        body's end (``0``, trailers) for the connection to be reused: drain the response."""
        joiner = self._joiner
        while joiner.in_body:
            raw = await self._read(max_bytes, None)
            if not raw:
                raise httpcore.RemoteProtocolError(
                    "peer closed connection without sending complete message body "
                    "(incomplete chunked read)"
                )
            data = joiner.dechunk(raw)
            if data:
                return data
        if joiner.error is not None:
            error, joiner.error = joiner.error, None
            raise error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._writer.transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        if JOIN_CHUNKS.get() and not buffer.startswith(b"CONNECT "):
            self._joiner.arm()
        else:
            self._joiner.disarm()
        t = now_ns()
        try:
            self._writer.write(buffer)
            if self._writer.transport.get_write_buffer_size():
                async with asyncio.timeout(timeout):
                    await self._writer.drain()
                t = now_ns()
        except TimeoutError:
            raise httpcore.WriteTimeout("timed out writing to the server") from None
        except (OSError, ConnectionError, RuntimeError) as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc
        LAST_WRITE_NS.set(t)

    async def aclose(self) -> None:
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
        except (OSError, ConnectionError, TimeoutError, ssl.SSLError):
            pass

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError:
            await self.aclose()
            raise httpcore.ConnectTimeout("timed out during the TLS handshake") from None
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        w = self._writer
        if info == "ssl_object":
            return w.get_extra_info("ssl_object")
        if info == "client_addr":
            return w.get_extra_info("sockname")
        if info == "server_addr":
            return w.get_extra_info("peername")
        if info == "socket":
            return w.get_extra_info("socket")
        if info == "is_readable":
            # An idle pooled connection that is readable was closed (or spoke out of turn).
            if self._reader.at_eof() or w.transport.is_closing():
                return True
            sock = w.get_extra_info("socket")
            if sock is None:
                return False
            try:
                return bool(httpcore._utils.is_socket_readable(sock))
            except (OSError, ValueError):
                return True
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend on plain asyncio (TCP_NODELAY is asyncio's default)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                    limit=1 << 20,
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {path}") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def make_transport(
    *,
    verify: bool | str | ssl.SSLContext,
    proxy: str | None,
    trust_env: bool,
    limits: httpx.Limits,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections use ``AsyncioBackend``.

    httpx does not take a network backend, so we set it on the httpcore pool it built (the
    ``_network_backend`` attribute of httpcore 1.x). If that attribute ever moves, we keep
    httpx's default backend and t0 falls back to the trace event.
    """
    transport = httpx.AsyncHTTPTransport(
        verify=verify, proxy=proxy, trust_env=trust_env, limits=limits
    )
    pool = getattr(transport, "_pool", None)
    if isinstance(pool, httpcore.AsyncConnectionPool) and hasattr(pool, "_network_backend"):
        pool._network_backend = AsyncioBackend()
    return transport

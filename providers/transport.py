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
"""

from __future__ import annotations

import asyncio
import contextvars
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

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection on asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError:
            raise httpcore.ReadTimeout("timed out reading from the server") from None
        except (OSError, ConnectionError) as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._writer.transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
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
    verify: bool | str,
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

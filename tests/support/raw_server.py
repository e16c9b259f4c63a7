"""A byte-exact HTTP server for tests: each request gets the next scripted raw response.

Where the mock server speaks OpenAI with scenarios, this one writes exactly the bytes a test
gives it, in the chunks and at the times it says: recorded streams at their recorded framing,
a multi-byte character split across reads, a connection cut mid-chunk. It runs in the test's own
event loop and records every request (headers and body) for credential checks.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Ending = Literal["clean", "abort", "hold"]


@dataclass
class Script:
    """One scripted response."""

    chunks: list[bytes] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(
        default_factory=lambda: {"Content-Type": "text/event-stream; charset=utf-8"}
    )
    delays_s: list[float] | None = None  # before each chunk
    ending: Ending = "clean"  # abort: cut the TCP connection; hold: never finish
    chunked: bool = True


@dataclass
class Recorded:
    """A request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def sse_events(text: str) -> list[bytes]:
    """Split a recorded SSE body into its events, each keeping its blank-line terminator."""
    out: list[bytes] = []
    rest = text
    while rest:
        idx = rest.find("\n\n")
        if idx < 0:
            out.append(rest.encode())
            break
        out.append(rest[: idx + 2].encode())
        rest = rest[idx + 2 :]
    return out


class RawServer:
    """Serves ``Script``s in order; ``default`` answers when the queue is empty."""

    def __init__(self, default: Script | None = None) -> None:
        self.scripts: list[Script] = []
        self.default = default
        self.requests: list[Recorded] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, script: Script) -> None:
        self.scripts.append(script)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        for w in list(self._writers):
            w.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> RawServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Recorded(method, path, headers, body))
                script = self.scripts.pop(0) if self.scripts else self.default
                if script is None:
                    script = Script(
                        status=404,
                        headers={"Content-Type": "application/json"},
                        chunks=[b'{"error":{"message":"no script"}}'],
                        chunked=False,
                    )
                keep = await self._respond(writer, script)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            self._writers.discard(writer)
            if not writer.is_closing():
                writer.close()

    async def _respond(self, writer: asyncio.StreamWriter, s: Script) -> bool:
        reason = {
            200: "OK",
            400: "Bad Request",
            401: "Unauthorized",
            404: "Not Found",
            429: "Too Many Requests",
            500: "Internal Server Error",
        }.get(s.status, "Status")
        head = [f"HTTP/1.1 {s.status} {reason}"]
        head += [f"{k}: {v}" for k, v in s.headers.items()]
        if s.chunked:
            head.append("Transfer-Encoding: chunked")
        else:
            head.append(f"Content-Length: {sum(len(c) for c in s.chunks)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        for i, chunk in enumerate(s.chunks):
            if s.delays_s is not None and i < len(s.delays_s) and s.delays_s[i] > 0:
                await asyncio.sleep(s.delays_s[i])
            if s.chunked:
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            else:
                writer.write(chunk)
            await writer.drain()
        if s.ending == "abort":
            writer.transport.abort()
            return False
        if s.ending == "hold":
            await asyncio.sleep(3600)
            return False
        if s.chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        return True

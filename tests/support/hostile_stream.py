"""A small OpenAI-compatible server with hostile replies, in its own process (tmux, Pilot).

    python -m tests.support.hostile_stream      # prints "PORT <n>", serves until stdin closes

The model name picks the reply:
- ``endless``: 1 KB deltas of words with no newline, as fast as the client reads, forever;
- ``hostile``: a lone surrogate in a delta and a usage count of 1e20, then a clean end;
- anything else: ``fine, thank you``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")
LONE = "\ud800"


def _event(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()  # ASCII: the surrogate stays an escape


def _delta(text: str, finish: str | None = None) -> bytes:
    return _event({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]})


def words_kb(seed: int) -> str:
    """About 1 KB of words, no newline."""
    out: list[str] = []
    n = 0
    i = seed
    while n < 1000:
        w = _WORDS[i % len(_WORDS)]
        out.append(w)
        n += len(w) + 1
        i += 3
    return " ".join(out) + " "


async def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


async def _reply(writer: asyncio.StreamWriter, model: str) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    if model == "endless":
        seed = 0
        while True:  # as fast as the client reads (drain waits for it)
            await _chunk(writer, _delta(words_kb(seed)))
            seed += 1
            # drain() returns at once while the client keeps up: without this, a client as
            # fast as this server would get one endless reply and never the other's headers.
            await asyncio.sleep(0)
    if model == "hostile":
        await _chunk(writer, _delta(f"bad {LONE} char"))
        await _chunk(writer, _delta(" then more"))
        await _chunk(writer, _delta("", "stop"))
        usage = {"prompt_tokens": 3, "completion_tokens": 1e20}
        await _chunk(writer, _event({"choices": [], "usage": usage}))
    else:
        await _chunk(writer, _delta("fine, thank you"))
        await _chunk(writer, _delta("", "stop"))
    await _chunk(writer, b"data: [DONE]\n\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            method, _path, _ = line.decode("latin-1").split(" ", 2)
            length = 0
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
            body = await reader.readexactly(length) if length else b""
            if method == "GET":
                data = json.dumps(
                    {"data": [{"id": m} for m in ("endless", "hostile", "fine")]}
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
                continue
            model = str(json.loads(body or b"{}").get("model", ""))
            await _reply(writer, model)
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


class HostileServer:
    """This server in a child process: ``with HostileServer() as srv: srv.base_url``."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> HostileServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.hostile_stream"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _main() -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", 0)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    # Serve until stdin closes: the test that started it ends it by closing the pipe.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(_main())

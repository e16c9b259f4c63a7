"""A server built to misbehave, for the tests of issue 15: nothing gets through, nothing leaks.

It speaks just enough of the OpenAI API to be used as an endpoint, and every field it can fill
is hostile: terminal escape sequences (clipboard, title, screen, queries, links, C1 controls) in
the reply, the reasoning, error bodies and model ids; lone surrogates; absurd numbers (negative
and 1e308 token counts and costs, ``Retry-After: nan``); an endless stream. Its ``redirect_to``
mode answers every request with a 302 to another server (a second loopback port: another
origin), which records the headers it gets, so a test can see whether a key followed.

It runs in a thread with its own event loop, so sync tests, async tests, CLI subprocesses and
the app in tmux can all use it; every request is recorded (method, path, headers, body).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Each entry is one thing a terminal would obey. The OSC 0 that ends in BEL is left open on
# purpose at the end of HOSTILE (a sanitiser that only strips BEL leaves it swallowing text).
PAYLOADS: dict[str, str] = {
    "osc52_clipboard": "\x1b]52;c;SE9TVElMRS1DTElQQk9BUkQ=\x07",  # base64 "HOSTILE-CLIPBOARD"
    "osc0_title": "\x1b]0;HOSTILE-TITLE\x07",
    "osc2_title_st": "\x1b]2;HOSTILE-TITLE\x1b\\",
    "clear_screen": "\x1b[2J\x1b[H",
    "reset": "\x1bc",
    "leave_alt_screen": "\x1b[?1049l",
    "cursor_query": "\x1b[6n",
    "osc8_link": "\x1b]8;;https://evil.invalid/\x1b\\click\x1b]8;;\x1b\\",
    "c1_csi": "\x9b2J",
    "c1_osc": "\x9d0;HOSTILE-TITLE\x9c",
    "del": "\x7f",
    "bel_bs_vt_ff_cr": "\x07\x08\x0b\x0c\r",
    "bidi_override": "\u202egnp.exe",
    "zero_width": "gpt\u200b-4o",
    "open_osc": "\x1b]0;HOSTILE-TITLE",
}
HOSTILE = "".join(PAYLOADS.values())
HOSTILE_MODEL_IDS = [
    "gpt-4o[/preview]",
    "evil\x1b]52;c;SE9TVElMRS1DTElQQk9BUkQ=\x07model",
    "title\x1b]0;HOSTILE-TITLE\x07model",
    "c1\x9b2Jmodel",
    "gpt\u202e4o",
    "gpt\u200b-4o-mini",
]
# A lone surrogate can only be written as a JSON escape: raw it is not UTF-8.
SURROGATE_JSON = '"half \\ud800 a pair"'


@dataclass
class Seen:
    """A request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    """One response: status, headers, body chunks (chunked when ``stream``), and whether the
    body never ends."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    endless: bytes | None = None  # sent again and again, forever
    delay_s: float = 0.0  # between chunks


def sse(*objs: Any, done: bool = True) -> list[bytes]:
    """Server-sent events of ``objs`` (strings are sent as they are)."""
    out = [f"data: {o if isinstance(o, str) else json.dumps(o)}\n\n".encode() for o in objs]
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


def chunk(
    content: str | None = None,
    reasoning: str | None = None,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An OpenAI chat-completion chunk."""
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        delta["reasoning_content"] = reasoning
    obj: dict[str, Any] = {
        "id": "x",
        "object": "chat.completion.chunk",
        "model": "hostile",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        obj["usage"] = usage
    return obj


def hostile_stream(text: str = HOSTILE, reasoning: str = HOSTILE) -> Answer:
    """A complete reply whose reasoning and text are both ``text``."""
    return Answer(
        headers={"Content-Type": "text/event-stream"},
        chunks=sse(
            chunk(reasoning=reasoning),
            chunk(content=text),
            chunk(finish="stop"),
            {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}},
        ),
    )


def absurd_usage_stream(usage: dict[str, Any] | None = None) -> Answer:
    """A short reply whose usage figures cannot be: negative, 1e308 (JSON also allows
    ``Infinity`` and ``NaN``, which Python's parser accepts: pass them as raw strings)."""
    figures = usage or {"prompt_tokens": -4, "completion_tokens": 1e308, "cost": 1e308}
    return Answer(
        headers={"Content-Type": "text/event-stream"},
        chunks=sse(chunk(content="ok"), chunk(finish="stop", usage=figures)),
    )


def endless_stream(text: str = HOSTILE, every_s: float = 0.02) -> Answer:
    """A stream that never ends: the same hostile event every ``every_s`` seconds."""
    event = sse(chunk(content=text), done=False)[0]
    return Answer(headers={"Content-Type": "text/event-stream"}, endless=event, delay_s=every_s)


def models_answer(ids: list[str]) -> Answer:
    """GET /models listing ``ids``."""
    body = json.dumps({"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})
    return Answer(headers={"Content-Type": "application/json"}, chunks=[body.encode()])


def error_answer(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    """A JSON error body with ``message``."""
    body = json.dumps({"error": {"message": message, "type": "hostile"}})
    return Answer(
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
        chunks=[body.encode()],
    )


Handler = Callable[[Seen], Answer]


class HostileServer:
    """Serves ``handler(request)`` for every request, on 127.0.0.1, from its own thread."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler: Handler = handler or self.default
        self.requests: list[Seen] = []
        self.port = 0
        self.redirect_to: str | None = None  # a base URL: every request gets a 302 there
        self.models = list(HOSTILE_MODEL_IDS)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def default(self, req: Seen) -> Answer:
        if req.path.split("?", 1)[0].endswith("/models"):
            return models_answer(self.models)
        return hostile_stream()

    def start(self) -> HostileServer:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = fut.result(10)
        return self

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def headers_seen(self) -> str:
        """Every header of every request, as one string (for canary searches)."""
        return json.dumps([r.headers for r in self.requests])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
                req = Seen(method, path, headers, body)
                self.requests.append(req)
                if self.redirect_to is not None:
                    tail = path.split("/v1", 1)[-1]
                    answer = Answer(
                        status=302,
                        headers={"Location": f"{self.redirect_to}{tail}"},
                        chunks=[b"moved"],
                    )
                else:
                    answer = self.handler(req)
                await self._respond(writer, answer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, ValueError):
            return
        finally:
            writer.close()

    async def _respond(self, writer: asyncio.StreamWriter, a: Answer) -> None:
        head = [f"HTTP/1.1 {a.status} Status"]
        head += [f"{k}: {v}" for k, v in a.headers.items()]
        head.append("Transfer-Encoding: chunked")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        for c in a.chunks:
            writer.write(f"{len(c):x}\r\n".encode() + c + b"\r\n")
            await writer.drain()
            if a.delay_s:
                await asyncio.sleep(a.delay_s)
        while a.endless is not None:
            writer.write(f"{len(a.endless):x}\r\n".encode() + a.endless + b"\r\n")
            await writer.drain()
            await asyncio.sleep(a.delay_s or 0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

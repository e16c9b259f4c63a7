"""``python -m tests.support.fake_local_server WATCH_FD -- [llama_cpp.server arguments]``

A stand-in for ``providers.local_server`` that needs no llama.cpp: it takes the same arguments,
writes a few llama.cpp-like lines to its log, answers ``GET /v1/models``, streams chat replies
and counts tokens (one per word). ``FAKE_LOCAL_MODE`` says how it behaves:

- ``sigill`` (default): the first chat request gets two tokens, then the process kills itself
  with SIGILL, as a native llama.cpp does on a CPU that forbids AMX;
- ``sigill-early``: the same before the answer's first byte;
- ``ok``: every chat request gets a whole reply naming the model, with ``[DONE]``.

A request that does not stream (tokenrace's warm-up) gets one word, except in the mode
``sigill-warmup``, where it kills the server.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _arg(args: list[str], name: str, default: str = "") -> str:
    return args[args.index(name) + 1] if name in args else default


def _watch(fd: int) -> None:
    try:
        while os.read(fd, 1):
            pass
    except OSError:
        pass
    os._exit(0)


class Handler(BaseHTTPRequestHandler):
    alias = "fake"
    mode = "sigill"

    def log_message(self, format: str, *args: Any) -> None:
        print(f"fake-server: {format % args}", file=sys.stderr, flush=True)

    def _json(self, obj: object) -> None:
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._json({"object": "list", "data": [{"id": self.alias, "object": "model"}]})

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")  # type: ignore[no-any-return]

    def _chunk(self, content: str | None, finish: str | None = None) -> None:
        delta = {"content": content} if content is not None else {}
        obj = {
            "id": "fake",
            "object": "chat.completion.chunk",
            "model": self.alias,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        self.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())
        self.wfile.flush()

    def do_POST(self) -> None:
        body = self._body()
        if self.path.startswith("/extras/tokenize/count"):
            text = str(body.get("input", ""))
            self._json({"count": 1 + len(text.split())})  # a BOS token, like llama.cpp
            return
        if not body.get("stream"):  # tokenrace's warm-up: one token, whole
            if self.mode == "sigill-warmup":
                _die_by_sigill()
            self._json({"choices": [{"index": 0, "message": {"content": "Hi"}}]})
            return
        if self.mode == "sigill-early":  # killed before a byte of the answer
            print("ggml_compute_forward: illegal instruction ahead", file=sys.stderr, flush=True)
            _die_by_sigill()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if self.mode == "sigill":
            self._chunk("Paris is")
            self._chunk(" the")
            print("ggml_compute_forward: illegal instruction ahead", file=sys.stderr, flush=True)
            _die_by_sigill()
            return
        for word in ("This", " is", f" {self.alias}", " speaking."):
            self._chunk(word)
        self._chunk(None, "stop")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def _die_by_sigill() -> None:
    """SIGILL to this process, and nothing more from this thread: the signal may be taken by
    another thread, and until it is, this one would go on answering (a CI run saw the headers
    of a reply that was meant never to start)."""
    os.kill(os.getpid(), signal.SIGILL)
    threading.Event().wait()


def main() -> None:
    watch_fd = int(sys.argv[1])
    args = sys.argv[3:]
    threading.Thread(target=_watch, args=(watch_fd,), daemon=True).start()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a SIGILL must not leave a core file
    Handler.alias = _arg(args, "--model_alias", "fake")
    Handler.mode = os.environ.get("FAKE_LOCAL_MODE", "sigill")
    print("load_tensors:   CPU_Mapped model buffer size =     1.00 MiB", file=sys.stderr)
    print(f"fake-server: chat_format {_arg(args, '--chat_format', '(gguf)')}", file=sys.stderr)
    address = (_arg(args, "--host", "127.0.0.1"), int(_arg(args, "--port")))
    server = ThreadingHTTPServer(address, Handler)
    print(f"fake-server: listening on {server.server_address}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

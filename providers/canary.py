"""The canary: a loopback server of ours that streams paced events carrying their send times.

A load sweep streams one canary reply per engine process beside the real requests: each event's
text is ``time.perf_counter_ns()`` taken just before the server wrote it, so the engine's stamp
of that event minus the number in it is how late this client stamps bytes (the kernel's receive
time is not reachable through httpx). Both stamps come from one node's monotonic clock. The
server runs in its own process, so a client starved of CPU cannot starve its canary with it.

    python -m providers.canary   # prints "CANARY_PORT <port>", serves until stdin closes
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from typing import Final

PORT_LINE: Final = "CANARY_PORT"
DEFAULT_PACE_MS: Final = 20.0  # 50 events a second, the rate of one stream at 50 tok/s
_MODEL_RE: Final = re.compile(rb'"model"\s*:\s*"pace-([0-9.]+)ms"')
_PREEMPTED_NS: Final = 500_000


def _event(text: bytes) -> bytes:
    """One chat-completions chunk carrying ``text``, as an HTTP chunk."""
    payload = b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % text
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def model_for(pace_ms: float) -> str:
    """The model name that asks the canary for one event every ``pace_ms``."""
    return f"pace-{pace_ms:g}ms"


async def _serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip() or b"0")
        body = await reader.readexactly(length) if length else b""
        match = _MODEL_RE.search(body)
        pace_s = (float(match.group(1)) if match else DEFAULT_PACE_MS) / 1000
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        next_at = time.perf_counter() + pace_s
        while not writer.is_closing():
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += pace_s
            t = time.perf_counter_ns()
            writer.write(_event(b"%d " % t))
            if time.perf_counter_ns() - t > _PREEMPTED_NS:
                # Descheduled between the stamp and the write: this event's delay would be
                # ours, not the client's. The client drops the event this names.
                writer.write(_event(b"void %d " % t))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()


async def _main() -> None:
    server = await asyncio.start_server(_serve_one, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def watch_stdin() -> None:
        # The parent closing our stdin (or dying) ends the canary.
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"{PORT_LINE} {port}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    """Serve canary streams on a free loopback port until stdin closes."""
    # The canary stands for the server: a CPU limit the client was started under (an affinity
    # mask, as the starved-client test sets) is not the server's.
    if hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
    asyncio.run(_main())


class CanaryProcess:
    """The canary server as a child process; ``base_url`` once started."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def start(self, timeout_s: float = 15.0) -> CanaryProcess:
        """Start the child and read its port (raises RuntimeError when it does not come up)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "providers.canary"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        box: list[bytes] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.daemon = True
        reader.start()
        reader.join(timeout_s)
        line = box[0].decode(errors="replace").split() if box else []
        if len(line) != 2 or line[0] != PORT_LINE:
            self.stop()
            raise RuntimeError("the canary server did not start")
        self.base_url = f"http://127.0.0.1:{int(line[1])}/v1"
        return self

    def stop(self) -> None:
        """Stop the child (closing its stdin, then terminating it)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    main()

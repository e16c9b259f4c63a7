"""The engine process: reads sockets, stamps events, and sends them to the UI in batches.

Rendering markdown blocks the UI's event loop for hundreds of milliseconds, and a thread does
not escape the GIL, so the TUI runs the engine here, in its own process (DESIGN §3). The UI
talks to it over two pipes with length-prefixed pickle frames (``providers.remote``); the
messages are the dataclasses of ``providers.wire``: ``Configure`` first, then ``Start``,
``Cancel``, ``CancelAll``, ``Warm`` and ``Shutdown`` from the UI; ``Ready``, ``Events``,
``Done`` and ``Status`` (the local model's start-up news) back.

Events are flushed every few milliseconds (``FLUSH_INTERVAL_S``) in one frame: a fast stream
reaches the UI as a few batches per displayed frame instead of one per network read, and the
timestamps, taken when the bytes were read, are not affected. While streams pour in, the loop
reads the sockets once a millisecond (``providers.paced_loop``). Writes go through an asyncio
pipe transport, so a UI that is busy rendering never blocks the stamping of other streams here.
The process exits
when its stdin closes, so it cannot outlive the UI.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from providers.config import Config
from providers.engine import Engine, now_ns
from providers.events import Cancelled, Event, StreamError
from providers.framing import encode, pipe_streams, read_frame
from providers.keys import Keyring, KeyStore
from providers.local import LocalPool
from providers.paced_loop import new_event_loop, window_from_env
from providers.request import ChatRequest
from providers.start_gate import StartGate
from providers.wire import (
    Cancel,
    CancelAll,
    Configure,
    Done,
    Events,
    FromEngine,
    Ready,
    Shutdown,
    Start,
    Status,
    Warm,
)

FLUSH_INTERVAL_S = 0.008


def _die_with_parent() -> None:
    """On Linux, ask the kernel to SIGTERM us when the UI process dies (belt and braces)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except Exception:
        pass


class Worker:
    """Runs streams for the UI and forwards their events."""

    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer
        self.engine: Engine | None = None
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.gates: dict[str, tuple[StartGate, int]] = {}
        # Each stream's events since the last flush, in order; sent as one ``Events``.
        self._batch: dict[int, list[Event]] = {}
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        self._background: set[asyncio.Task[None]] = set()
        # The local model's servers outlive config changes; they stop with the engine.
        self.local = LocalPool(on_status=lambda text, level: self.send(Status(text, level)))

    def background(self, coro: Any) -> None:
        """Run ``coro`` without awaiting it, keeping a reference until it ends."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def send(self, msg: FromEngine) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(msg))

    def emit(self, sid: int, ev: Event) -> None:
        self.emit_many(sid, [ev])

    def emit_many(self, sid: int, events: list[Event]) -> None:
        batch = self._batch.get(sid)
        if batch is None:
            self._batch[sid] = events
        else:
            batch.extend(events)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # Timestamps are taken when read; delivery can wait a little, so that a fast
            # stream reaches the UI as a few batches a frame rather than hundreds of frames.
            self._loop.call_later(FLUSH_INTERVAL_S, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._batch:
            batch, self._batch = self._batch, {}
            self.send(Events(batch))

    def configure(self, config: Config) -> None:
        old = self.engine
        self.engine = Engine(config, KeyStore(Keyring(config.keyring_timeout_s)), local=self.local)
        if old is not None:
            self.background(old.aclose())

    def start(
        self, sid: int, request: ChatRequest, t_submit_ns: int, gate_key: str | None, gate_size: int
    ) -> None:
        gate: StartGate | None = None
        if gate_key is not None and gate_size > 1:
            gate, seen = self.gates.get(gate_key, (StartGate(gate_size), 0))
            seen += 1
            if seen >= gate_size:
                self.gates.pop(gate_key, None)  # every participant has its ticket
            else:
                self.gates[gate_key] = (gate, seen)
        self.tasks[sid] = asyncio.create_task(self._run(sid, request, t_submit_ns, gate))

    async def _run(
        self, sid: int, request: ChatRequest, t_submit_ns: int, gate: StartGate | None
    ) -> None:
        assert self.engine is not None
        try:
            # Events come both ways (the reads' straight from the reading task), in order.
            async for events in self.engine.stream_batches(
                request,
                gate=gate,
                t_submit_ns=t_submit_ns,
                sink=lambda events: self.emit_many(sid, events),
            ):
                self.emit_many(sid, events)
        except asyncio.CancelledError:
            self.emit(sid, Cancelled(t_ns=now_ns()))
        except Exception as exc:  # never let one stream take the process down
            self.emit(
                sid,
                StreamError(
                    t_ns=now_ns(),
                    kind="internal",
                    message=f"engine error: {type(exc).__name__}: {exc}",
                ),
            )
        finally:
            self.tasks.pop(sid, None)
            self._flush()
            self.send(Done(sid))

    def cancel(self, sid: int) -> None:
        task = self.tasks.get(sid)
        if task is not None:
            task.cancel()

    def cancel_all(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()

    async def shutdown(self) -> None:
        self.cancel_all()
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        if self.engine is not None:
            await self.engine.aclose()
        await self.local.aclose()


async def serve(read_fd: int, write_fd: int) -> None:
    """Serve commands from ``read_fd`` until it closes; write frames to ``write_fd``."""
    reader, writer = await pipe_streams(
        os.fdopen(read_fd, "rb", buffering=0), os.fdopen(write_fd, "wb", buffering=0)
    )
    worker = Worker(writer)
    worker.send(Ready(os.getpid()))
    # In the engine's log (its stderr): when it was ready, for the cold-start benchmark.
    print(f"engine ready, pid {os.getpid()}", file=sys.stderr, flush=True)
    try:
        while True:
            try:
                msg = await read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            match msg:
                case Configure(config):
                    worker.configure(config)
                case Start(sid, request, t_submit_ns, gate_key, gate_size):
                    worker.start(sid, request, t_submit_ns, gate_key, gate_size)
                case Cancel(sid):
                    worker.cancel(sid)
                case CancelAll():
                    worker.cancel_all()
                case Warm(model_ref):
                    if worker.engine is not None:
                        worker.background(worker.engine.warm(model_ref))
                case Shutdown():
                    break
    finally:
        await worker.shutdown()
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()


def main() -> None:
    """Entry point: ``python -m providers.worker``; frames on stdin/stdout."""
    import signal

    # Ctrl+C belongs to the UI, which cancels streams itself; the engine ends with its stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # So does a closed terminal (SIGHUP reaches the whole job): the UI ends the replies as
    # interrupted and then closes our stdin; pdeathsig covers a UI that dies outright.
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _die_with_parent()
    read_fd = os.dup(0)
    write_fd = os.dup(1)
    # Anything printed by a library must not corrupt the frame stream.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # While streams pour in, the loop reads once a window (``providers.paced_loop``).
    window = window_from_env(os.environ.get("TOKENRACE_PACE_MS"))
    try:
        with asyncio.Runner(loop_factory=lambda: new_event_loop(window)) as runner:
            runner.run(serve(read_fd, write_fd))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

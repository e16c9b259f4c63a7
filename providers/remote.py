"""The UI's handle on the engine process (``providers.worker``): start, cancel, receive events.

``EngineProcess`` starts the worker, sends it the config, and reads its frames. Each stream's
events arrive on that stream's ``StreamHandle`` as batches; a consumer awaits ``next_batch`` and
gets everything that has arrived since its last call, so a slow consumer sees fewer, larger
batches rather than a backlog. If the process dies, every open stream gets a ``StreamError``
saying so and the next ``submit`` starts a fresh process.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from providers import prespawn
from providers.config import Config
from providers.events import Cancelled, Event, Finished, StreamError
from providers.framing import encode, pipe_streams, read_frame
from providers.request import ChatRequest

# The wire's message types are imported where the engine is first spoken to, after the UI's
# first frame: building their dataclasses was 12 ms of the UI's start-up (bench/README.md).
if TYPE_CHECKING:
    from providers.wire import ToEngine

now_ns = time.perf_counter_ns


@dataclass
class StreamHandle:
    """One stream's events as they arrive from the engine process."""

    sid: int
    events: list[Event] = field(default_factory=list)  # everything so far, in order
    done: bool = False
    _unread: int = 0
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def _push(self, evs: list[Event]) -> None:
        self.events.extend(evs)
        self._wakeup.set()

    def _finish(self) -> None:
        self.done = True
        self._wakeup.set()

    async def next_batch(self) -> list[Event] | None:
        """Events that arrived since the last call; None once the stream is over and read."""
        while self._unread >= len(self.events):
            if self.done:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        batch = self.events[self._unread :]
        self._unread = len(self.events)
        return batch


class WorkerProcess(Protocol):
    """What ``EngineProcess`` uses of its worker: ``asyncio.subprocess.Process`` has it, and so
    does an adopted ``AdoptedWorker``."""

    stdin: asyncio.StreamWriter | None
    stdout: asyncio.StreamReader | None

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def kill(self) -> None: ...

    def terminate(self) -> None: ...


class AdoptedWorker:
    """A worker started before the event loop (``providers.prespawn``), its pipes now streams
    of the loop."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
    ) -> None:
        self._popen = popen
        self.stdin: asyncio.StreamWriter | None = stdin
        self.stdout: asyncio.StreamReader | None = stdout

    @classmethod
    async def adopt(cls, popen: subprocess.Popen[bytes]) -> AdoptedWorker:
        assert popen.stdin is not None and popen.stdout is not None
        # asyncio.subprocess's own limit, as for a worker the UI starts itself.
        reader, writer = await pipe_streams(popen.stdout, popen.stdin, limit=2**16)
        return cls(popen, writer, reader)

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    async def wait(self) -> int:
        # Polled, not waited for in a thread: a ``wait_for`` that gives up on a hung worker
        # would leave that thread blocked, and the interpreter waits for it at exit.
        while (code := self._popen.poll()) is None:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.02)
        return code

    def kill(self) -> None:
        if self._popen.poll() is None:
            self._popen.kill()

    def terminate(self) -> None:
        if self._popen.poll() is None:
            self._popen.terminate()


# The events that end a stream.
_ENDS = (Finished, Cancelled, StreamError)


class EngineProcess:
    """Owns the engine worker process and routes its events to stream handles."""

    def __init__(
        self,
        config: Config,
        log_path: Path | None = None,
        on_died: Callable[[str], None] | None = None,
        early: subprocess.Popen[bytes] | None = None,
    ):
        self.config = config
        self.log_path = log_path
        self.on_died = on_died
        # A worker the command line started before the UI (``providers.prespawn``): the first
        # start adopts it instead of starting one.
        self._early = early
        # The local model's start-up news: (text, level "info" | "error").
        self.on_status: Callable[[str, str], None] | None = None
        # Called when the last running stream is done (the UI collects garbage then).
        self.on_idle: Callable[[], None] | None = None
        self._proc: WorkerProcess | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._streams: dict[int, StreamHandle] = {}
        self._ids = itertools.count(1)
        self._gates = itertools.count(1)
        self._starting: asyncio.Future[None] | None = None
        self._closing = False
        self._warm_pending: list[str] = []
        self.pid: int | None = None
        self.restarts = 0
        self.pipe_counts = [0, 0]  # frames and bytes read from the engine (benchmarks)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Start the worker (idempotent); returns when it is ready for commands."""
        if self.running and self._starting is not None and self._starting.done():
            return
        if self._starting is not None and not self._starting.done():
            await asyncio.shield(self._starting)
            return
        loop = asyncio.get_running_loop()
        self._starting = loop.create_future()
        try:
            await self._spawn()
            self._starting.set_result(None)
        except BaseException as exc:
            self._starting.set_exception(exc)
            self._starting.exception()  # mark retrieved
            self._starting = None
            raise

    async def _spawn(self) -> None:
        from providers.wire import Configure, Ready, Warm

        early, self._early = self._early, None
        if early is not None and early.poll() is None:
            self._proc = await AdoptedWorker.adopt(early)
        else:
            prespawn.discard(early)
            log_file = prespawn.open_log(self.log_path)
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    *prespawn.WORKER,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log_file if log_file is not None else asyncio.subprocess.DEVNULL,
                    env=prespawn.worker_env(),
                )
            finally:
                if log_file is not None:
                    log_file.close()
        assert self._proc.stdout is not None
        ready = await asyncio.wait_for(read_frame(self._proc.stdout), 30)
        if not isinstance(ready, Ready):
            raise RuntimeError(f"engine process said {ready!r} instead of ready")
        self.pid = ready.pid
        self._send(Configure(self.config))
        pending, self._warm_pending = self._warm_pending, []
        for model_ref in pending:
            self._send(Warm(model_ref))
        self._reader_task = asyncio.create_task(self._read_loop(self._proc))

    def _send(self, msg: ToEngine) -> None:
        if self._proc is None or self._proc.stdin is None or self._proc.stdin.is_closing():
            raise ConnectionError("the engine process is not running")
        self._proc.stdin.write(encode(msg))

    async def _read_loop(self, proc: WorkerProcess) -> None:
        from providers.wire import Done, Events, Status

        assert proc.stdout is not None
        try:
            while True:
                msg = await read_frame(proc.stdout, self.pipe_counts)
                match msg:
                    case Events(by_stream):
                        ended = False
                        for sid, evs in by_stream.items():
                            handle = self._streams.get(sid)
                            if handle is not None:
                                handle._push(evs)
                                ended = ended or any(isinstance(ev, _ENDS) for ev in evs)
                        if ended:
                            # A stream's end is read by its consumer before the frames behind
                            # it in the pipe: frames already read are handed out without a
                            # turn of the loop, and the consumers then run in the order they
                            # started waiting. The pane that ended first drew its end last,
                            # after the others' whole batches (a race at 4 × 2,000 tok/s: 111
                            # ms, against 61-75 for the panes that ended 25 ms after it).
                            await asyncio.sleep(0)
                    case Status(text, level):
                        if self.on_status is not None:
                            self.on_status(text, level)
                    case Done(sid):
                        handle = self._streams.pop(sid, None)
                        if handle is not None:
                            handle._finish()
                            if not self._streams and self.on_idle is not None:
                                self.on_idle()
        except (asyncio.IncompleteReadError, ConnectionError, EOFError, ValueError):
            pass
        except asyncio.CancelledError:
            return
        await self._died(proc)

    async def _died(self, proc: WorkerProcess) -> None:
        try:
            code = await asyncio.wait_for(proc.wait(), 2)
        except TimeoutError:
            code = None
        if self._closing:
            return
        reason = (
            f"the engine process exited (status {code})"
            if code is not None
            else "the engine process stopped answering"
        )
        for handle in list(self._streams.values()):
            handle._push(
                [
                    StreamError(
                        t_ns=now_ns(),
                        kind="internal",
                        message=f"{reason}; it is being restarted — retry the request",
                    )
                ]
            )
            handle._finish()
        self._streams.clear()
        self._proc = None
        self._starting = None
        self.restarts += 1
        if self.on_died is not None:
            self.on_died(reason)

    @property
    def active(self) -> int:
        """Streams started and not yet done."""
        return len(self._streams)

    async def submit(
        self,
        request: ChatRequest,
        t_submit_ns: int | None = None,
        gate: tuple[str, int] | None = None,
    ) -> StreamHandle:
        """Start one stream; ``gate`` = (key, size) makes concurrent requests leave together."""
        from providers.wire import Start

        await self.start()
        sid = next(self._ids)
        handle = StreamHandle(sid)
        self._streams[sid] = handle
        key, size = gate if gate is not None else (None, 1)
        self._send(Start(sid, request, t_submit_ns or now_ns(), key, size))
        return handle

    async def submit_many(
        self, requests: list[ChatRequest], t_submit_ns: int | None = None
    ) -> list[StreamHandle]:
        """Start several streams whose requests leave together (A/B fairness, DESIGN §4)."""
        t = t_submit_ns or now_ns()
        gate = (f"g{next(self._gates)}", len(requests)) if len(requests) > 1 else None
        return [await self.submit(r, t, gate) for r in requests]

    def cancel(self, handle: StreamHandle) -> None:
        """Cancel one stream; its handle receives ``Cancelled`` and ends."""
        if self.running and not handle.done:
            from providers.wire import Cancel

            self._send(Cancel(handle.sid))

    def cancel_all(self) -> None:
        """Cancel every running stream at once."""
        if self.running:
            from providers.wire import CancelAll

            self._send(CancelAll())

    def warm(self, model_ref: str) -> None:
        """Open a connection to the model's endpoint (start the local server) in advance; before
        the worker is ready, the request waits and is sent right after the config."""
        if self.running and self._starting is not None and self._starting.done():
            from providers.wire import Warm

            self._send(Warm(model_ref))
        elif model_ref not in self._warm_pending:
            self._warm_pending.append(model_ref)

    def reconfigure(self, config: Config) -> None:
        """Send a new config (after the user edits endpoints)."""
        self.config = config
        if self.running:
            from providers.wire import Configure

            self._send(Configure(config))

    def kill(self) -> None:
        """Kill the worker (tests of the restart path)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    async def close(self) -> None:
        """Stop the worker: ask nicely, then terminate, then kill."""
        self._closing = True
        early, self._early = self._early, None
        if early is not None:  # never started: the UI ended before its first frame
            await asyncio.get_running_loop().run_in_executor(None, prespawn.discard, early)
        proc = self._proc
        if proc is None:
            return
        try:
            from providers.wire import Shutdown

            self._send(Shutdown())
            if proc.stdin is not None:
                proc.stdin.close()
        except (ConnectionError, RuntimeError):
            pass
        try:
            await asyncio.wait_for(proc.wait(), 2)
        except TimeoutError:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 2)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader_task is not None:
            self._reader_task.cancel()
        self._proc = None

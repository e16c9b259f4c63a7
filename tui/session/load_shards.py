"""Shards past this process: ``--procs N`` child processes and ``--ray`` actors.

Each shard is a ``tui.session.load.Shard`` running its own engine in its own process (on its own
node, for Ray): it stamps its requests on its own clock and sends back every request's figures,
in batches, as they finish. The driver merges them (percentiles over all requests, never an
average of per-shard percentiles). Ray is imported only when asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

from providers.config import Config
from tui.session.load import Health, Sample, Shard, ShardStep
from tui.session.replay import SuiteItem

BATCH_S = 0.05  # how often a shard sends its finished requests back


async def _batched(
    shard: Shard, part: ShardStep, send: Callable[[tuple[str, Any]], None]
) -> Health:
    """Run ``part`` on ``shard``, sending finished requests in batches every ``BATCH_S``."""
    pending: list[Sample] = []

    async def flusher() -> None:
        while True:
            await asyncio.sleep(BATCH_S)
            if pending:
                send(("samples", pending[:]))
                pending.clear()

    task = asyncio.create_task(flusher())
    try:
        health = await shard.run_step(part, pending.append)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if pending:
        send(("samples", pending[:]))
    return health


# --- child processes ---------------------------------------------------------------------------


def child_main() -> None:
    """A ``--procs`` child (``python -c``, its end of the pipe as fd in ``argv[1]``): one shard,
    commands in and results out. Started as a plain subprocess, not by multiprocessing, so
    nothing of the parent's ``__main__`` is imported again."""
    conn = Connection(int(sys.argv[1]))
    config, items, models, name = conn.recv()
    asyncio.run(_child_main(conn, config, items, models, name))


async def _child_main(
    conn: Connection, config: Config, items: list[SuiteItem], models: list[str], name: str
) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    lock = threading.Lock()

    def send(msg: tuple[str, Any]) -> None:
        with lock:
            conn.send(msg)

    def read() -> None:
        try:
            while True:
                msg = conn.recv()
                loop.call_soon_threadsafe(inbox.put_nowait, msg)
        except (EOFError, OSError):
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(inbox.put_nowait, ("close", None))

    shard = Shard(config, items, models, name)
    await shard.start()
    threading.Thread(target=read, daemon=True).start()
    send(("ready", os.getpid()))
    running: set[asyncio.Task[None]] = set()

    async def step(part: ShardStep) -> None:
        health = await _batched(shard, part, send)
        send(("health", health))

    try:
        while True:
            kind, arg = await inbox.get()
            if kind == "step":
                task = asyncio.create_task(step(arg))
                running.add(task)
                task.add_done_callback(running.discard)
            elif kind == "stop":
                shard.stop_sending(bool(arg))
            elif kind == "close":
                break
    finally:
        for task in running:
            task.cancel()
        await shard.aclose()


class ProcessPool:
    """``--procs N``: N child processes, one shard each (nothing shared but a socket pair)."""

    def __init__(
        self, config: Config, items: Sequence[SuiteItem], models: Sequence[str], procs: int
    ) -> None:
        self.size = procs
        self._args = (config, list(items), list(models))
        self._conns: list[Connection] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._inboxes: list[asyncio.Queue[tuple[str, Any]]] = []
        self.pids: list[int] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self.size):
            conn, theirs = Pipe()  # a socket pair, duplex
            argv = [
                sys.executable,
                "-c",
                "from tui.session.load_shards import child_main; child_main()",
                str(theirs.fileno()),
            ]
            proc = await asyncio.to_thread(
                subprocess.Popen, argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL
            )
            theirs.close()
            conn.send((*self._args, f"proc-{i + 1}"))
            inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
            threading.Thread(target=self._read, args=(conn, inbox, loop), daemon=True).start()
            self._conns.append(conn)
            self._procs.append(proc)
            self._inboxes.append(inbox)
        for inbox in self._inboxes:
            kind, pid = await inbox.get()
            if kind != "ready":
                raise RuntimeError("an engine process did not start")
            self.pids.append(int(pid))

    @staticmethod
    def _read(
        conn: Connection, inbox: asyncio.Queue[tuple[str, Any]], loop: asyncio.AbstractEventLoop
    ) -> None:
        try:
            while True:
                msg = conn.recv()
                loop.call_soon_threadsafe(inbox.put_nowait, msg)
        except (EOFError, OSError):
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(inbox.put_nowait, ("gone", None))

    async def run_step(
        self, parts: Sequence[ShardStep | None], emit: Callable[[Sample], None]
    ) -> list[Health]:
        async def one(i: int, part: ShardStep) -> Health | None:
            self._conns[i].send(("step", part))
            while True:
                kind, arg = await self._inboxes[i].get()
                if kind == "samples":
                    for s in arg:
                        emit(s)
                elif kind == "health":
                    return arg  # type: ignore[no-any-return]
                elif kind == "gone":
                    return None

        got = await asyncio.gather(*(one(i, p) for i, p in enumerate(parts) if p is not None))
        return [h for h in got if h is not None]

    def stop_sending(self, cancel: bool) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(("stop", cancel))

    async def aclose(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(("close", None))
        deadline = time.monotonic() + 5
        for proc in self._procs:
            try:
                await asyncio.to_thread(proc.wait, max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.terminate()
                await asyncio.to_thread(proc.wait)
        for conn in self._conns:
            conn.close()


# --- Ray -----------------------------------------------------------------------------------------


class LoadActor:
    """A Ray actor (made remote by ``RayPool``): one shard on whichever node Ray placed it."""

    def __init__(
        self, config: Config, items: list[SuiteItem], models: list[str], name: str
    ) -> None:
        self.shard = Shard(config, items, models, name)

    async def start(self) -> tuple[str, int]:
        import platform

        await self.shard.start()
        return platform.node(), os.getpid()

    async def run_step(self, part: ShardStep) -> Any:
        """Streams batches of samples, then the health (a Ray streaming generator)."""
        out: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()

        async def run() -> None:
            try:
                health = await _batched(self.shard, part, out.put_nowait)
                out.put_nowait(("health", health))
            finally:
                out.put_nowait(None)

        task = asyncio.create_task(run())
        while (msg := await out.get()) is not None:
            yield msg
        await task

    def stop_sending(self, cancel: bool) -> None:
        self.shard.stop_sending(cancel)

    async def close(self) -> None:
        await self.shard.aclose()


def _package_root() -> str:
    """The directory holding ``tui`` and ``providers``: local Ray workers import the driver's
    copy of tokenrace, not another one installed elsewhere."""
    import tui

    return str(Path(tui.__file__).resolve().parent.parent)


def start_local_ray(workers: int) -> None:
    """``--ray local[:N]``: a private Ray instance on this machine for N workers: node address
    127.0.0.1, no dashboard, no usage statistics. (Ray's own servers still bind the wildcard
    address; tests run it in a network namespace whose only interface is loopback.)"""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    # Workers inherit the raylet's environment: they import this copy of tokenrace.
    root = _package_root()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p
    )
    ray.init(
        num_cpus=max(workers, 1),
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        logging_level=logging.ERROR,
        log_to_driver=False,
        configure_logging=False,
    )


def join_ray(address: str) -> None:
    """``--ray ADDRESS``: join a running cluster (tokenrace must be installed on every node)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)


def parse_ray(spec: str) -> tuple[str | None, int | None]:
    """``local``, ``local:4`` → (None, workers); anything else is a cluster address."""
    if spec == "local" or spec.startswith("local:"):
        raw = spec.partition(":")[2]
        if not raw:
            return None, os.cpu_count() or 1
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"--ray local:N takes a positive number of workers, not {raw!r}")
        return None, int(raw)
    return spec, None


class RayPool:
    """Ray actors, one shard each, spread over the cluster's nodes."""

    def __init__(
        self, config: Config, items: Sequence[SuiteItem], models: Sequence[str], actors: int
    ) -> None:
        self.size = actors
        self._args = (config, list(items), list(models))
        self.actors: list[Any] = []
        self.placed: list[tuple[str, int]] = []

    async def start(self) -> None:
        import ray

        remote: Any = ray.remote(LoadActor)
        # Async actors: a stop arrives while a step runs. SPREAD puts them on different nodes.
        options = {"num_cpus": 1, "max_concurrency": 1000, "scheduling_strategy": "SPREAD"}
        self.actors = [
            remote.options(**options).remote(*self._args, f"actor-{i + 1}")
            for i in range(self.size)
        ]
        self.placed = list(await asyncio.gather(*(a.start.remote() for a in self.actors)))

    async def run_step(
        self, parts: Sequence[ShardStep | None], emit: Callable[[Sample], None]
    ) -> list[Health]:
        async def one(actor: Any, part: ShardStep) -> Health | None:
            health: Health | None = None
            async for ref in actor.run_step.remote(part):
                kind, arg = await ref
                if kind == "samples":
                    for s in arg:
                        emit(s)
                else:
                    health = arg
            return health

        got = await asyncio.gather(
            *(one(a, p) for a, p in zip(self.actors, parts, strict=True) if p is not None)
        )
        return [h for h in got if h is not None]

    def stop_sending(self, cancel: bool) -> None:
        for actor in self.actors:
            actor.stop_sending.remote(cancel)

    async def aclose(self) -> None:
        import ray

        with contextlib.suppress(Exception):
            await asyncio.gather(*(a.close.remote() for a in self.actors))
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

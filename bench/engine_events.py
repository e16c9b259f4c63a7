"""The engine process and the pipe at four streams × 2,000 events a second (issue 21).

Runs the real engine process (``providers.worker``, through ``EngineProcess``) against the mock
server, four streams of one token an event, and reads its batches the way the UI does. Reports
the engine's CPU per event (its own CPU time, psutil) and what crossed the pipe (bytes and frames
a second, each frame re-encoded as the engine sent it). No terminal and no rendering: this is
the cost of getting events to the UI, which must stay well under a core at this rate.

    python bench/engine_events.py [--rate 2000] [--seconds 4] [--in-process]

``--in-process`` runs the same worker in this process, its pipe writes counted and dropped, and
reports this process's CPU time per event (``time.process_time``, so time spent descheduled on a
busy host does not count) and the network reads per event: the engine costs most per event when
each read carries one event, so a figure is only comparable with one at a similar reads/event.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Row
from providers.config import parse_config
from providers.events import Event
from providers.remote import EngineProcess
from providers.request import ChatRequest
from tests.support.mock_server import MockServerProcess


async def _race(server: MockServerProcess, rate: float, seconds: float) -> dict[str, float]:
    import psutil

    n = int(rate * seconds)
    names = []
    for side in "abcd":
        name = f"engine-ev-{side}-{int(rate)}"
        server.add_scenario(name, {"n_tokens": n, "ttft_ms": 20, "tps": rate, "spin": False})
        names.append(name)
    config = parse_config({"endpoints": {"mock": {"base_url": server.base_url}}})
    engine = EngineProcess(config)
    try:
        await engine.start()
        assert engine.pid is not None
        proc = psutil.Process(engine.pid)
        handles = await engine.submit_many(
            [
                ChatRequest(model=f"mock/{m}", messages=({"role": "user", "content": "go"},))
                for m in names
            ]
        )
        frames0, bytes0 = engine.pipe_counts
        cpu0 = sum(proc.cpu_times()[:2])
        ui0 = time.process_time()
        t0 = time.perf_counter()

        async def consume(h: object) -> int:
            count = 0
            while (batch := await h.next_batch()) is not None:  # type: ignore[attr-defined]
                count += len(batch)
            return count

        counts = await asyncio.gather(*(consume(h) for h in handles))
        wall = time.perf_counter() - t0
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        ui = time.process_time() - ui0
        events = sum(counts)
        frames = engine.pipe_counts[0] - frames0
        pipe_bytes = engine.pipe_counts[1] - bytes0
    finally:
        await engine.close()
    return {
        "events": events,
        "wall_s": wall,
        "engine_us_per_event": cpu / events * 1e6,
        "engine_cpu_pct": 100 * cpu / wall,
        "ui_read_us_per_event": ui / events * 1e6,
        "pipe_bytes_per_s": pipe_bytes / wall,
        "frames_per_s": frames / wall,
    }


class _NullPipe:
    """Stands in for the pipe to the UI: counts frames and bytes, keeps nothing."""

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.frames += 1
        self.bytes += len(data)


async def _race_in_process(base_url: str, names: list[str]) -> dict[str, float]:
    from providers.transport import AsyncioStream
    from providers.worker import Worker

    reads = [0]
    plain_read = AsyncioStream.read

    async def counted_read(
        self: AsyncioStream,
        max_bytes: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> bytes:
        reads[0] += 1
        return await plain_read(self, max_bytes, timeout)

    pipe = _NullPipe()
    worker = Worker(pipe)  # type: ignore[arg-type]
    counted = [0]
    emit_one = worker.emit

    def count_one(sid: int, ev: Event) -> None:
        counted[0] += 1
        emit_one(sid, ev)

    worker.emit = count_one  # type: ignore[method-assign]
    emit_many = getattr(worker, "emit_many", None)  # (absent before the batched read path)
    if emit_many is not None:

        def count_many(sid: int, events: list[Event]) -> None:
            counted[0] += len(events)
            emit_many(sid, events)

        worker.emit_many = count_many  # type: ignore[method-assign]
    worker.configure(parse_config({"endpoints": {"mock": {"base_url": base_url}}}))
    assert worker.engine is not None
    await worker.engine.warm(f"mock/{names[0]}")
    AsyncioStream.read = counted_read  # type: ignore[method-assign]
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for sid, name in enumerate(names):
            request = ChatRequest(
                model=f"mock/{name}", messages=({"role": "user", "content": "go"},)
            )
            worker.start(sid, request, time.perf_counter_ns(), "race", len(names))
        await asyncio.gather(*worker.tasks.values())
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    finally:
        AsyncioStream.read = plain_read  # type: ignore[method-assign]
        await worker.shutdown()
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "events": counted[0],
        "reads": reads[0],
        "frames": pipe.frames,
        "bytes": pipe.bytes,
    }


def measure_in_process(rate: float = 2000, seconds: float = 4.0) -> dict[str, float]:
    """The worker in this process: CPU time per event and reads per event."""
    n = int(rate * seconds)
    with MockServerProcess() as server:
        names = []
        for side in "abcd":
            name = f"engine-inproc-{side}-{int(rate)}-{seconds:g}"
            server.add_scenario(name, {"n_tokens": n, "ttft_ms": 20, "tps": rate, "spin": False})
            names.append(name)
        asyncio.run(_race_in_process(server.base_url, names[:1]))  # imports, connections
        r = asyncio.run(_race_in_process(server.base_url, names))
    events = r["events"]
    return {
        "events": events,
        "wall_s": r["wall_s"],
        "engine_us_per_event": r["cpu_s"] / events * 1e6,
        "engine_cpu_pct": 100 * r["cpu_s"] / r["wall_s"],
        "reads_per_event": r["reads"] / events,
        "pipe_bytes_per_s": r["bytes"] / r["wall_s"],
        "frames_per_s": r["frames"] / r["wall_s"],
    }


def measure(rate: float = 2000, seconds: float = 4.0, runs: int = 1) -> dict[str, float]:
    """Median over ``runs`` of each figure."""
    results = []
    with MockServerProcess() as server:
        for _ in range(runs):
            results.append(asyncio.run(_race(server, rate, seconds)))
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def run(quick: bool = False) -> list[Row]:
    m = measure(2000, 0.5 if quick else 4.0, 1 if quick else 3)
    ok = m["engine_cpu_pct"] <= 50
    return [
        Row(
            "Engine at 4 × 2,000 events/s (1 token/event): CPU a event, pipe",
            "engine ≤ 50% of one core",
            f"{m['engine_us_per_event']:.0f} µs/event = {m['engine_cpu_pct']:.0f}% of a core; "
            f"pipe {m['pipe_bytes_per_s'] / 1e6:.2f} MB/s in {m['frames_per_s']:.0f} frames/s; "
            f"UI reads {m['ui_read_us_per_event']:.0f} µs/event",
            ok,
            m,
        )
    ]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=2000)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--in-process", action="store_true", help="the worker in this process")
    ns = p.parse_args()
    if ns.in_process:
        for k, v in measure_in_process(ns.rate, ns.seconds).items():
            print(f"{k:24} {v:,.2f}")
        sys.exit(0)
    for k, v in measure(ns.rate, ns.seconds, ns.runs).items():
        print(f"{k:24} {v:,.2f}")

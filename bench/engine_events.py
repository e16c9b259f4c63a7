"""The engine process and the pipe at four streams × 2,000 events a second (issue 21).

Runs the real engine process (``providers.worker``, through ``EngineProcess``) against the mock
server, four streams of one token an event, and reads its batches the way the UI does. Reports
the engine's CPU per event (its own CPU time, psutil) and what crossed the pipe (bytes and frames
a second, each frame re-encoded as the engine sent it). No terminal and no rendering: this is
the cost of getting events to the UI, which must stay well under a core at this rate.

    python bench/engine_events.py [--rate 2000] [--seconds 4]
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
    ns = p.parse_args()
    for k, v in measure(ns.rate, ns.seconds, ns.runs).items():
        print(f"{k:24} {v:,.2f}")

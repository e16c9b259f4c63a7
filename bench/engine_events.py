"""The engine process and the pipe at four streams × 2,000 events a second (issue 21).

Runs the real engine process (``providers.worker``, through ``EngineProcess``) against the mock
server, four streams of one token an event, and reads its batches the way the UI does. Reports
the engine's CPU per event (its own CPU time, psutil) and what crossed the pipe (bytes and frames
a second, each frame re-encoded as the engine sent it). No terminal and no rendering: this is
the cost of getting events to the UI, which must stay well under a core at this rate.

    python bench/engine_events.py [--rate 2000] [--seconds 4] [--in-process]

``--in-process`` runs the same worker in this process (its pipe writes counted and dropped)
against a server of its own, four streams, and reports this process's CPU time per event
(``time.process_time``: time spent descheduled on a busy host does not count) in two fixed
cases: one event a read (an event every 2 ms a stream: the engine's dearest case) and every
reply in one write (many events a read: its cheapest). The figure above, with the mock server,
falls between the two, wherever the host's load puts the events a read that run.
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


_EVENT = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"bench","choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}'
    b"\n\n"
)
_END = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"bench","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


async def _serve_events(n: int, gap_s: float) -> None:
    """A server of ``n`` one-token events a reply, in chunks like a real server's: all in one
    write (``gap_s`` 0) or one a write every ``gap_s`` (so each of the client's reads carries
    one). Prints its port; serves until stdin closes."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in request.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                if b'"model"' not in body:  # a GET of /models (warming): an empty list
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b'Content-Length: 11\r\n\r\n{"data":[]}'
                    )
                    continue
                if gap_s <= 0:
                    writer.write(head + _chunk(_EVENT) * n + _chunk(_END) + b"0\r\n\r\n")
                    await writer.drain()
                    continue
                writer.write(head)
                t = time.perf_counter()
                for _ in range(n):
                    t += gap_s
                    await asyncio.sleep(max(0.0, t - time.perf_counter()))
                    writer.write(_chunk(_EVENT))
                writer.write(_chunk(_END) + b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def _race_in_process(base_url: str, streams: int) -> dict[str, float]:
    from providers.worker import Worker

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
    worker.configure(parse_config({"endpoints": {"bench": {"base_url": base_url}}}))
    assert worker.engine is not None
    await worker.engine.warm("bench/bench")
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for sid in range(streams):
            request = ChatRequest(
                model="bench/bench", messages=({"role": "user", "content": "go"},)
            )
            worker.start(sid, request, time.perf_counter_ns(), "race", streams)
        await asyncio.gather(*worker.tasks.values())
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    finally:
        await worker.shutdown()
    return {"cpu_s": cpu, "wall_s": wall, "events": counted[0]}


def measure_in_process(n: int = 4000, gap_s: float = 0.001, streams: int = 4) -> dict[str, float]:
    """The worker in this process against a server of its own (``_serve_events``): this
    process's CPU time per event, so a busy host's descheduling does not count, with the
    events a read fixed by the server (one, or all) rather than by the host's load."""
    import subprocess

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(n), str(gap_s)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
        asyncio.run(_race_in_process(base_url, 1))  # imports, first connections
        r = asyncio.run(_race_in_process(base_url, streams))
    finally:
        server.communicate("")
    return {
        "events": r["events"],
        "wall_s": r["wall_s"],
        "engine_us_per_event": r["cpu_s"] / r["events"] * 1e6,
        "engine_cpu_pct": 100 * r["cpu_s"] / r["wall_s"],
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
    p.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.serve:
        asyncio.run(_serve_events(int(ns.serve[0]), float(ns.serve[1])))
        sys.exit(0)
    if ns.in_process:
        # An event every 2 ms a stream: each read carries one (the engine's dearest case);
        # then every reply in one write: many events a read (its cheapest).
        for label, n, gap in (
            ("one event a read", int(500 * ns.seconds), 0.002),
            ("all in one write", int(ns.rate * ns.seconds), 0.0),
        ):
            m = measure_in_process(n, gap)
            print(f"{label}: " + ", ".join(f"{k} {v:,.2f}" for k, v in m.items()))
        sys.exit(0)
    for k, v in measure(ns.rate, ns.seconds, ns.runs).items():
        print(f"{k:24} {v:,.2f}")

"""How many streams at 50 tok/s one engine process, and the whole machine, stamp honestly.

Runs ``tokenrace load``'s own shards against the mock server (50 tok/s a stream, one token an
event, its spin-wait off), doubling the streams per step until an engine process's stamping
delay p99 (its canary, DESIGN §4) exceeds 10 ms twice in a row (once may be the host's spike).
One process (``--procs 1``), then one a core
(``--procs N``). Prints a table, writes bench/results/load_capacity.json, and the per-event
CPU cost each step measured (the paper estimate in bench/README.md starts from it). The mock
server runs on the same machine and takes its share of the cores: on 2 cores the machine's
figure is the client's and the server's together.

    python bench/load_capacity.py [--quick]
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Row, print_table, write_json
from providers.config import parse_config
from tests.support.mock_server import MockServerProcess
from tui.session.load import CLIENT_LIMIT_MS, InProcessPool, ShardPool, StepPlan, run_sweep
from tui.session.load_shards import ProcessPool
from tui.session.replay import SuiteItem

STREAM = {"ttft_ms": 10, "itl_ms": 20, "n_tokens": 50, "spin": False}  # 50 tok/s, 1 s


async def sweep(pool: ShardPool, levels: list[int], seconds: float) -> list[dict[str, Any]]:
    """One step per level (streams in all), until a step is client-limited."""
    out: list[dict[str, Any]] = []
    await pool.start()
    try:
        for i, level in enumerate(levels):
            for attempt in range(2):
                plan = StepPlan(i, "concurrency", level, None, seconds)
                (result,) = await run_sweep(pool, [plan])
                # A shared host's spike can flag one step of a client with CPU to spare: a
                # level is over the bound when it is flagged twice in a row.
                if not result.client_limited:
                    break
                if attempt == 0:
                    print(f"  {level} streams flagged once; again", file=sys.stderr)
            events = sum(len(s.itl_ms) + 1 for s in result.samples if s.ttft_ms is not None)
            window = result.window_s or 1.0
            cpu = sum(h.cpu_pct or 0.0 for h in result.health)
            delays = [h.stamp_delay_p99_ms or 0.0 for h in result.health]
            out.append(
                {
                    "streams": level,
                    "requests": len(result.samples),
                    "events_per_s": round(events / window, 1),
                    "cpu_pct": round(cpu, 1),
                    "us_cpu_per_event": round(cpu / 100 * 1e6 / (events / window), 1)
                    if events
                    else None,
                    "stamp_delay_p99_ms": round(max(delays), 2),
                    "client_limited": result.client_limited,
                }
            )
            print(f"  {pool.size} proc · {level} streams: {out[-1]}", file=sys.stderr, flush=True)
            if result.client_limited:
                break
    finally:
        await pool.aclose()
    return out


def _best(steps: list[dict[str, Any]]) -> int:
    return max((s["streams"] for s in steps if not s["client_limited"]), default=0)


def run(quick: bool = False) -> list[Row]:
    levels = [10, 20] if quick else [5, 10, 20, 40, 80, 160, 320, 640, 1280]
    seconds = 1.0 if quick else 3.0
    procs = os.cpu_count() or 1
    with MockServerProcess(scenarios={"s50": STREAM}) as server:
        config = parse_config({"endpoints": {"mock": {"base_url": server.base_url}}})
        items, models = [SuiteItem("load")], ["mock/s50"]
        one = asyncio.run(sweep(InProcessPool(config, items, models), levels, seconds))
        many = asyncio.run(sweep(ProcessPool(config, items, models, procs), levels, seconds))
    costs = [s["us_cpu_per_event"] for s in one if s["us_cpu_per_event"]]
    cost = min(costs) if costs else None
    rows = [
        Row(
            "Load capacity, one engine process (streams at 50 tok/s)",
            f"stamping delay p99 ≤ {CLIENT_LIMIT_MS:g} ms; reported",
            f"{_best(one)} streams ({_best(one) * 50:,} events/s)"
            + (f"; {cost:.0f} µs CPU an event" if cost else ""),
            None,
            {"steps": one},
        ),
        Row(
            f"Load capacity, the machine ({procs} engine processes)",
            f"stamping delay p99 ≤ {CLIENT_LIMIT_MS:g} ms; reported",
            f"{_best(many)} streams ({_best(many) * 50:,} events/s)",
            None,
            {"steps": many},
        ),
    ]
    return rows


def main() -> int:
    rows = run("--quick" in sys.argv)
    print_table(rows)
    path = write_json("load_capacity", rows)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

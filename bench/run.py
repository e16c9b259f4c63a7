"""Run every benchmark, print one table with targets and PASS/FAIL, write bench/results/run.json.

    python bench/run.py            # the whole suite and the rival (about 6 minutes)
    python bench/run.py --quick    # a smoke run of every script, 4 at a time (CI runs this)
    python bench/run.py --only render_lag cpu

Every figure is measured against a baseline taken in the same run (the mock server's own send
times, a minimal Textual app, the scenario's own duration), because absolute times vary from
machine to machine. Needs tmux for the terminal-based rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    cold_start,
    cpu,
    engine_events,
    fast_panes,
    headless_ask,
    load_capacity,
    long_conversation,
    render_lag,
    rival,
    timestamp_honesty,
    ttft_overhead,
)
from bench.common import Row, as_installed, cpu_speed_ms, print_table, write_json

SUITE: dict[str, Callable[[bool], list[Row]]] = {
    "ttft_overhead": ttft_overhead.run,
    "timestamp_honesty": timestamp_honesty.run,
    "render_lag": render_lag.run,
    "sustainable_rate": render_lag.run_rates,
    "cpu": cpu.run,
    "cold_start": cold_start.run,
    "headless_ask": headless_ask.run,
    "long_conversation": long_conversation.run,
    "load_capacity": load_capacity.run,
    "fast_final_lag": fast_panes.run_final_lag,
    "fast_render_lag": fast_panes.run_render_lag,
    "fast_sustainable_rate": fast_panes.run_rates,
    "fast_cpu": fast_panes.run_cpu,
    "engine_events": engine_events.run,
    "fast_timestamp_honesty": fast_panes.run_honesty,
    "cold_start_usable": fast_panes.run_cold_start,
    "rival": rival.run,  # needs elia installed (bench/README.md); skipped otherwise
}
NEEDS_TMUX = {
    "render_lag",
    "sustainable_rate",
    "cpu",
    "cold_start",
    "long_conversation",
    "rival",
    "fast_final_lag",
    "fast_render_lag",
    "fast_sustainable_rate",
    "fast_cpu",
    "cold_start_usable",
}


def _run_one(name: str, quick: bool) -> list[Row]:
    if name in NEEDS_TMUX and shutil.which("tmux") is None:
        return [Row(name, "needs tmux", "skipped", None)]
    try:
        return SUITE[name](quick)
    except Exception as exc:
        traceback.print_exc()
        return [Row(name, "runs", f"crashed: {type(exc).__name__}: {exc}"[:80], False)]


def _run_parallel(names: list[str], jobs: int) -> tuple[list[Row], dict[str, float]]:
    """The quick run: every script in its own process, ``jobs`` at a time. Its figures are
    taken on a machine kept busy by the others, which is fine for a smoke run (it checks
    that every script runs and reports its rows, not the figures)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(name: str) -> tuple[list[Row], float]:
        t = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.json"
            proc = subprocess.run(
                [sys.executable, __file__, "--quick", "--only", name, "--rows-json", str(out)],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.exists():
                rows = [Row(**r) for r in json.loads(out.read_text())]
            else:
                sys.stderr.write(proc.stdout + proc.stderr)
                rows = [Row(name, "runs", f"crashed: exit {proc.returncode}", False)]
        return rows, round(time.monotonic() - t, 1)

    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(one, names))
    rows = [r for rs, _ in results for r in rs]
    return rows, {n: secs for n, (_, secs) in zip(names, results, strict=True)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few seconds: smoke-test the scripts")
    p.add_argument("--only", nargs="*", choices=list(SUITE), help="run only these")
    p.add_argument(
        "--jobs", type=int, default=4, help="scripts run at once with --quick (default 4)"
    )
    p.add_argument("--rows-json", type=Path, help=argparse.SUPPRESS)  # for --jobs
    ns = p.parse_args()
    names = ns.only or list(SUITE)
    if ns.rows_json is not None:  # one script for a parallel quick run: rows only
        ran = [r for name in names for r in _run_one(name, ns.quick)]
        ns.rows_json.write_text(json.dumps([asdict(r) for r in ran]))
        return 0
    as_installed()
    rows: list[Row] = []
    timings: dict[str, float] = {}
    speed_before = cpu_speed_ms()
    started = time.monotonic()
    if ns.quick and ns.jobs > 1 and len(names) > 1:
        rows, timings = _run_parallel(names, ns.jobs)
    else:
        for name in names:
            t = time.monotonic()
            rows += _run_one(name, ns.quick)
            timings[name] = round(time.monotonic() - t, 1)
            print(f"  {name}: {timings[name]} s", file=sys.stderr, flush=True)
    total = time.monotonic() - started
    speed_after = cpu_speed_ms()
    print()
    print_table(rows)
    path = write_json(
        "run-quick" if ns.quick else "run",
        rows,
        {
            "seconds": round(total, 1),
            "timings_s": timings,
            "quick": ns.quick,
            "cpu_speed_ms": [speed_before, speed_after],
        },
    )
    print(
        f"\n{total:.0f} s · machine speed: a 2M-iteration Python loop took {speed_before} ms "
        f"before and {speed_after} ms after (lower is faster) · wrote {path}"
    )
    if ns.quick:
        return 0 if all(not r.measured.startswith("crashed") for r in rows) else 1
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""``tokenrace load SUITE -m MODEL``: a concurrency or request-rate sweep with honest stamps."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from providers.config import atomic_write_text, load_config
from providers.inert import json_inert
from providers.local import with_local
from providers.model_ref import ModelRef
from tui.session.load import (
    TABLE_HEAD,
    LoadError,
    Mode,
    Sample,
    ShardPool,
    StepPlan,
    StepResult,
    auto_procs,
    estimate_cost,
    parse_duration,
    parse_levels,
    parse_slo,
    rows_of,
    run_sweep,
    table_line,
    to_csv,
    to_json,
)
from tui.session.replay import SuiteError, load_suite

BAR = 30
MAX_STREAMS = 100_000


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenrace load",
        description="Sweep concurrency or request rate over a JSONL suite; per step: TTFT, "
        "TTFO, ITL and end-to-end percentiles, throughput, goodput, cost, and whether the "
        "client itself was the bottleneck.",
    )
    p.add_argument("suite", type=Path, help='JSONL file: one {"prompt": …} object a line')
    p.add_argument("-m", "--model", action="append", required=True, metavar="ENDPOINT/MODEL")
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--concurrency", metavar="1,2,4", help="streams in flight per model, a step each"
    )
    how.add_argument("--rate", metavar="1,5,10", help="requests per second per model (Poisson)")
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--requests", type=int, metavar="N", help="requests per model and step (default 20)"
    )
    size.add_argument("--duration", metavar="30s", help="each step lasts this long")
    p.add_argument("--seed", type=int, default=0, help="seed of the Poisson arrivals")
    p.add_argument("--slo", default="ttft=500ms,itl=50ms", help="goodput target (TTFT and p95 ITL)")
    p.add_argument("--max-cost", type=float, metavar="USD", help="stop once this much is spent")
    p.add_argument(
        "--procs", default="1", metavar="N|auto", help="engine processes on this machine"
    )
    p.add_argument("--ray", metavar="ADDRESS|local[:N]", help="run the engines as Ray actors")
    p.add_argument(
        "--actors",
        type=int,
        metavar="N",
        help="Ray actors with --ray ADDRESS (default: one a node)",
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="write every step, request and health")
    p.add_argument("--csv", type=Path, metavar="OUT", help="write one row per step and model")
    p.add_argument("--plot", type=Path, metavar="FILE.svg", help="TTFT and throughput against load")
    return p  # fmt: skip


def _plans(ns: argparse.Namespace) -> list[StepPlan]:
    mode: Mode = "rate" if ns.rate else "concurrency"
    levels = parse_levels(ns.rate or ns.concurrency or "1", whole=mode == "concurrency")
    if mode == "concurrency" and max(levels) > MAX_STREAMS:
        raise LoadError(f"--concurrency must be at most {MAX_STREAMS:,}")
    duration = parse_duration(ns.duration) if ns.duration else None
    requests = ns.requests if ns.requests is not None else (None if duration else 20)
    if requests is not None and requests < 1:
        raise LoadError("--requests must be at least 1")
    return [StepPlan(i, mode, lv, requests, duration, ns.seed) for i, lv in enumerate(levels)]


def _progress(done: int, total: int | None, failed: int, step: str) -> None:
    if not sys.stderr.isatty():
        return
    if total:
        filled = int(BAR * min(done, total) / total)
        bar = f"[{'#' * filled}{'-' * (BAR - filled)}] {done}/{total}"
    else:
        bar = f"{done} requests"
    sys.stderr.write(f"\r\x1b[K{bar} · {failed} failed · step {step}")
    sys.stderr.flush()


def main(argv: list[str]) -> int:
    """``tokenrace load`` entry point."""
    ns = _parser().parse_args(argv)
    try:
        plans = _plans(ns)
        slo = parse_slo(ns.slo)
        for m in ns.model:
            ModelRef.parse(m)  # a wrong model reference is said before anything starts
        items = load_suite(ns.suite)
    except (LoadError, SuiteError, ValueError) as exc:
        print(f"tokenrace load: {exc}", file=sys.stderr)
        return 2
    if ns.max_cost is not None and not ns.max_cost > 0:
        print("tokenrace load: --max-cost must be a positive number of dollars", file=sys.stderr)
        return 2
    config = with_local(load_config())
    estimate = estimate_cost(items, ns.model, plans, config)
    what = f"{estimate.requests:,} requests" if estimate.requests is not None else "requests"
    cost = "unknown" if estimate.usd is None else f"≈ ${estimate.usd:.4f}"
    print(
        f"tokenrace load: {len(plans)} steps × {len(ns.model)} models, {what}; estimated cost "
        f"{cost} ({estimate.note}); no retries"
        + (f"; stops at ${ns.max_cost:g}" if ns.max_cost else ""),
        file=sys.stderr,
    )
    if ns.max_cost and estimate.usd is not None and estimate.usd > ns.max_cost:
        print(
            f"tokenrace load: the estimate is over --max-cost; the sweep stops at ${ns.max_cost:g}",
            file=sys.stderr,
        )
    pool: ShardPool
    ray_note = ""
    try:
        if ns.ray:
            from tui.session.load_shards import RayPool, join_ray, parse_ray, start_local_ray

            address, workers = parse_ray(ns.ray)
            if address is None:
                start_local_ray(workers or 1)
                actors = workers or 1
            else:
                import ray

                join_ray(address)
                nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
                actors = ns.actors or max(1, sum(1 for n in nodes if n.get("Alive")))
            pool = RayPool(config, items, ns.model, actors)
            ray_note = f"ray: {actors} actors"
        else:
            if ns.procs == "auto":
                procs = auto_procs(plans, len(ns.model))
            elif not ns.procs.isdigit() or int(ns.procs) < 1:
                raise ValueError(f"--procs takes a number of processes or auto, not {ns.procs!r}")
            else:
                procs = int(ns.procs)
            if procs == 1:
                from tui.session.load import InProcessPool

                pool = InProcessPool(config, items, ns.model)
            else:
                from tui.session.load_shards import ProcessPool

                pool = ProcessPool(config, items, ns.model, procs)
    except ValueError as exc:
        print(f"tokenrace load: {exc}", file=sys.stderr)
        return 2

    interrupted = [False]
    counts = [0, 0]
    planned = [p.requests for p in plans if p.mode == "concurrency" and p.requests is not None]
    total = sum(planned) * len(ns.model) if len(planned) == len(plans) else estimate.requests
    results: list[StepResult] = []
    print(TABLE_HEAD)
    print("-" * len(TABLE_HEAD), flush=True)

    def on_sample(s: Sample) -> None:
        counts[0] += 1
        if s.status not in ("complete", "length"):
            counts[1] += 1
        _progress(counts[0], total, counts[1], str(s.step + 1))

    def on_step(result: StepResult) -> None:
        results.append(result)
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[K")
        for row in rows_of(result, ns.model, slo):
            print(table_line(row), flush=True)

    async def go() -> list[StepResult]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_sigint() -> None:
            # Ctrl+C stops sending at once and drops what is in flight; what finished is
            # written. A second one gets Python's default.
            interrupted[0] = True
            stop.set()
            with_suppressed(lambda: loop.remove_signal_handler(signal.SIGINT))

        with_suppressed(lambda: loop.add_signal_handler(signal.SIGINT, on_sigint))
        try:
            await pool.start()
            return await run_sweep(
                pool,
                plans,
                on_sample=on_sample,
                on_step=on_step,
                max_cost_usd=ns.max_cost,
                stop=stop,
            )
        finally:
            with_suppressed(lambda: loop.remove_signal_handler(signal.SIGINT))
            await pool.aclose()
            if ns.ray:
                import ray

                ray.shutdown()  # a local instance stops with it; a cluster is only left

    try:
        done = asyncio.run(go())
    except KeyboardInterrupt:
        interrupted[0] = True
        done = results
    rows = [row for r in done for row in rows_of(r, ns.model, slo)]
    limited = [r for r in done if r.client_limited]
    if rows:
        from tui.session.load_plot import terminal_plot

        print()
        print(terminal_plot(rows))
    if limited:
        steps = ", ".join(str(r.plan.index + 1) for r in limited)
        print(
            f"\nclient-limited steps: {steps} — the stamping delay p99 of an engine process was "
            f"over 10 ms, so these figures describe this client, not the server: "
            f"use --procs or --ray",
            file=sys.stderr,
        )
    if interrupted[0]:
        print(
            f"tokenrace load: interrupted; {counts[0]} finished requests are kept", file=sys.stderr
        )
    if any(r.stopped == "max_cost" for r in done):
        print(f"tokenrace load: stopped at --max-cost ${ns.max_cost:g}", file=sys.stderr)
    meta: dict[str, Any] = {
        "schema_version": 1,
        "models": ns.model,
        "suite": str(ns.suite),
        "seed": ns.seed,
        "estimated_cost_usd": estimate.usd,
        "shards": pool.size,
        "ray": ray_note or None,
        "interrupted": interrupted[0],
    }
    try:
        if ns.json:
            doc = to_json(done, ns.model, slo, meta)
            atomic_write_text(
                ns.json, json_inert(json.dumps(doc, indent=1, ensure_ascii=False)) + "\n"
            )
        if ns.csv:
            atomic_write_text(ns.csv, to_csv(rows))
        if ns.plot:
            from tui.session.load_plot import svg_plot

            atomic_write_text(ns.plot, svg_plot(rows))
    except OSError as exc:
        print(f"tokenrace load: cannot write output: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 130 if interrupted[0] else 0


def with_suppressed(fn: Any) -> None:
    """Run ``fn``, ignoring a loop without signal support."""
    try:
        fn()
    except (NotImplementedError, RuntimeError, ValueError):
        pass

"""``tokenrace replay SUITE -m A [-m B …]``: run a prompt suite, print a table per model."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from providers.config import atomic_write_text, load_config
from providers.engine import ChatRequest, Engine, collect
from providers.events import Event
from providers.inert import json_inert
from providers.keys import Keyring, KeyStore
from providers.local import LocalPool, with_local
from providers.model_ref import ModelRef, endpoint_of
from tui.session.metrics_log import append_record, run_record
from tui.session.replay import (
    RunResult,
    SuiteError,
    load_suite,
    run_suite,
    summarize,
    table,
    to_csv,
)

BAR = 30
MAX_CONCURRENCY = 1000


def progress(result: RunResult, done: int, total: int, failures: list[int]) -> None:
    if result.status not in ("complete", "length"):
        failures[0] += 1
    if not sys.stderr.isatty():
        return
    filled = int(BAR * done / total)
    sys.stderr.write(
        f"\r[{'#' * filled}{'-' * (BAR - filled)}] {done}/{total} runs · {failures[0]} failed "
    )
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def main(argv: list[str]) -> int:
    """``tokenrace replay`` entry point."""
    p = argparse.ArgumentParser(
        prog="tokenrace replay", description="Run every prompt of a JSONL suite on every model."
    )
    p.add_argument("suite", type=Path, help='JSONL file: one {"prompt": …} object a line')
    p.add_argument("-m", "--model", action="append", required=True, metavar="ENDPOINT/MODEL")
    p.add_argument("--runs", type=int, default=1, metavar="N", help="repeat the suite N times")
    p.add_argument(
        "--concurrency", type=int, default=1, metavar="K", help="at most K requests in flight"
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="write runs and summary as JSON")
    p.add_argument("--csv", type=Path, metavar="OUT", help="write the runs as CSV")
    ns = p.parse_args(argv)
    if ns.runs < 1 or ns.concurrency < 1:
        print("tokenrace replay: --runs and --concurrency must be at least 1", file=sys.stderr)
        return 2
    if ns.concurrency > MAX_CONCURRENCY:
        print(f"tokenrace replay: --concurrency must be at most {MAX_CONCURRENCY}", file=sys.stderr)
        return 2
    for m in ns.model:
        try:
            ModelRef.parse(m)
        except ValueError as exc:
            print(f"tokenrace replay: {exc}", file=sys.stderr)
            return 2
    config = with_local(load_config())
    try:
        items = load_suite(ns.suite, config.roles)
    except SuiteError as exc:
        print(f"tokenrace replay: {exc}", file=sys.stderr)
        return 2
    failures = [0]
    interrupted = [False]

    async def go() -> list[RunResult]:
        local = LocalPool(on_status=lambda text, _level: print(text, file=sys.stderr))
        engine = Engine(config, KeyStore(Keyring(config.keyring_timeout_s)), local=local)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_sigint() -> None:
            # The first Ctrl+C stops sending and drops what is in flight; what finished is
            # still written. A second one (while writing) gets Python's default: it aborts.
            interrupted[0] = True
            stop.set()
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError):
                pass

        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        except (NotImplementedError, RuntimeError):
            pass

        async def stream(request: ChatRequest, t_submit: int) -> list[Event]:
            return await collect(engine, request, t_submit_ns=t_submit)

        try:
            return await run_suite(
                items,
                ns.model,
                stream,
                config,
                runs=ns.runs,
                concurrency=ns.concurrency,
                on_result=lambda r, d, t: progress(r, d, t, failures),
                stop=stop,
            )
        finally:
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError):
                pass
            await engine.aclose()
            await local.aclose()

    results = asyncio.run(go())
    if interrupted[0]:
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        print(
            f"tokenrace replay: interrupted; {len(results)} finished runs are kept",
            file=sys.stderr,
        )
    stats = summarize(results, ns.model)
    print(table(stats))
    if config.metrics.log or config.metrics.prometheus_file:
        for r in results:
            err = append_record(
                run_record(r.model, endpoint_of(r.model), r.metrics, source="replay"), config
            )
            if err:
                print(f"warning: {err}", file=sys.stderr)
                break
    try:
        if ns.json:
            doc = {"runs": [r.to_json() for r in results], "summary": [s.to_json() for s in stats]}
            atomic_write_text(
                ns.json, json_inert(json.dumps(doc, indent=2, ensure_ascii=False)) + "\n"
            )
        if ns.csv:
            atomic_write_text(ns.csv, to_csv(results))
    except OSError as exc:
        print(f"tokenrace replay: cannot write output: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if interrupted[0]:
        return 130
    return 0 if failures[0] == 0 else 1

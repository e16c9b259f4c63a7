"""Frame ticks drawn and skipped by the frame pacer, in-process (issue 16's render-lag A/B).

    python bench/frame_ticks.py                 # 2 × 200, 4 × 500 and 4 × 2,000 tok/s
    python bench/frame_ticks.py --pacer-file OLD_frame_pacer.py   # another pacer, same streams

The app runs under Pilot at 200×50 (no terminal), the panes stream the render-lag benchmark's
mixed markdown from the mock server, and the script prints, per race, the ticks the pacer drew
and skipped and the main thread's CPU share over the race. Not a row of run.py: the counts
explain the render-lag rows, they have no target of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cpu import MARKDOWN_TOKENS
from tests.support.mock_server import MockServerProcess
from tests.support.tui import make_app, mock_config, replies_over, send, wait_until

RACES = ((2, 200, 1_600), (4, 500, 4_000), (4, 2_000, 8_000))  # panes, tok/s, tokens


async def race(server: MockServerProcess, panes: int, rate: int, n: int) -> str:
    home = Path(tempfile.mkdtemp(prefix="tokenrace-ticks-"))
    os.environ["TOKENRACE_HOME"] = str(home)
    tokens = (MARKDOWN_TOKENS * (1 + n // len(MARKDOWN_TOKENS)))[:n]
    models = []
    for i in range(panes):
        name = f"ticks-{panes}-{rate}-{i}"
        server.add_scenario(name, {"ttft_ms": 20, "tps": rate, "spin": False, "tokens": tokens})
        models.append(f"mock/{name}")
    app = make_app(mock_config(server), home, models=models)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause(0.5)
        cpu0, t0 = time.thread_time(), time.monotonic()
        await send(pilot, "go")
        await wait_until(pilot, lambda: replies_over(app), timeout=180, what="the race")
        cpu, wall = time.thread_time() - cpu0, time.monotonic() - t0
        pacer = app.screen._pacer  # type: ignore[attr-defined]
        return (
            f"{panes} × {rate:,} tok/s: ticks drawn {pacer.drawn}, skipped {pacer.skipped}; "
            f"main thread busy {100 * cpu / wall:.0f}% over {wall:.1f} s"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pacer-file", type=Path, help="a frame_pacer.py to use instead of ours")
    ns = p.parse_args()
    if ns.pacer_file is not None:
        spec = importlib.util.spec_from_file_location("other_pacer", ns.pacer_file)
        assert spec is not None and spec.loader is not None
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
        from tui.screens import race_screen

        setattr(race_screen, "FramePacer", other.FramePacer)  # noqa: B010 - a stand-in, on purpose
    with MockServerProcess() as server:
        for panes, rate, n in RACES:
            print(asyncio.run(race(server, panes, rate, n)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

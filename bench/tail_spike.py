"""Spike (issue 21): what a frame costs when a streaming reply takes no steps of height.

Not a benchmark row: a measurement that decides the next renderer change. Today a streaming
reply grows in steps of height (``StreamingMarkdown._grow``); each step is a layout of the
whole screen and a repaint of its pane (30-38 ms at 4 × 500 tok/s, 70-78 of them in 10 s).
"Tail mode" would reserve the reply's height in big steps and draw its text bottom-aligned
in it, so that the view at the end of the list shows the text's last rows: every frame then
repaints each pane's visible rows, and no frame lays out.

This script runs the same in-process 4-pane race twice in one process tree per mode:

- ``base``: the app as it is;
- ``tail``: steps of up to 1,500 lines (about one layout a pane per reply) and every frame
  repainting each pane's whole view of its reply, lines served straight from the reply's
  strips (``render_lines`` without Textual's styles cache). The text it shows is not bottom-
  aligned (the cost is what is measured, not the picture): the repaint area and the lines
  served are those tail mode would have.

    python bench/tail_spike.py [RATE] [MODE ...]      # default: 500 base tail

It prints, per mode, the UI thread's CPU, frames drawn and skipped by the pacer, and the time
in pane frames, compositor refreshes and layouts.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from textual.geometry import Region  # noqa: E402
from textual.strip import Strip  # noqa: E402

from bench.cpu import MARKDOWN_TOKENS  # noqa: E402
from tests.support.mock_server import MockServerProcess  # noqa: E402
from tests.support.tui import make_app, mock_config, replies_over, send, wait_until  # noqa: E402

PANES, TOKENS, SIZE = 4, 5000, (200, 50)
TIME: dict[str, float] = defaultdict(float)
COUNT: dict[str, int] = defaultdict(int)


def timed(cls: type, name: str, key: str) -> None:
    f: Callable[..., Any] = getattr(cls, name)

    def g(*a: Any, **k: Any) -> Any:
        t = time.thread_time()
        try:
            return f(*a, **k)
        finally:
            TIME[key] += time.thread_time() - t
            COUNT[key] += 1

    setattr(cls, name, g)


def tail_mode() -> None:
    from tui.screens.pane_reply import PaneReply
    from tui.widgets import streaming_markdown as sm

    sm.GROW_MAX = sm.GROW_MAX_BUSY = 1500
    sm.GROW_AHEAD_S = 10_000.0

    def render_lines(self: sm.StreamingMarkdown, crop: Region) -> list[Strip]:
        return [self.render_line(y).crop(crop.x, crop.right) for y in range(crop.y, crop.bottom)]

    sm.StreamingMarkdown.render_lines = render_lines  # type: ignore[method-assign]
    frame = PaneReply.frame

    def tail_frame(self: PaneReply, busy: bool = False) -> bool:
        stepped = frame(self, busy)
        body = self.widget.body
        view = body._follower()
        if body.is_mounted and view is not None:
            rows = view.region.height
            body.refresh(Region(0, max(0, body._text_lines - rows), body.region.width, rows))
        return stepped

    PaneReply.frame = tail_frame  # type: ignore[method-assign]


async def race(server: MockServerProcess, rate: int, mode: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="tokenrace-spike-"))
    os.environ["TOKENRACE_HOME"] = str(home)
    tokens = (MARKDOWN_TOKENS * (1 + TOKENS // len(MARKDOWN_TOKENS)))[:TOKENS]
    models = []
    for i in range(PANES):
        name = f"spike-{mode}-{i}"
        scenario = {"ttft_ms": 20, "tps": rate, "spin": False, "tokens": tokens}
        server.add_scenario(name, scenario)
        models.append(f"mock/{name}")
    app = make_app(mock_config(server), home, models=models)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.5)
        TIME.clear()
        COUNT.clear()
        cpu0, t0 = time.thread_time(), time.monotonic()
        await send(pilot, "go")
        await wait_until(pilot, lambda: replies_over(app), timeout=180, what="the race")
        cpu, wall = time.thread_time() - cpu0, time.monotonic() - t0
        pacer = app.screen._pacer  # type: ignore[attr-defined]
        print(
            f"{mode:5s} {PANES} × {rate} tok/s: UI thread {cpu:.2f} s in {wall:.1f} s "
            f"({100 * cpu / wall:.0f} %), frames drawn {pacer.drawn}, skipped {pacer.skipped}"
        )
        for key in sorted(TIME, key=lambda k: -TIME[k]):
            mean = 1000 * TIME[key] / max(1, COUNT[key])
            total = 1000 * TIME[key]
            print(f"    {key:10s} {total:6.0f} ms  n={COUNT[key]:4d}  {mean:6.2f} ms each")


def main() -> None:
    import textual.screen

    from tui.screens.pane_reply import PaneReply

    rate = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    modes = sys.argv[2:] or ["base", "tail"]
    if len(modes) > 1:  # one mode a process: the patches of tail mode cannot be undone
        for mode in modes:
            os.spawnv(os.P_WAIT, sys.executable, [sys.executable, __file__, str(rate), mode])
        return
    timed(textual.screen.Screen, "_compositor_refresh", "compositor")
    timed(textual.screen.Screen, "_refresh_layout", "layout")
    timed(PaneReply, "frame", "frames")
    if modes[0] == "tail":
        tail_mode()
    with MockServerProcess() as server:
        asyncio.run(race(server, rate, modes[0]))


if __name__ == "__main__":
    main()

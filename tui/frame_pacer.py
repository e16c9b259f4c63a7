"""Frames as often as they are useful: fewer when drawing is what keeps the UI busy.

The chat and compare screens draw new text on a frame clock (20 Hz). While streams are light a
frame is cheap and every tick draws. When four panes stream thousands of tokens a second, every
frame draws a screenful of new text in each pane, and at 20 Hz the UI spent more than all its
time drawing: replies fell behind without bound (issue 21: 2.4-2.9 s behind at 4 × 2,000 tok/s).
Text that arrives between two frames and scrolls out of view is never drawn
(``StreamingMarkdown``), so fewer frames mean less drawing, and the lag stays bounded instead.

The pacer reads the main thread's CPU time at every tick and keeps the share of time it was
busy as a moving average over about ``TAU_S``. Only while that average is above ``BUSY`` (the UI
is saturated, not just one frame dear) is a tick skipped, and never for more than ``MAX_WAIT_S``
since the last frame drawn. A reply's end is drawn at once by its own ``finish``, never paced.

Text that scrolls by faster than anyone reads is drawn less often still. While a pane's text
moves ``FAST_VIEWS_PER_S`` views a second or more (a frame at 20 Hz shows a quarter of a view of
new text: 4 panes × 1,000 tok/s and up) and the UI thread is busier than ``FAST_BUSY``, frames
come ``FAST_INTERVAL_S`` apart. Each frame costs about as much again whatever text it draws (the
open blocks, the block parse, the compositor, the write), and at half the frames a pane shows
its last view whole at each frame instead of half of it: at 4 × 2,000 tok/s the UI thread was
40-60 % busy at 19 frames a second, every row of the text drawn once, and the app and engine
together took 77-102 % of a core, against the issue's bound of 100 %. A light UI keeps every
frame: one pane at 2,000 tok/s keeps its UI thread 15 % busy, two 27 %.

The first pacer judged each 50 ms interval on its own: at 2 panes × 200 tok/s one costly frame
(a code block closing, a young collection) put an interval over 60 % and skipped the next
tick, and render lag p95 read 1.44-1.52× that of the build without a pacer in the same runs.
"""

from __future__ import annotations

import math
import time
from asyncio import Event
from collections.abc import Callable
from typing import cast

from textual import _time
from textual.timer import EventTargetGone, Timer

from tui.textual_private import private_override

# Skip ticks while the UI thread's busy share, averaged over about TAU_S, is above BUSY; draw at
# least every MAX_WAIT_S.
BUSY = 0.75
TAU_S = 0.5
MAX_WAIT_S = 0.25
# A frame that ends past the next tick's time is followed by the next one this long after it
# ends (a breath for keys and the pipe), not at the tick after next (``FrameClock``).
LATE_BREATH_S = 0.005
# Above this busy share, a streaming reply grows in bigger steps of height (``GROW_MAX_BUSY``):
# each step is a layout and a redraw of its pane. Below it (2 panes × 200 tok/s: 0.27; 4 × 500:
# 0.57), steps stay small, so that few blank lines show below the text.
STEP_BUSY = 0.5
# Text moving this many views a second or more, while the UI thread is busier than FAST_BUSY,
# is drawn at most every FAST_INTERVAL_S (a tick is skipped when the last frame is closer than
# three quarters of it: every other tick at 20 Hz).
FAST_VIEWS_PER_S = 5.0
FAST_BUSY = 0.3
FAST_INTERVAL_S = 0.1
# ... and keeps them so until the UI thread is less busy than this share of FAST_BUSY (with
# half the frames it is less busy: at 4 × 2,000 tok/s 0.48 at every frame, about 0.4 at half;
# 0.33 and 0.25 on a faster host).
FAST_LEAVE = 0.6


class FramePacer:
    """Says, at each tick of a frame clock, whether to draw a frame."""

    def __init__(
        self,
        busy: float = BUSY,
        max_wait_s: float = MAX_WAIT_S,
        tau_s: float = TAU_S,
        fast_busy: float = FAST_BUSY,
        fast_interval_s: float = FAST_INTERVAL_S,
        clock: Callable[[], float] | None = None,
        cpu_clock: Callable[[], float] | None = None,
    ) -> None:
        self.busy = busy
        self.max_wait_s = max_wait_s
        self.tau_s = tau_s
        self.fast_busy = fast_busy
        self.fast_interval_s = fast_interval_s
        self._clock = clock or time.monotonic
        self._cpu = cpu_clock or time.thread_time
        self._tick: tuple[float, float] | None = None  # (wall, cpu) at the last tick
        self._drawn_at: float | None = None  # wall time of the last frame drawn
        self.load = 0.0  # the UI thread's busy share, moving average
        self.thinned = False  # fast text drawn every FAST_INTERVAL_S
        self.drawn = 0
        self.skipped = 0

    def frame(self, fast: bool = False) -> bool:
        """True when this tick should draw (and counts it as drawn). ``fast``: some text on
        screen moves ``FAST_VIEWS_PER_S`` views a second or more."""
        now, cpu = self._clock(), self._cpu()
        if self._tick is not None:
            wall = now - self._tick[0]
            if wall > 0:
                share = min(1.0, (cpu - self._tick[1]) / wall)
                self.load += (1 - math.exp(-wall / self.tau_s)) * (share - self.load)
        self._tick = (now, cpu)
        if not fast or self.load < self.fast_busy * FAST_LEAVE:
            self.thinned = False
        elif self.load > self.fast_busy:
            self.thinned = True
        drawn_at = self._drawn_at
        if drawn_at is not None:
            since = now - drawn_at
            if (self.load > self.busy and since < self.max_wait_s) or (
                self.thinned and since < 0.75 * self.fast_interval_s
            ):
                self.skipped += 1
                return False
        self._drawn_at = now
        self.drawn += 1
        return True


class FrameClock(Timer):
    """Textual's repeating timer, except after a late tick.

    Textual's timer keeps its phase: a tick that ends after the next one was due makes it
    skip ticks up to the next multiple of the interval after now, and one more (its
    ``count`` is one ahead). At 4 × 500 tok/s a frame that took 60 ms of a 50-ms interval was
    followed by 90 ms of waiting: frames came 100-150 ms apart at the 95th percentile while
    the UI thread was a third idle, and that gap is most of the render lag. Here a late tick
    is followed by the next one ``LATE_BREATH_S`` after it ends, and the clock keeps the
    interval from there: never a burst of ticks to catch up, never a skipped one.
    """

    @private_override(Timer)
    async def _run(self) -> None:
        active = cast("Event", self._active)  # made in this thread, as Textual's own is
        await active.wait()
        interval = self._interval
        count = 0
        due = _time.get_time() + interval
        while self._repeat is None or count <= self._repeat:
            await _time.sleep(max(0.0, due - _time.get_time()))
            count += 1
            await active.wait()
            if self._reset:
                self._reset = False
                count = 0
                due = _time.get_time() + interval
                continue
            try:
                await self._tick(next_timer=due, count=count)
            except EventTargetGone:
                break
            due = max(due + interval, _time.get_time() + LATE_BREATH_S)

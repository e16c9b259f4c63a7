"""Frames as often as they are useful: fewer when drawing is what keeps the UI busy.

The chat and compare screens draw new text on a frame clock (20 Hz). While streams are light a
frame is cheap and every tick draws. When four panes stream thousands of tokens a second, every
frame draws a screenful of new text in each pane, and at 20 Hz the UI spent more than all its
time drawing: replies fell behind without bound (issue 21: 2.4-2.9 s behind at 4 × 2,000 tok/s).
Text that arrives between two frames and scrolls out of view is never drawn
(``StreamingMarkdown``), so fewer frames mean less drawing, and the lag stays bounded instead.

The pacer reads the main thread's CPU time: when, since the last frame drawn, the UI thread was
busy more than ``BUSY`` of the time, the tick is skipped, up to ``MAX_WAIT_S`` since the last
frame. A reply's end is drawn at once by its own ``finish``, never paced.
"""

from __future__ import annotations

import time

# Skip a tick when the UI thread was busy more than this share of the time since the last
# frame, but never draw less often than MAX_WAIT_S. (0.85 and 0.15 s were tried: in the
# benchmark pair of the same minutes, final-token lag at 4 × 2,000 tok/s went from 184-191 ms
# to 557-1,787 ms, and render lag at 4 × 500 tok/s from 505 / 1,180 ms to 1,089 / 3,361 ms.)
BUSY = 0.6
MAX_WAIT_S = 0.25


class FramePacer:
    """Says, at each tick of a frame clock, whether to draw a frame."""

    def __init__(
        self,
        busy: float = BUSY,
        max_wait_s: float = MAX_WAIT_S,
        clock: object = None,
        cpu_clock: object = None,
    ) -> None:
        self.busy = busy
        self.max_wait_s = max_wait_s
        self._clock = clock if callable(clock) else time.monotonic
        self._cpu = cpu_clock if callable(cpu_clock) else time.thread_time
        self._last: tuple[float, float] | None = None  # (wall, cpu) at the last frame drawn
        self.drawn = 0
        self.skipped = 0

    def frame(self) -> bool:
        """True when this tick should draw (and counts it as drawn)."""
        now, cpu = self._clock(), self._cpu()
        last = self._last
        if last is not None:
            wall = now - last[0]
            if wall < self.max_wait_s and wall > 0 and (cpu - last[1]) / wall > self.busy:
                self.skipped += 1
                return False
        self._last = (now, cpu)
        self.drawn += 1
        return True

    def reset(self) -> None:
        """Streams start again: the next tick draws."""
        self._last = None

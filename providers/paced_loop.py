"""An event loop that, while streams pour in, wakes for the network once a ``window``.

At four streams of 2,000 events a second each event is a TCP segment of its own, and the
engine's loop woke for every one: an ``epoll_wait`` and a ``recv`` an event, with the Python
around them, and an ``epoll_wait`` more for each step of each task in between (issue 21: 110 µs
of the engine's CPU an event, 85 % of a core; the two system calls were 40 % of its samples).
Reading less often reads more a read.

So, once the loop has woken for I/O ``FAST_WAKES`` times in a row less than ``window`` apart
(streams are pouring in), it asks the kernel at most once a window: a poll between two
callbacks within the window of the last one finds nothing without a system call, and a select
that would block first sleeps out the rest of the window, so that what arrives meanwhile on
every socket is read in one wake. Nothing ready to run waits (the loop sleeps only when it has
nothing to run), and a loop that is not pouring (a stream's first bytes, a single slow stream)
selects as before. The cost is in the timestamps, and only while pouring: an event is then
stamped up to ``window`` after its bytes reached the socket (``PACE_WINDOW_S``, one
millisecond; the timestamp benchmarks read the error against the server's own clock).
"""

from __future__ import annotations

import asyncio
import selectors
import time
from typing import Any

PACE_WINDOW_S = 0.001
FAST_WAKES = 3


class PacedSelector(selectors.DefaultSelector):
    """The default selector, paced while I/O comes faster than once a window."""

    def __init__(self, window_s: float = PACE_WINDOW_S) -> None:
        super().__init__()
        self.window_s = window_s
        self._woke = -1.0  # monotonic time of the last select that returned events
        self._polled = -1.0  # ... of the last select that asked the kernel
        self._fast = 0  # wakes in a row less than a window apart
        self.wakes = 0  # selects that returned events
        self.paced = 0  # blocking selects that slept first
        self.skipped = 0  # polls answered without asking the kernel

    @property
    def pouring(self) -> bool:
        return self._fast >= FAST_WAKES

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        if self.window_s > 0 and self.pouring:
            now = time.monotonic()
            if timeout is not None and timeout <= 0:
                if now - self._polled < self.window_s:
                    self.skipped += 1
                    return []
            else:
                rest = self._woke + self.window_s - now
                if rest > 0:
                    rest = rest if timeout is None else min(rest, timeout)
                    time.sleep(rest)
                    self.paced += 1
                    if timeout is not None:
                        timeout = max(0.0, timeout - rest)
        ready = super().select(timeout)
        now = self._polled = time.monotonic()
        if ready:
            self._fast = self._fast + 1 if now - self._woke < self.window_s * 1.5 else 0
            self._woke = now
            self.wakes += 1
        return ready


def window_from_env(value: str | None) -> float:
    """``TOKENRACE_PACE_MS`` (milliseconds; 0 turns pacing off), or the default when unset or
    not a number from 0 to 20 (said on stderr, the engine's log)."""
    if value is None or not value.strip():
        return PACE_WINDOW_S
    try:
        ms = float(value)
    except ValueError:
        ms = -1.0
    if not 0 <= ms <= 20:
        import sys

        print(f"TOKENRACE_PACE_MS={value!r} is not 0-20 ms: using the default", file=sys.stderr)
        return PACE_WINDOW_S
    return ms / 1000


def new_event_loop(window_s: float = PACE_WINDOW_S) -> asyncio.AbstractEventLoop:
    """An asyncio loop on a ``PacedSelector``."""
    return asyncio.SelectorEventLoop(PacedSelector(window_s))

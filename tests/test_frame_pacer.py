"""The frame pacer: every tick draws while drawing is cheap, a dear frame now and then
included; ticks are skipped, up to a bound, only while the UI thread stays busy most of the
time."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

import pytest

from tui.frame_pacer import FAST_BUSY, FAST_LEAVE, FramePacer


def _run(shares: Iterable[float], tick_s: float = 0.05, fast: bool = False) -> FramePacer:
    """Tick the pacer once per interval, the UI thread busy ``share`` of each interval (of
    each drawn one; ``fast``: text on screen moves ``FAST_VIEWS_PER_S`` views a second)."""
    wall = [0.0]
    cpu = [0.0]
    pacer = FramePacer(busy=0.75, max_wait_s=0.25, clock=lambda: wall[0], cpu_clock=lambda: cpu[0])
    for share in shares:
        pacer.frame(fast)
        wall[0] += tick_s
        cpu[0] += tick_s * share
    return pacer


def test_light_work_draws_every_tick() -> None:
    pacer = _run([0.3] * 200)
    assert pacer.skipped == 0 and pacer.drawn == 200


def test_a_dear_frame_now_and_then_skips_no_tick() -> None:
    # Two panes at 200 tok/s: most intervals light, every fifth one a costly frame (a code
    # block closing, a young collection). Judged one interval at a time, each of these
    # skipped the next tick (the first pacer: render lag p95 1.44-1.52× worse).
    shares = [0.95 if i % 5 == 4 else 0.3 for i in range(200)]
    pacer = _run(shares)
    assert pacer.skipped == 0 and pacer.drawn == 200


def test_busy_ui_draws_less_often_but_at_least_four_times_a_second() -> None:
    pacer = _run([0.95] * 200)
    assert pacer.skipped > pacer.drawn  # fewer frames ...
    # ... but never more than the bound and one tick apart (0.25 + 0.05 s): 10 s of ticks
    # draw at least 33 frames.
    assert pacer.drawn >= int(200 * 0.05 / 0.30)


def test_fast_text_on_a_busy_ui_draws_every_other_tick() -> None:
    # 4 panes × 2,000 tok/s on a fast host: each pane's text moves 11 views a second, the UI
    # thread is 40 % busy drawing every tick and 25 % drawing every other one. Frames thin to
    # 10 a second, and stay so: under FAST_BUSY at half the frames, the pacer does not go back
    # to every tick (and up again) while the load stays above FAST_LEAVE of it.
    wall, cpu = [0.0], [0.0]
    pacer = FramePacer(clock=lambda: wall[0], cpu_clock=lambda: cpu[0])
    decisions = []
    loads = []
    for _ in range(200):
        drew = pacer.frame(fast=True)
        decisions.append(drew)
        loads.append(pacer.load)
        wall[0] += 0.05
        cpu[0] += 0.05 * (0.4 if drew else 0.1)
    late = decisions[40:]
    assert pacer.thinned
    assert sum(late) == len(late) // 2  # every other tick, from the second second on
    assert all(a != b for a, b in pairwise(late))
    assert min(loads[60:]) > FAST_BUSY * FAST_LEAVE and max(loads[60:]) < FAST_BUSY


def test_fast_text_on_a_light_ui_keeps_every_frame() -> None:
    # One pane at 2,000 tok/s: its text flies by, but drawing it keeps the UI 15 % busy.
    pacer = _run([0.15] * 200, fast=True)
    assert pacer.skipped == 0 and not pacer.thinned


def test_busy_ui_with_slow_text_keeps_every_frame_up_to_busy() -> None:
    # 4 panes × 500 tok/s on a slow host: busy, but the text moves under 3 views a second,
    # and render lag is what such a race is judged by.
    pacer = _run([0.6] * 200, fast=False)
    assert pacer.skipped == 0


def test_thinned_frames_come_back_when_the_ui_is_light_again() -> None:
    pacer = _run([0.7] * 60 + [0.1] * 60, fast=True)
    assert not pacer.thinned
    wall, cpu = [0.0], [0.0]
    pacer = FramePacer(clock=lambda: wall[0], cpu_clock=lambda: cpu[0])
    drawn = []
    for i in range(120):
        drawn.append(pacer.frame(fast=i < 60))  # the fast reply ends: others stream slowly
        wall[0] += 0.05
        cpu[0] += 0.05 * 0.5
    assert not all(drawn[20:60]) and all(drawn[61:])


def test_drawing_resumes_at_once_after_a_pause() -> None:
    wall, cpu = [0.0], [0.0]
    pacer = FramePacer(clock=lambda: wall[0], cpu_clock=lambda: cpu[0])
    for _ in range(40):  # saturated: the average is near 1
        pacer.frame()
        wall[0] += 0.05
        cpu[0] += 0.05
    assert pacer.load > 0.9
    wall[0] += 2.0  # the streams ended; the frame clock was paused; a new reply starts
    assert pacer.frame()
    wall[0] += 0.05
    cpu[0] += 0.01
    assert pacer.frame()


class _FakeTime:
    """A clock that moves only when slept on or worked on (``advance``)."""

    def __init__(self) -> None:
        self.now = 0.0

    def get_time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        import asyncio

        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


async def _tick_times(clock_class: type, durations: list[float]) -> list[float]:
    """When a timer of ``clock_class`` (50-ms interval) ticks, each tick taking the time in
    ``durations``, on a clock that moves only when slept or worked on. No app runs: its own
    timers would move that clock too."""
    import asyncio
    from types import SimpleNamespace

    from textual import timer as textual_timer
    from textual._context import active_app

    from tui import frame_pacer

    def fail(error: Exception) -> None:
        raise error

    class Target:
        pass

    fake = _FakeTime()
    ticks: list[float] = []
    done = asyncio.Event()

    def tick() -> None:
        if done.is_set():
            return  # (a tick may come before the timer is stopped)
        ticks.append(fake.now)
        fake.now += durations[len(ticks) - 1]
        if len(ticks) == len(durations):
            done.set()

    target = Target()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frame_pacer, "_time", fake)  # FrameClock's clock
        patch.setattr(textual_timer, "_time", fake)  # Textual's
        patch.setattr(textual_timer, "sleep", fake.sleep)
        token = active_app.set(SimpleNamespace(_exit=False, _handle_exception=fail, features=()))  # type: ignore[arg-type]
        try:
            clock = clock_class(target, 0.05, callback=tick)
            clock._start()
            await asyncio.wait_for(done.wait(), 10)
            clock.stop()
        finally:
            active_app.reset(token)
    return ticks


async def test_a_late_frame_is_followed_by_the_next_at_once_not_a_tick_later() -> None:
    """A frame that ends past the next tick's time: Textual's timer then waits for the tick
    after next (the second frame of 70 ms, ending at 170 ms, is followed by one at 250 ms:
    80 ms idle, the long gaps of render lag at 4 × 500 tok/s). The frame clock draws the next
    frame a breath after the late one ends, and keeps the interval from there."""
    from textual.timer import Timer

    from tui.frame_pacer import LATE_BREATH_S, FrameClock

    durations = [0.01, 0.07, 0.01, 0.01, 0.01]
    theirs = await _tick_times(Timer, durations)
    ours = await _tick_times(FrameClock, durations)
    assert theirs[:3] == pytest.approx([0.05, 0.10, 0.25])  # (what the fix is measured against)
    after_late = 0.10 + 0.07 + LATE_BREATH_S
    assert ours == pytest.approx([0.05, 0.10, after_late, after_late + 0.05, after_late + 0.10])

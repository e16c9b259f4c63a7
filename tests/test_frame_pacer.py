"""The frame pacer: every tick draws while drawing is cheap; ticks are skipped, up to a
bound, while the UI thread is busy most of the time."""

from __future__ import annotations

from tui.frame_pacer import FramePacer


def _run(busy_share: float, ticks: int = 200, tick_s: float = 0.05) -> FramePacer:
    wall = [0.0]
    cpu = [0.0]
    pacer = FramePacer(busy=0.6, max_wait_s=0.25, clock=lambda: wall[0], cpu_clock=lambda: cpu[0])
    for _ in range(ticks):
        pacer.frame()
        wall[0] += tick_s
        cpu[0] += tick_s * busy_share
    return pacer


def test_light_work_draws_every_tick() -> None:
    pacer = _run(0.3)
    assert pacer.skipped == 0 and pacer.drawn == 200


def test_busy_ui_draws_less_often_but_at_least_four_times_a_second() -> None:
    pacer = _run(0.9)
    assert pacer.skipped > pacer.drawn  # fewer frames ...
    # ... but never more than the bound and one tick apart (0.25 + 0.05 s): 10 s of ticks
    # draw at least 33 frames.
    assert pacer.drawn >= int(200 * 0.05 / 0.30)


def test_reset_draws_the_next_tick() -> None:
    wall, cpu = [0.0], [0.0]
    pacer = FramePacer(clock=lambda: wall[0], cpu_clock=lambda: cpu[0])
    assert pacer.frame()
    wall[0] += 0.05
    cpu[0] += 0.05  # fully busy
    assert not pacer.frame()
    pacer.reset()
    assert pacer.frame()

"""The frame pacer: every tick draws while drawing is cheap, a dear frame now and then
included; ticks are skipped, up to a bound, only while the UI thread stays busy most of the
time."""

from __future__ import annotations

from collections.abc import Iterable

from tui.frame_pacer import FramePacer


def _run(shares: Iterable[float], tick_s: float = 0.05) -> FramePacer:
    """Tick the pacer once per interval, the UI thread busy ``share`` of each interval."""
    wall = [0.0]
    cpu = [0.0]
    pacer = FramePacer(busy=0.75, max_wait_s=0.25, clock=lambda: wall[0], cpu_clock=lambda: cpu[0])
    for share in shares:
        pacer.frame()
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

"""Cold start: process start to first painted frame, against a minimal Textual app.

Both run in the same real terminal (tmux, same size); the first frame counts when its text is
on screen (tokenrace: the prompt's placeholder; the baseline: its label).

The screen is read through one tmux control client every ``POLL_S``. Read flat out with a
``tmux capture-pane`` process each time, the poller took a core of this 2-core machine's two
away from what it measured (the minimal app's first frame: 737 ms that way, 534 ms through a
control client, same session); read flat out through the client, it kept tmux's server busy
instead. Both start-ups were slowed, and tokenrace's more, which starts two processes.
"""

from __future__ import annotations

import sys

from bench.common import Row, Tmux, app_env, median, temp_home
from tests.support.mock_server import MockServerProcess

POLL_S = 0.005  # the screen is read this often (a figure is up to this late)


def first_frame_ms(command: str, marker: str, env: dict[str, str]) -> float:
    tmux = Tmux(command, env, width=120, height=40, control=True)
    try:
        seen, _ = tmux.wait_for(marker, 30, POLL_S)
        return (seen - tmux.started_ns) / 1e6
    finally:
        tmux.keys("C-q")
        tmux.close()


def run(quick: bool = False) -> list[Row]:
    runs = 1 if quick else 5
    with MockServerProcess() as server:
        home = temp_home(server.base_url)
        env = app_env(home)
        ours, base = [], []
        for _ in range(runs):
            base.append(
                first_frame_ms(f"{sys.executable} bench/minimal_app.py", "minimal-app-ready", env)
            )
            ours.append(
                first_frame_ms(f"{sys.executable} -m tui.cli -m mock/mock-fast", "Message…", env)
            )
    m_ours, m_base = median(ours), median(base)
    assert m_ours is not None and m_base is not None
    ratio = m_ours / m_base
    return [
        Row(
            "Cold start to first frame",
            "≤ 1.5× minimal app",
            f"{m_ours:.0f} ms vs {m_base:.0f} ms = {ratio:.2f}×",
            ratio <= 1.5,
            {"tokenrace_ms": ours, "minimal_ms": base},
        )
    ]

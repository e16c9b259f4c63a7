"""Cold start: process start to first painted frame, against a minimal Textual app.

Both run in the same real terminal (tmux, same size); the first frame counts when its text is
on screen (tokenrace: the prompt's placeholder; the baseline: its label).
"""

from __future__ import annotations

import sys

from bench.common import Row, Tmux, app_env, median, temp_home
from tests.support.mock_server import MockServerProcess


def first_frame_ms(command: str, marker: str, env: dict[str, str]) -> float:
    tmux = Tmux(command, env, width=120, height=40)
    try:
        seen, _ = tmux.wait_for(marker, 30)
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

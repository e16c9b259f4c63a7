"""Headless `ask`: wall time of a whole `tokenrace ask` for a 10-token reply, minus the reply.

The scenario sends its 10 tokens at once (no TTFT, no spacing), so everything measured is
tokenrace: interpreter start, imports, config, the request and the output.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.common import REPO, Row, app_env, median, temp_home
from tests.support.mock_server import MockServerProcess


def run(quick: bool = False) -> list[Row]:
    runs = 2 if quick else 10
    walls = []
    with MockServerProcess() as server:
        home = temp_home(server.base_url)
        env = app_env(home)
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "tui.cli", "ask", "-m", "mock/mock-instant", "hi"],
                capture_output=True,
                cwd=REPO,
                env=env,
                check=True,
                timeout=60,
            )
            walls.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare = (time.perf_counter() - t) * 1000
    med = median(walls)
    assert med is not None
    return [
        Row(
            "Headless ask, 10-token reply",
            "≤ 300 ms",
            f"median {med:.0f} ms (bare python {bare:.0f} ms)",
            med <= 300,
            {"wall_ms": walls, "bare_python_ms": bare},
        )
    ]

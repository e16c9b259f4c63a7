"""CPU of the app and engine processes: two panes at 100 tok/s each, and idle on a long
conversation. Measured from the processes' own CPU times (psutil) over a fixed window."""

from __future__ import annotations

import sys
import time

from bench.common import Row, Tmux, app_env, app_processes, cpu_seconds, temp_home
from bench.long_conversation import make_long_conversation
from tests.support.mock_server import MockServerProcess


def streaming_cpu(server: MockServerProcess, seconds: float) -> float:
    n = int(100 * (seconds + 4))
    for name in ("cpu-a", "cpu-b"):
        server.add_scenario(name, {"n_tokens": n, "ttft_ms": 20, "tps": 100})
    home = temp_home(server.base_url)
    tmux = Tmux(f"{sys.executable} -m tui.cli -m mock/cpu-a -m mock/cpu-b", app_env(home), 160, 45)
    try:
        tmux.wait_for("Message…", 30)
        procs = app_processes(tmux.pane_pid())
        time.sleep(1.0)
        tmux.keys("go", "Enter")
        time.sleep(2.0)  # past the first second of layout work
        c0, t0 = cpu_seconds(procs), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_seconds(procs), time.monotonic()
        return 100 * (c1 - c0) / (t1 - t0)
    finally:
        tmux.keys("Escape")
        tmux.keys("C-q")
        time.sleep(0.3)
        tmux.close()


def idle_cpu(server: MockServerProcess, seconds: float, settle_s: float = 8.0) -> float:
    home = temp_home(server.base_url)
    make_long_conversation(home, messages=500, tokens=200_000)
    tmux = Tmux(f"{sys.executable} -m tui.cli --resume", app_env(home), 160, 45)
    try:
        tmux.wait_for("Message…", 30)
        procs = app_processes(tmux.pane_pid())
        time.sleep(settle_s)  # start-up, engine start and model discovery are over
        c0, t0 = cpu_seconds(procs), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_seconds(procs), time.monotonic()
        return 100 * (c1 - c0) / (t1 - t0)
    finally:
        tmux.keys("C-q")
        time.sleep(0.3)
        tmux.close()


def run(quick: bool = False) -> list[Row]:
    seconds = 2.0 if quick else 10.0
    with MockServerProcess() as server:
        streaming = streaming_cpu(server, seconds)
        idle = idle_cpu(server, seconds, settle_s=2.0 if quick else 8.0)
    return [
        Row(
            "CPU, 2 panes × 100 tok/s (app + engine)",
            "≤ 30% of one core",
            f"{streaming:.1f}%",
            streaming <= 30,
            {"percent": streaming},
        ),
        Row(
            "CPU, idle on a 500-message conversation",
            "≤ 1% of one core",
            f"{idle:.2f}%",
            idle <= 1,
            {"percent": idle},
        ),
    ]

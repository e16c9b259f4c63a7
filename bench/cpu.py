"""CPU of the app and engine processes: two panes at 100 tok/s each (mixed markdown, and
prose), and idle on a long conversation. Measured from the processes' own CPU times (psutil):
the median of three consecutive 5-second windows of one streaming run, all three reported."""

from __future__ import annotations

import statistics
import sys
import time
import uuid

from bench.common import Row, Tmux, app_env, app_processes, cpu_seconds, temp_home
from bench.long_conversation import make_long_conversation
from tests.support.mock_server import MockServerProcess, builtin_scenarios

# The render-lag benchmark's kind of text: headings, prose, lists, code fences, tables.
MARKDOWN_TOKENS: list[str] = list(builtin_scenarios()["mock-markdown"]["tokens"])


def streaming_cpu(
    server: MockServerProcess,
    content: str,
    windows: int,
    window_s: float,
    settle_s: float,
    *,
    panes: int = 2,
    rate: float = 100,
    per_chunk: int = 1,
    size: tuple[int, int] = (160, 45),
) -> list[float]:
    """CPU of the app and engine processes, in % of one core, over ``windows`` consecutive
    windows while ``panes`` panes stream ``content`` ("markdown" or "prose") at ``rate`` tok/s
    each, ``per_chunk`` tokens an event.

    The mock server paces without its spin-wait (``"spin": false``): that spin is the test
    harness's, costs a fifth of a core at these rates, and competes for the two cores with
    the processes measured. Its sends are then about 0.1-0.2 ms late, which is no matter here.
    """
    tag = uuid.uuid4().hex[:6]
    n = int(rate * (settle_s + windows * window_s + 6))
    sides = "abcd"[:panes]
    for side in sides:
        spec: dict[str, object] = {
            "ttft_ms": 20,
            "tps": rate,
            "spin": False,
            "tokens_per_chunk": per_chunk,
        }
        if content == "markdown":
            spec["tokens"] = (MARKDOWN_TOKENS * (1 + n // len(MARKDOWN_TOKENS)))[:n]
        else:
            spec["n_tokens"] = n
        server.add_scenario(f"cpu-{tag}-{side}", spec)
    home = temp_home(server.base_url)
    models = " ".join(f"-m mock/cpu-{tag}-{side}" for side in sides)
    tmux = Tmux(f"{sys.executable} -m tui.cli {models}", app_env(home), *size)
    try:
        tmux.wait_for("Message…", 30)
        procs = app_processes(tmux.pane_pid())
        time.sleep(min(1.0, settle_s))
        tmux.keys("go", "Enter")
        time.sleep(settle_s)  # past the first second of layout work
        readings = []
        c0, t0 = cpu_seconds(procs), time.monotonic()
        for _ in range(windows):
            time.sleep(window_s)
            c1, t1 = cpu_seconds(procs), time.monotonic()
            readings.append(100 * (c1 - c0) / (t1 - t0))
            c0, t0 = c1, t1
        return readings
    finally:
        tmux.keys("Escape")
        tmux.keys("C-q")
        time.sleep(0.3)
        tmux.close()


def idle_cpu(
    server: MockServerProcess, seconds: float, settle_s: float = 8.0, messages: int = 500
) -> float:
    home = temp_home(server.base_url)
    make_long_conversation(home, messages=messages, tokens=messages * 400)
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
    windows, window_s, settle_s = (1, 0.5, 0.3) if quick else (3, 5.0, 2.0)
    rows = []
    with MockServerProcess() as server:
        for content, label in (("markdown", "mixed markdown"), ("prose", "prose")):
            readings = streaming_cpu(server, content, windows, window_s, settle_s)
            mid = statistics.median(readings)
            rows.append(
                Row(
                    f"CPU, 2 panes × 100 tok/s of {label} (app + engine)",
                    "≤ 30% of one core",
                    f"{mid:.1f}% (windows {', '.join(f'{r:.1f}' for r in readings)})",
                    mid <= 30,
                    {"percent": mid, "windows": readings, "window_s": window_s},
                )
            )
        idle_s, idle_settle_s, messages = (0.5, 0.3, 40) if quick else (10.0, 8.0, 500)
        idle = idle_cpu(server, idle_s, settle_s=idle_settle_s, messages=messages)
    rows.append(
        Row(
            f"CPU, idle on a {messages}-message conversation",
            "≤ 1% of one core",
            f"{idle:.2f}%",
            idle <= 1,
            {"percent": idle},
        )
    )
    return rows

"""Shared pieces of the benchmarks: result rows, percentiles, a tmux terminal, temp homes."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

now_ns = time.perf_counter_ns


@dataclass
class Row:
    """One line of the benchmark table."""

    name: str
    target: str
    measured: str
    passed: bool | None  # None: informational, no target
    details: dict[str, Any] = field(default_factory=dict)


def pct(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile by linear interpolation."""
    s = sorted(values)
    if not s:
        return None
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(values: Iterable[float]) -> float | None:
    v = list(values)
    return statistics.median(v) if v else None


def fmt_ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f} ms"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        import psutil

        freq = psutil.cpu_freq()
        mem = psutil.virtual_memory().total
    except Exception:
        freq, mem = None, None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_mhz": round(freq.current) if freq else None,
        "memory_gb": round(mem / 1e9, 1) if mem else None,
        "processor": platform.processor() or platform.machine(),
    }


def print_table(rows: list[Row]) -> None:
    w = [max(len(r.name) for r in [*rows, Row("benchmark", "", "", None)]), 0, 0]
    w[1] = max(len(r.target) for r in [*rows, Row("", "target", "", None)])
    w[2] = max(len(r.measured) for r in [*rows, Row("", "", "measured", None)])
    head = f"{'benchmark':<{w[0]}}  {'target':<{w[1]}}  {'measured':<{w[2]}}  result"
    print(head)
    print("-" * len(head))
    for r in rows:
        verdict = "—" if r.passed is None else ("PASS" if r.passed else "FAIL")
        print(f"{r.name:<{w[0]}}  {r.target:<{w[1]}}  {r.measured:<{w[2]}}  {verdict}")


def cpu_speed_ms(loops: int = 2_000_000, repeats: int = 3) -> float:
    """A fixed pure-Python loop, best of ``repeats``: how fast this machine is right now.

    Shared hosts change speed by minutes (here: 330 ms one hour, 650 ms the next for the
    same 5M-iteration loop). Absolute rows (render lag in ms, CPU in % of a core) move with
    it, so every run records it next to them.
    """
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        s = 0
        for i in range(loops):
            s += i * i
        best = min(best, time.perf_counter() - t)
    return round(best * 1000, 1)


def write_json(name: str, rows: list[Row], extra: dict[str, Any] | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {
        "machine": machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "rows": [asdict(r) for r in rows],
        **(extra or {}),
    }
    path.write_text(json.dumps(doc, indent=2))
    return path


def temp_home(base_url: str, extra_toml: str = "") -> Path:
    """A TOKENRACE_HOME with an endpoint ``mock`` at the mock server."""
    home = Path(tempfile.mkdtemp(prefix="tokenrace-bench-"))
    (home / "config.toml").write_text(f'[endpoints.mock]\nbase_url = "{base_url}"\n{extra_toml}')
    return home


def app_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "TOKENRACE_HOME": str(home),
            "TERM": "xterm-256color",
            "PYTHONPATH": str(REPO),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        }
    )
    return env


class Tmux:
    """A detached tmux session of a fixed size running one command (the benchmarks' terminal,
    and the tests': tests/test_tmux.py). Of ``env``, the ``TOKENRACE*``, ``PYTHON*``,
    ``TERM*`` and ``NO_COLOR`` variables reach the command."""

    def __init__(
        self, command: str, env: dict[str, str], width: int = 120, height: int = 40
    ) -> None:
        self.name = f"bench-{uuid.uuid4().hex[:8]}"
        # A server of its own: a new session on the shared server can catch it exiting after
        # the previous run's last session closed ("server exited unexpectedly").
        self.tmux = ["tmux", "-L", self.name]
        self.env = env
        subprocess.run(
            [
                *self.tmux,
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                str(width),
                "-y",
                str(height),
                "-e",
                f"TERM={env.get('TERM', 'xterm-256color')}",
            ],
            check=True,
        )
        exports = " ".join(
            f"{k}={_quote(v)}"
            for k, v in env.items()
            if k.startswith(("TOKENRACE", "PYTHON", "TERM", "NO_COLOR"))
        )
        self.started_ns = now_ns()
        self.keys(f"cd {REPO} && env {exports} {command}", "Enter")

    def keys(self, *keys: str, literal: bool = False) -> None:
        args = [*self.tmux, "send-keys", "-t", self.name, *(["-l"] if literal else []), *keys]
        subprocess.run(args, check=True)

    def screen(self) -> str:
        return subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def wait_for(self, pattern: str, timeout: float, poll_s: float = 0.0) -> tuple[int, str]:
        """Poll until ``pattern`` is on screen; (perf_counter_ns when seen, screen)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            t = now_ns()
            if rx.search(text):
                return t, text
            if poll_s:
                time.sleep(poll_s)
        raise TimeoutError(f"{pattern!r} not on screen after {timeout} s:\n{self.screen()}")

    def pane_pid(self) -> int:
        out = subprocess.run(
            [*self.tmux, "list-panes", "-t", self.name, "-F", "#{pane_pid}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return int(out.split()[0])

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], check=False, capture_output=True)


def _quote(v: str) -> str:
    import shlex

    return shlex.quote(v)


def app_processes(shell_pid: int, timeout: float = 10.0) -> list[Any]:
    """The tokenrace app and engine processes under a tmux shell."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            procs = [
                p
                for p in psutil.Process(shell_pid).children(recursive=True)
                if "tui.cli" in " ".join(p.cmdline()) or "providers.worker" in " ".join(p.cmdline())
            ]
        except psutil.Error:
            procs = []
        if len(procs) >= 2:
            return procs
        time.sleep(0.05)
    return []


def cpu_seconds(procs: list[Any]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:
            pass
    return total


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000, out

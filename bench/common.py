"""Shared pieces of the benchmarks: result rows, percentiles, a tmux terminal, temp homes."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

now_ns = time.perf_counter_ns
REPLY_TIMEOUT_S = 30.0  # a tmux control client's answer to one command


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


# The packages whose bytecode an installed copy of the app has (pip compiles them on install).
PACKAGES = ("tui", "providers", "themes")


def as_installed(tree: Path = REPO) -> None:
    """Run the app as an installed copy runs: from bytecode. With PYTHONDONTWRITEBYTECODE set
    (as on this machine's shell) every start compiled tokenrace's ~150 modules from source while
    Textual's came from its installed bytecode: 60-100 ms of each cold start, and growing with
    every module added, measured against a baseline that never paid it."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *(str(tree / p) for p in PACKAGES)],
        check=False,
        env=os.environ,
    )


def app_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the app starts from bytecode (as_installed)
    env.update(
        {
            "TOKENRACE_HOME": str(home),
            "TERM": "xterm-256color",
            "PYTHONPATH": str(REPO),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        }
    )
    return env


class TmuxError(RuntimeError):
    """A tmux command failed, or its control client went away."""


class Tmux:
    """A detached tmux session of a fixed size on a private server, running one command: the
    terminal of the benchmarks (bench/rival.py among them) and of the tests (tests/test_tmux.py).

    By default the pane runs a shell that is typed the command, with the ``TOKENRACE*``,
    ``PYTHON*``, ``TERM*`` and ``NO_COLOR`` variables of ``env`` (the user's shell and tmux
    configuration apply, as for a person). With ``exact_env`` the command is the pane's process,
    started with exactly ``env`` (nothing inherited) in ``cwd``, under a config of its own (no
    status line, the pane kept when the command exits: ``dead()``). With ``control`` the screen
    is read through one tmux control-mode client: a command line over a pipe (~0.1 ms) instead
    of a fork+exec of tmux per capture (~2 ms).
    """

    def __init__(
        self,
        command: str | Sequence[str],
        env: Mapping[str, str],
        width: int = 120,
        height: int = 40,
        *,
        exact_env: bool = False,
        cwd: Path = REPO,
        control: bool = False,
    ) -> None:
        self.name = f"bench-{uuid.uuid4().hex[:8]}"
        # A server of its own: a new session on the shared server can catch it exiting after
        # the previous run's last session closed ("server exited unexpectedly").
        self.tmux = ["tmux", "-u", "-L", self.name] if exact_env else ["tmux", "-L", self.name]
        self.env = env
        self.width, self.height = width, height
        self.server_pid: int | None = None
        self._control: subprocess.Popen[bytes] | None = None
        self._pending = b""  # what the control client sent past the last line read
        self._open = True
        # Only a pane of its own command is reaped by close(): in a shell pane, what outlives
        # the server (a local model server, say) is what tests look for.
        self._reap = exact_env
        try:
            if exact_env:
                shell = ["sh", "-c", command] if isinstance(command, str) else list(command)
                options = [
                    *("-f", "/dev/null", "start-server", ";"),
                    *("set", "-g", "status", "off", ";"),
                    *("set", "-g", "remain-on-exit", "on", ";"),
                    *("set", "-g", "history-limit", "2000", ";"),
                ]
                self._run(
                    *options, "new-session", "-d", "-s", self.name, "-x", str(width),
                    "-y", str(height), "-c", str(cwd), "--",
                    "env", "-i", *(f"{k}={v}" for k, v in env.items()), *shell,
                )  # fmt: skip
                self.started_ns = now_ns()
            else:
                term = f"TERM={env.get('TERM', 'xterm-256color')}"
                self._run(
                    "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                    "-e", term,
                )  # fmt: skip
                exports = " ".join(
                    f"{k}={_quote(v)}"
                    for k, v in env.items()
                    if k.startswith(("TOKENRACE", "PYTHON", "TERM", "NO_COLOR"))
                )
                line = command if isinstance(command, str) else " ".join(map(_quote, command))
                self.started_ns = now_ns()
                self.keys(f"cd {_quote(str(cwd))} && env {exports} {line}", "Enter")
            if control:
                self._attach_control()
        except BaseException:
            self.close()
            raise

    def _run(self, *args: str) -> str:
        """Run one tmux command line on this server; its stdout."""
        proc = subprocess.run([*self.tmux, *args], capture_output=True, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise TmuxError(f"tmux {' '.join(args[:1])} failed: {err}")
        return proc.stdout.decode("utf-8", errors="replace")

    def _attach_control(self) -> None:
        # The control client does not size the window, and is told not to receive the pane's
        # output.
        # Told at attach, not by a command after it: a ``refresh-client -f no-output`` sent
        # while the app drew its first frames once went unanswered for ten minutes.
        self._control = subprocess.Popen(
            [*self.tmux, "-C", "attach-session", "-f", "no-output,ignore-size", "-t", self.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._reply()  # the attach command's own (empty) block
        info = self.command(
            f"display-message -p -t {self.name} '#{{pid}} #{{pane_width}}x#{{pane_height}}'"
        )
        server_pid, size = info.split()
        self.server_pid = int(server_pid)
        if size != f"{self.width}x{self.height}":
            raise TmuxError(f"pane is {size}, wanted {self.width}x{self.height}")

    def _reply(self) -> tuple[str, bool]:
        """The control client's next %begin…%end/%error block: (text, ok)."""
        assert self._control is not None and self._control.stdout is not None
        lines: list[bytes] = []
        opened: bytes | None = None
        while True:
            line = self._line()
            if opened is None:
                # Notifications (%session-changed, %exit, ...) sit between blocks.
                if line.startswith(b"%begin "):
                    opened = line.split(b" ", 1)[1].rsplit(b" ", 1)[0]
                continue
            for tag in (b"%end ", b"%error "):
                if line.startswith(tag) and line[len(tag) :].rsplit(b" ", 1)[0] == opened:
                    text = b"".join(lines).decode("utf-8", errors="replace")
                    return text, tag == b"%end "
            lines.append(line)

    def _line(self, timeout: float = REPLY_TIMEOUT_S) -> bytes:
        """The control client's next line; TmuxError when none comes within ``timeout``
        (a benchmark fails then, rather than waiting for ever)."""
        assert self._control is not None and self._control.stdout is not None
        fd = self._control.stdout.fileno()
        deadline = time.monotonic() + timeout
        while (end := self._pending.find(b"\n")) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TmuxError(f"the tmux control client said nothing for {timeout} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise TmuxError("the tmux control client went away")
            self._pending += chunk
        line, self._pending = self._pending[: end + 1], self._pending[end + 1 :]
        return line

    def command(self, line: str) -> str:
        """Run one tmux command (through the control client when there is one); its output."""
        if self._control is None or self._control.stdin is None:
            import shlex

            return self._run(*shlex.split(line))
        self._control.stdin.write(line.encode() + b"\n")
        self._control.stdin.flush()
        text, ok = self._reply()
        if not ok:
            raise TmuxError(f"tmux {line!r} failed: {text.strip()}")
        return text

    def keys(self, *keys: str, literal: bool = False) -> None:
        """Send keys (tmux key names, or text typed as is with ``literal``)."""
        self._run("send-keys", "-t", self.name, *(["-l"] if literal else []), *keys)

    def screen(self) -> str:
        """The visible screen as text."""
        return self.command(f"capture-pane -p -t {self.name}")

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
        """The pid of the pane's process (the shell, or the command with ``exact_env``)."""
        return int(self.command(f"display-message -p -t {self.name} '#{{pane_pid}}'").split()[0])

    def dead(self) -> bool:
        """Whether the command in the pane has exited (``exact_env`` keeps the pane)."""
        return self.command(f"display-message -p -t {self.name} '#{{pane_dead}}'").strip() == "1"

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) used so far by the pane's process tree."""
        import psutil

        try:
            root = psutil.Process(self.pane_pid())
            procs = [root, *root.children(recursive=True)]
        except (psutil.Error, TmuxError):
            return None
        total = 0.0
        for proc in procs:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def bench_cpu_seconds(self, extra_pids: Sequence[int]) -> float:
        """CPU time of the measuring side: tmux, the client, this process (and reaped children)."""
        import psutil

        own = psutil.Process().cpu_times()
        total: float = own.user + own.system + own.children_user + own.children_system
        pids = [self.server_pid, *extra_pids]
        if self._control is not None:
            pids.append(self._control.pid)
        for pid in pids:
            if pid is None:
                continue
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total + (self.cpu_seconds() or 0.0)

    def close(self) -> None:
        """Kill the tmux server and every process the pane started; idempotent."""
        if not self._open:
            return
        self._open = False
        import psutil

        procs: list[psutil.Process] = []
        if self._reap:
            try:
                root = psutil.Process(self.pane_pid())
                procs = [root, *root.children(recursive=True)]
            except (psutil.Error, TmuxError, ValueError, IndexError):
                procs = []
        subprocess.run([*self.tmux, "kill-server"], check=False, capture_output=True)
        if self._control is not None:
            for pipe in (self._control.stdin, self._control.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            try:
                self._control.wait(3)
            except subprocess.TimeoutExpired:
                self._control.kill()
                self._control.wait()
            self._control = None
        _, alive = psutil.wait_procs(procs, timeout=3)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=3)


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

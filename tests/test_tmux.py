"""The real app in a real terminal (tmux), read the way a person reads it.

A 3,000-token markdown reply with code fences at 200 tok/s must render to its last line, and
the figures under it must equal what `tokenrace ask --json` reports for the same scenario
(within 3 ms and 2%): the UI adds nothing to the numbers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.cli import REPO, run_cli
from tests.support.mock_server import MockServerProcess

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

METRICS = re.compile(r"✓ complete · TTFT ([\d.]+) (ms|s) · ([\d.,]+) tok/s · ([\d,]+) tok")


class Tmux:
    """One detached tmux session running a command."""

    def __init__(
        self, command: str, env: dict[str, str], width: int = 120, height: int = 40
    ) -> None:
        self.name = f"tr-{uuid.uuid4().hex[:8]}"
        # A server of its own: on the shared one, a new session can catch the server exiting
        # after the previous test's last session closed ("server exited unexpectedly").
        self.tmux = ["tmux", "-L", self.name]
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height)],
            check=True,
        )
        self.keys(f"cd {REPO} && env {exports} {command}", "Enter")

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def screen(self) -> str:
        return subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def wait_for(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if re.search(pattern, text):
                return text
            time.sleep(0.25)
        raise AssertionError(f"{pattern!r} never appeared; screen:\n{self.screen()}")

    def pane_pid(self) -> int:
        """The pid of the pane's shell (the command's parent)."""
        out = subprocess.run(
            [*self.tmux, "list-panes", "-t", self.name, "-F", "#{pane_pid}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return int(out.split()[0])

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], check=False, capture_output=True)


def _ms(value: str, unit: str) -> float:
    return float(value) * (1000 if unit == "s" else 1)


def test_long_markdown_reply_in_a_real_terminal(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\n'
    )
    env = {
        "TOKENRACE_HOME": str(isolated_home),
        "TERM": "xterm-256color",
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO)),
        "PYTHON_KEYRING_BACKEND": "tests.support.fake_keyring.FileKeyring",
        "TOKENRACE_FAKE_KEYRING": str(isolated_home / "keyring.json"),
    }
    tmux = Tmux(f"{sys.executable} -m tui.cli -m mock/mock-markdown", env)
    try:
        tmux.wait_for("Message…", 20)
        tmux.keys("Write a long answer with code", "Enter")
        screen = tmux.wait_for(r"✓ complete", 60)
        time.sleep(0.5)
        screen = tmux.screen()
        # The end of the reply is on screen: the last code fence and the closing quote.
        assert 'println!("{:?}", v);' in screen
        assert "A quoted remark, then more prose follows." in screen
        m = METRICS.search(screen)
        assert m, screen
        tui_ttft = _ms(m.group(1), m.group(2))
        tui_rate = float(m.group(3).replace(",", ""))
        tui_tokens = int(m.group(4).replace(",", ""))
    finally:
        tmux.keys("C-q")
        time.sleep(0.5)
        tmux.close()
    r = run_cli(
        "ask", "-m", "mock/mock-markdown", "--json", "Write a long answer with code", timeout=90
    )
    assert r.returncode == 0, r.stderr
    ask = json.loads(r.stdout)[0]["metrics"]
    # Each TTFT against the server's own clock for that request (the two requests' real TTFTs
    # differ by a few ms on a loaded machine, so they are not compared with each other).
    tui_req, ask_req = [
        rec
        for rec in mock_server.log()
        if rec["path"].endswith("/chat/completions") and rec["model"] == "mock-markdown"
    ]
    from tests.test_timing import server_figures

    assert abs(tui_ttft - server_figures(tui_req)[0]) <= 3.0, (tui_ttft, server_figures(tui_req))
    assert abs(ask["ttft_ms"] - server_figures(ask_req)[0]) <= 3.0
    assert tui_rate == pytest.approx(ask["decode_tps"], rel=0.02)
    assert tui_tokens == ask["output_tokens"] >= 3000

"""Issue 15.1 end to end: the real app in tmux with ``set-clipboard on`` and titles allowed.

A hostile server's reply, reasoning, error and model ids (via discovery and F2), then the same
conversation reopened with ``--resume``: tmux must end with no paste buffer and the pane and
window titles unchanged. The test first shows that this very tmux does obey the payload when a
shell prints it, so a pass means tokenrace stopped it, not that tmux ignored it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.common import Tmux
from tests.support.cli import REPO
from tests.support.hostile_server import PAYLOADS, HostileServer, error_answer

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

POLL_S = 0.25


def _tmux(t: Tmux, *args: str) -> str:
    return subprocess.run(
        [*t.tmux, *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _titles(t: Tmux) -> str:
    return _tmux(t, "display-message", "-p", "-t", t.name, "#{pane_title}|#{window_name}")


def _harden(t: Tmux) -> None:
    """Make tmux obey everything a program can ask of it."""
    _tmux(t, "set-option", "-g", "set-clipboard", "on")
    _tmux(t, "set-option", "-g", "allow-rename", "on")
    _tmux(t, "set-window-option", "-g", "automatic-rename", "off")


def test_hostile_server_cannot_reach_tmux(isolated_home: Path) -> None:
    env = {
        "TOKENRACE_HOME": str(isolated_home),
        "TERM": "xterm-256color",
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO)),
        "PYTHON_KEYRING_BACKEND": "tests.support.fake_keyring.FileKeyring",
        "TOKENRACE_FAKE_KEYRING": str(isolated_home / "keyring.json"),
    }
    with HostileServer() as srv:
        (isolated_home / "config.toml").write_text(
            f'[endpoints.hostile]\nbase_url = "{srv.base_url}"\n'
        )
        # The control: a shell printing the payload does write the clipboard and the title.
        probe = Tmux("sleep 0.1", env, width=100, height=20)
        try:
            _harden(probe)
            probe.keys(
                "printf '" + "\\033]52;c;SE9TVElMRS1DTElQQk9BUkQ=\\007\\033]2;HOSTILE-TITLE\\007'",
                "Enter",
            )
            deadline = time.monotonic() + 10
            while "HOSTILE" not in _titles(probe) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "HOSTILE-TITLE" in _titles(probe)
            assert "HOSTILE-CLIPBOARD" in _tmux(probe, "list-buffers")
        finally:
            probe.close()

        tmux = Tmux(f"{sys.executable} -m tui.cli -m hostile/m", env)
        try:
            _harden(tmux)
            before = _titles(tmux)
            tmux.wait_for("Message…", 30, POLL_S)
            tmux.keys("hello", "Enter")
            tmux.wait_for("✓ complete", 30, POLL_S)
            assert _tmux(tmux, "list-buffers") == ""
            assert "HOSTILE" not in _titles(tmux)
            srv.handler = lambda req: (
                srv.default(req)
                if req.path.endswith("/models")
                else error_answer(400, "broken " + "".join(PAYLOADS.values()))
            )
            tmux.keys("again", "Enter")
            tmux.wait_for("broken", 30, POLL_S)
            tmux.keys("F2")
            tmux.wait_for(re.escape("gpt<U+202E>4o"), 30, POLL_S)  # shown, not obeyed
            tmux.keys("g", "p", "t")
            time.sleep(1)
            tmux.keys("Escape")
            time.sleep(0.5)
            tmux.keys("C-q")
            time.sleep(2)
            # Reopened from the database: the stored reply is drawn again.
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
            tmux.keys(f"env {exports} {sys.executable} -m tui.cli --resume", "Enter")
            tmux.wait_for("HOSTILE-TITLE", 30, POLL_S)
            time.sleep(1)
            assert _tmux(tmux, "list-buffers") == ""
            after = _titles(tmux)
            assert "HOSTILE" not in after
            assert after.split("|")[0] == before.split("|")[0]
            assert "␛]52;c;" in tmux.screen()  # the text is there, as text
        finally:
            tmux.close()

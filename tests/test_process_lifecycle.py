"""The engine process: a death is reported and survived; nothing outlives the app."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.support.cli import REPO
from tests.support.mock_server import MockServerProcess
from tests.support.tui import make_app, mock_config, wait_until
from tui.screens.chat import ChatScreen
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.error_panel import ErrorPanel
from tui.widgets.prompt_box import PromptBox

posix = pytest.mark.skipif(sys.platform == "win32", reason="platform: POSIX signals")


async def test_engine_death_is_reported_and_the_app_recovers(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    name = f"e-{uuid.uuid4().hex[:8]}"
    mock_server.add_scenario(name, {"n_tokens": 500, "ttft_ms": 10, "tps": 50})
    app = make_app(mock_config(mock_server), isolated_home, models=[f"mock/{name}"])
    async with app.run_test(size=(110, 30)) as pilot:
        prompt = app.screen.query_one(PromptBox)
        prompt.set_prompt("keep going")
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await wait_until(pilot, lambda: screen.run is not None and screen.run.text_len > 20)
        first_pid = app.engine.pid
        assert first_pid is not None
        app.engine.kill()
        await wait_until(
            pilot,
            lambda: screen.run is not None and screen.run.shown_final,
            timeout=5,
            what="the reply to end",
        )
        panel = screen.query_one(ErrorPanel)
        assert "engine process exited" in panel.message and "restarted" in panel.message
        assert screen.query_one(AssistantMessage).body.source  # text received is kept
        assert any("engine process exited" in n.message for n in app._notifications)
        await wait_until(
            pilot,
            lambda: app.engine.running and app.engine.pid != first_pid,
            timeout=10,
            what="a new engine",
        )
        mock_server.add_scenario(name, {"text": "back again", "ttft_ms": 5})
        await pilot.press("f5")
        await wait_until(
            pilot,
            lambda: (
                screen.run is not None
                and screen.run.shown_final
                and screen.run.text == "back again"
            ),
            timeout=10,
        )
        assert (
            not psutil.pid_exists(first_pid)
            or psutil.Process(first_pid).status() == psutil.STATUS_ZOMBIE
        )


def _engine_children(pid: int) -> list[psutil.Process]:
    try:
        return [
            c
            for c in psutil.Process(pid).children(recursive=True)
            if "providers.worker" in " ".join(c.cmdline())
        ]
    except psutil.Error:
        return []


def _gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [
            p
            for p in pids
            if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
        if not alive:
            return True
        time.sleep(0.1)
    return False


@posix
def test_no_orphan_after_sigkill_of_the_app(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    name = f"k-{uuid.uuid4().hex[:6]}"
    mock_server.add_scenario(name, {"n_tokens": 2000, "ttft_ms": 10, "tps": 50})
    env = dict(os.environ, TOKENRACE_HOME=str(isolated_home))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.stream_into_store", mock_server.base_url, name],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "SENT"
        deadline = time.monotonic() + 10
        engines: list[psutil.Process] = []
        while not engines and time.monotonic() < deadline:
            engines = _engine_children(proc.pid)
            time.sleep(0.1)
        assert engines, "the engine process was not found"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert _gone([e.pid for e in engines]), "the engine outlived a SIGKILLed app"
    finally:
        if proc.poll() is None:
            proc.kill()


@posix
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
@pytest.mark.parametrize("keys", [["C-q"], ["C-c"]], ids=["ctrl-q", "ctrl-c"])
def test_no_orphan_after_quitting_from_the_keyboard(
    keys: list[str], isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from bench.common import Tmux
    from tests.test_tmux import POLL_S

    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\n'
    )
    env = {"TOKENRACE_HOME": str(isolated_home), "TERM": "xterm-256color", "PYTHONPATH": str(REPO)}
    tmux = Tmux(f"{sys.executable} -m tui.cli -m mock/mock-fast; echo EXITED $?", env)
    try:
        tmux.wait_for("Message…", 20, POLL_S)
        shell = tmux.pane_pid()
        deadline = time.monotonic() + 10
        engines: list[psutil.Process] = []
        while not engines and time.monotonic() < deadline:
            engines = _engine_children(shell)
            time.sleep(0.1)
        assert engines
        # One engine: the worker the command line started before the UI, adopted and serving
        # the reply; not a second one started after the first frame.
        tmux.keys("hi", "Enter")
        tmux.wait_for(r"✓ complete", 30, POLL_S)
        assert [e.pid for e in _engine_children(shell)] == [e.pid for e in engines]
        assert (isolated_home / "data" / "engine.log").read_text().count("engine ready") == 1
        tmux.keys(*keys)
        tmux.wait_for("EXITED 0", 10, POLL_S)
        assert _gone([e.pid for e in engines]), "the engine outlived the app"
    finally:
        tmux.close()

"""The engine process started early by the command line: adopted once, replaced if it died,
never left behind, and started only for the chat UI."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from providers import prestart as prestart_module
from providers.events import Finished
from providers.prestart import Prestarted, prestart
from providers.remote import EngineProcess
from providers.request import ChatRequest
from tests.support.cli import REPO
from tests.support.mock_server import MockServerProcess
from tests.support.tui import make_app, mock_config
from tui import cli

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="platform: the engine starts early on POSIX only"
)

REQUEST = ChatRequest(model="mock/mock-fast", messages=({"role": "user", "content": "hi"},))


@pytest.fixture
def gc_restored() -> Iterator[None]:
    """``cli.main`` switches the collector off for the UI's start-up; switch it back on."""
    was = gc.isenabled()
    yield
    if was:
        gc.enable()


async def _reply(engine: EngineProcess) -> list[Any]:
    handle = await engine.submit(REQUEST)
    while await asyncio.wait_for(handle.next_batch(), 30) is not None:
        pass
    return handle.events


def _ready_lines(log: Path) -> list[str]:
    return [ln for ln in log.read_text().splitlines() if ln.startswith("engine ready")]


async def test_the_prestarted_engine_serves_the_first_reply(
    mock_server: MockServerProcess, tmp_path: Path
) -> None:
    log = tmp_path / "engine.log"
    early = prestart(log)
    assert early is not None
    died: list[str] = []
    engine = EngineProcess(
        mock_config(mock_server), log_path=log, on_died=died.append, prestarted=early
    )
    try:
        events = await _reply(engine)
        assert isinstance(events[-1], Finished), events[-3:]
        assert engine.pid == early.proc.pid  # the same process, configured after it was ready
        assert os.getsid(engine.pid) != os.getsid(0)  # a CPU share of its own (autogroup)
        await engine.start()  # started once: a second start changes nothing
        assert engine.pid == early.proc.pid
        assert _ready_lines(log) == [f"engine ready, pid {early.proc.pid}"]
        assert engine.restarts == 0 and not died
    finally:
        await engine.close()
    assert early.proc.poll() is not None  # stopped and reaped with the app


def _silent_process(log: Path) -> Prestarted:
    """A process alive when adopted that ends before it says it is ready."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(0.3)"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    return Prestarted(proc, log)


@pytest.mark.parametrize("how", ["dead before", "dies unready"])
async def test_a_prestarted_engine_that_died_is_replaced_without_a_word(
    how: str, mock_server: MockServerProcess, tmp_path: Path
) -> None:
    log = tmp_path / "engine.log"
    if how == "dead before":
        early = prestart(log)
        assert early is not None
        early.proc.kill()
        early.proc.wait(10)
    else:
        early = _silent_process(log)
    died: list[str] = []
    engine = EngineProcess(
        mock_config(mock_server), log_path=log, on_died=died.append, prestarted=early
    )
    try:
        events = await _reply(engine)
        assert isinstance(events[-1], Finished), events[-3:]
        assert engine.pid is not None and engine.pid != early.proc.pid
        assert os.getsid(engine.pid) != os.getsid(0)  # as the early one would have been
        assert engine.restarts == 0 and not died
        assert early.proc.poll() is not None
    finally:
        await engine.close()


async def test_nothing_is_left_when_the_app_ends_before_starting_the_engine(
    mock_server: MockServerProcess, isolated_home: Path
) -> None:
    early = prestart(isolated_home / "engine.log")
    assert early is not None
    config = mock_config(mock_server)
    engine = EngineProcess(config, log_path=early.log_path, prestarted=early)
    app = make_app(config, isolated_home, engine=engine, start_engine=False)
    async with app.run_test(size=(80, 24)):
        pass
    assert early.proc.poll() is not None
    assert not psutil.pid_exists(early.proc.pid)


def test_nothing_is_left_when_the_command_line_stops_at_a_config_error(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch, gc_restored: None
) -> None:
    (isolated_home / "config.toml").write_text("[endpoints.broken\n")
    started: list[Prestarted | None] = []

    def recorded(log_path: Path | None) -> Prestarted | None:
        started.append(prestart(log_path))
        return started[-1]

    monkeypatch.setattr(prestart_module, "prestart", recorded)
    monkeypatch.setenv("TEXTUAL_FPS", os.environ.get("TEXTUAL_FPS", "120"))
    assert cli.main(["-m", "mock/mock-fast"]) == 2
    [early] = started
    assert early is not None
    assert early.proc.poll() is not None
    assert not psutil.pid_exists(early.proc.pid)


class _FakeEarly:
    discarded = 0

    def discard(self) -> None:
        self.discarded += 1


@pytest.mark.parametrize(
    "args",
    [*([name] for name in cli.HEADLESS), ["--version"], ["--blind", "-m", "mock/a"]],
    ids=" ".join,
)
def test_only_the_chat_ui_starts_an_engine_early(
    args: list[str], monkeypatch: pytest.MonkeyPatch, gc_restored: None
) -> None:
    calls: list[Path | None] = []
    fake = _FakeEarly()

    def recorded(log_path: Path | None) -> _FakeEarly:
        calls.append(log_path)
        return fake

    ran: list[dict[str, Any]] = []

    def run_tui(**kw: Any) -> int:
        ran.append(kw)
        return 0

    monkeypatch.setattr(prestart_module, "prestart", recorded)
    monkeypatch.setattr("tui.headless.dispatch", lambda name, rest: 0)
    monkeypatch.setattr("tui.launch.run_tui", run_tui)
    monkeypatch.setenv("TEXTUAL_FPS", os.environ.get("TEXTUAL_FPS", "120"))
    cli.main(args)
    assert calls == [] and ran == []
    # The chat UI itself does: the app gets the process, and it is discarded if not adopted.
    assert cli.main(["-m", "mock/mock-fast"]) == 0
    assert len(calls) == 1 and ran[0]["engine"] is fake and fake.discarded == 1


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_the_engine_is_up_before_the_first_frame_and_answers(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from bench.common import Tmux
    from tests.test_process_lifecycle import _engine_children

    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\n'
    )
    env = {"TOKENRACE_HOME": str(isolated_home), "TERM": "xterm-256color", "PYTHONPATH": str(REPO)}
    tmux = Tmux(f"{sys.executable} -m tui.cli -m mock/mock-fast", env)
    try:
        shell = tmux.pane_pid()
        deadline = time.monotonic() + 20
        engines: list[psutil.Process] = []
        while not engines and time.monotonic() < deadline:
            engines = _engine_children(shell)
            time.sleep(0.01)
        assert engines, "no engine process"
        # Found before the UI drew anything: it runs while the UI imports.
        assert "Message…" not in tmux.screen()
        tmux.wait_for("Message…", 20, 0.1)
        tmux.keys("hi", "Enter")
        tmux.wait_for("✓ complete", 20, 0.1)
        log = isolated_home / "data" / "engine.log"
        assert _ready_lines(log) == [f"engine ready, pid {engines[0].pid}"]
    finally:
        tmux.keys("C-q")
        tmux.close()

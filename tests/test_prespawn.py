"""The engine worker the command line starts before the UI (``providers.prespawn``): adopted,
replaced when it died, and stopped when nobody adopts it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from providers import prespawn
from providers.events import Finished, TextDelta
from providers.remote import EngineProcess
from providers.request import ChatRequest
from tests.support.mock_server import MockServerProcess
from tests.support.tui import mock_config
from tui import cli

HI = ({"role": "user", "content": "hi"},)


async def _reply(proc: EngineProcess) -> list[object]:
    handle = await proc.submit(ChatRequest(model="mock/mock-fast", messages=HI))
    while await asyncio.wait_for(handle.next_batch(), 30) is not None:
        pass
    return list(handle.events)


def _spawn(log: Path | None = None) -> subprocess.Popen[bytes]:
    early = prespawn.spawn(log)
    assert early is not None
    return early


async def test_the_engine_adopts_the_worker_started_before_it(
    mock_server: MockServerProcess, tmp_path: Path
) -> None:
    log = tmp_path / "data" / "engine.log"
    early = _spawn(log)
    proc = EngineProcess(mock_config(mock_server), log_path=log, early=early)
    try:
        events = await _reply(proc)
        assert isinstance(events[-1], Finished), events[-3:]
        assert sum(isinstance(ev, TextDelta) for ev in events) == 100
        assert proc.pid == early.pid  # the same process, not a second one
        assert log.read_text().count("engine ready") == 1
    finally:
        await proc.close()
    assert early.poll() == 0  # asked to shut down, it ended on its own


async def test_a_worker_that_died_before_it_was_adopted_is_replaced(
    mock_server: MockServerProcess,
) -> None:
    early = _spawn()
    early.kill()
    early.wait(10)
    proc = EngineProcess(mock_config(mock_server), early=early)
    try:
        events = await _reply(proc)
        assert isinstance(events[-1], Finished), events[-3:]
        assert proc.pid is not None and proc.pid != early.pid
        assert early.stdout is not None and early.stdout.closed  # its pipes let go
    finally:
        await proc.close()


async def test_an_adopted_worker_that_dies_is_reported_and_the_next_request_restarts_it(
    mock_server: MockServerProcess,
) -> None:
    died: list[str] = []
    reported = asyncio.Event()

    def on_died(reason: str) -> None:
        died.append(reason)
        reported.set()

    early = _spawn()
    proc = EngineProcess(mock_config(mock_server), on_died=on_died, early=early)
    try:
        await proc.start()
        assert proc.pid == early.pid
        proc.kill()
        await asyncio.wait_for(reported.wait(), 10)
        assert "the engine process exited" in died[0]
        assert not proc.running
        events = await _reply(proc)
        assert isinstance(events[-1], Finished), events[-3:]
        assert proc.pid != early.pid
    finally:
        await proc.close()


async def test_closing_before_the_first_start_stops_the_early_worker(
    mock_server: MockServerProcess,
) -> None:
    early = _spawn()
    proc = EngineProcess(mock_config(mock_server), early=early)
    await proc.close()
    assert early.poll() is not None


def test_a_worker_nobody_adopts_ends_when_its_stdin_closes() -> None:
    early = _spawn()
    prespawn.discard(early)
    # 0: the worker read the end of its commands and left; a terminate would read -15.
    assert early.poll() == 0


def test_the_command_line_stops_its_worker_when_the_ui_refuses_to_start(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated_home / "config.toml").write_text("[endpoints\n")  # not TOML
    started: list[subprocess.Popen[bytes] | None] = []
    spawn = prespawn.spawn

    def spy(log_path: Path | None) -> subprocess.Popen[bytes] | None:
        started.append(spawn(log_path))
        return started[-1]

    monkeypatch.setattr(prespawn, "spawn", spy)
    assert cli.main(["-m", "mock/mock-fast"]) == 2
    assert "config error" in capsys.readouterr().err
    assert len(started) == 1 and started[0] is not None
    assert started[0].poll() is not None, "the early worker outlived the command"


@pytest.mark.skipif(sys.platform == "win32", reason="platform: POSIX pipes")
def test_spawn_fails_softly_without_an_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    # The UI then starts its own worker, and says so if that fails too.
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    assert prespawn.spawn(None) is None


def test_on_a_single_core_the_worker_waits_for_the_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two start-ups on one core only take turns: the UI starts the engine after its first frame.
    monkeypatch.setattr(prespawn, "cores", lambda: 1)
    assert prespawn.spawn(None) is None

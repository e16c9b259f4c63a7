"""The app killed, closed or terminated mid-reply, in a real terminal (tmux).

The installed app runs as ``<venv python> -m tui.cli`` in a private tmux server and streams from
the mock server; then it is SIGKILLed, SIGTERMed, sent SIGHUP, or its window is closed. The
database is read back (the reply kept to within a second of what the server sent, marked
``interrupted`` once the process is gone), the metrics log checked for the run, and tmux asked
whether the terminal was given back (alternate screen off, mouse tracking off, cursor shown).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench.common import Tmux
from tests.support.cli import REPO, terminal_env
from tests.support.mock_server import MockServerProcess

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
    pytest.mark.skipif(sys.platform == "win32", reason="platform: POSIX signals and tmux"),
]

POLL_S = 0.25
RESTORED = {"alternate_on": "0", "mouse_any_flag": "0", "cursor_flag": "1"}
IN_APP = {"alternate_on": "1", "mouse_any_flag": "1", "cursor_flag": "0"}


def _app(home: Path, mock: MockServerProcess, args: str, width: int = 120) -> Tmux:
    """The app in tmux; the shell stays after it exits and prints its exit status."""
    (home / "config.toml").write_text(f'[endpoints.mock]\nbase_url = "{mock.base_url}"\n')
    return Tmux(
        f"{sys.executable} -m tui.cli {args}; echo EXIT=$?", terminal_env(home), width=width
    )


def _app_pid(tmux: Tmux, timeout: float = 20) -> int:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in psutil.Process(tmux.pane_pid()).children(recursive=True):
            try:
                if "tui.cli" in " ".join(p.cmdline()):
                    return int(p.pid)
            except psutil.Error:
                continue
        time.sleep(0.1)
    raise TimeoutError("the app process did not start")


def _wait_gone(pid: int, timeout: float = 20) -> None:
    import psutil

    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        pass


def _terminal_flags(tmux: Tmux) -> dict[str, str]:
    import subprocess

    out = subprocess.run(
        [
            *tmux.tmux,
            "display-message",
            "-p",
            "-t",
            tmux.name,
            "#{alternate_on} #{mouse_any_flag} #{cursor_flag}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return dict(zip(("alternate_on", "mouse_any_flag", "cursor_flag"), out, strict=True))


def _fresh_screen(tmux: Tmux) -> None:
    """A SIGKILLed app leaves its last frame (and the alternate screen) behind: reset it, so
    what the next app draws is not confused with it."""
    tmux.keys("tput rmcup; clear", "Enter")
    deadline = time.monotonic() + 10
    while "mock/" in tmux.screen():
        assert time.monotonic() < deadline, tmux.screen()
        time.sleep(POLL_S)


def _scenario(mock: MockServerProcess, tps: float) -> str:
    name = f"life-{uuid.uuid4().hex[:6]}"
    mock.add_scenario(name, {"n_tokens": 3000, "ttft_ms": 50, "tps": tps})
    return name


def _send(tmux: Tmux, prompt: str = "count slowly") -> None:
    tmux.wait_for("Message…", 30, POLL_S)
    tmux.keys(prompt, literal=True)
    tmux.keys("Enter")


def _db(home: Path) -> sqlite3.Connection:
    db = sqlite3.connect(home / "data" / "history.db")
    db.row_factory = sqlite3.Row
    return db


def _replies(home: Path) -> list[sqlite3.Row]:
    db = _db(home)
    try:
        return db.execute(
            "SELECT pane, content, status, error FROM messages WHERE role = 'assistant' "
            "ORDER BY pane"
        ).fetchall()
    finally:
        db.close()


def _tokens_sent(mock: MockServerProcess, model: str, before_ns: int) -> list[int]:
    """Per request of ``model``, the tokens the server had sent by ``before_ns``."""
    return [
        len([s for s in rec["sends"] if s["kind"] == "token" and s["t_ns"] <= before_ns])
        for rec in mock.log()
        if rec["model"] == model
    ]


def _log(home: Path) -> list[dict[str, Any]]:
    path = home / "data" / "runs.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait_for_tokens(mock: MockServerProcess, model: str, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sent = _tokens_sent(mock, model, time.perf_counter_ns())
        if sent and min(sent) >= n:
            return
        time.sleep(0.1)
    raise TimeoutError(f"the server did not send {n} tokens of {model}")


# --- item 8: SIGKILL loses at most the last second, and resume says interrupted ----------------


def test_sigkill_mid_reply_keeps_all_but_the_last_second_and_resume_says_interrupted(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    name = _scenario(mock_server, tps=40)
    tmux = _app(isolated_home, mock_server, f"-m mock/{name}")
    try:
        _send(tmux)
        _wait_for_tokens(mock_server, name, 60)
        time.sleep(1.3)
        pid = _app_pid(tmux)
        killed_ns = time.perf_counter_ns()
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)
        (sent_before,) = _tokens_sent(mock_server, name, killed_ns - 1_000_000_000)
        (reply,) = _replies(isolated_home)
        # Everything the server sent more than a second before the kill was saved.
        assert len(reply["content"].split()) >= sent_before > 40, (reply, sent_before)
        tmux.wait_for("EXIT=137", 10, POLL_S)
        # An export no longer shows it streaming forever: the process is gone, so it is over.
        from tests.support.cli import run_cli

        exported = run_cli("export", "--format", "json", env=terminal_env(isolated_home))
        assert exported.returncode == 0, exported.stderr
        assert '"interrupted"' in exported.stdout and '"streaming"' not in exported.stdout
        _fresh_screen(tmux)
        tmux.keys(f"{sys.executable} -m tui.cli --resume; echo EXIT=$?", "Enter")
        tmux.wait_for("interrupted", 30, POLL_S)
        (reply,) = _replies(isolated_home)
        assert reply["status"] == "interrupted"
        assert "stopped before the reply finished" in reply["error"]
        (rec,) = [r for r in _log(isolated_home) if r["model"] == f"mock/{name}"]
        assert rec["status"] == "interrupted" and rec["recovered"] is True
        assert rec["ttft_ms"] is not None and rec["output_tokens"] >= sent_before
        tmux.keys("C-q")
        tmux.wait_for("EXIT=0", 20, POLL_S)
        assert _terminal_flags(tmux) == RESTORED
    finally:
        tmux.close()


def test_sigkill_of_a_four_pane_race_keeps_every_pane_and_resume_restores_the_panes(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    names = [_scenario(mock_server, tps=20) for _ in range(4)]
    args = " ".join(f"-m mock/{n}" for n in names)
    tmux = _app(isolated_home, mock_server, args, width=160)
    try:
        _send(tmux, "race")
        _wait_for_tokens(mock_server, names[-1], 1)
        time.sleep(1.5)
        pid = _app_pid(tmux)
        killed_ns = time.perf_counter_ns()
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)
        replies = _replies(isolated_home)
        assert [r["pane"] for r in replies] == [0, 1, 2, 3], replies
        for n, reply in zip(names, replies, strict=True):
            (sent_before,) = _tokens_sent(mock_server, n, killed_ns - 1_000_000_000)
            assert len(reply["content"].split()) >= max(1, sent_before), (n, reply, sent_before)
        tmux.wait_for("EXIT=137", 10, POLL_S)
        _fresh_screen(tmux)
        tmux.keys(f"{sys.executable} -m tui.cli --resume; echo EXIT=$?", "Enter")
        tmux.wait_for("interrupted", 30, POLL_S)
        time.sleep(1.0)
        screen = tmux.screen()
        assert "4 panes" in screen, screen
        assert screen.count("interrupted") >= 4, screen
        assert all(r["status"] == "interrupted" for r in _replies(isolated_home))
        tmux.keys("C-q")
    finally:
        tmux.close()


@pytest.mark.parametrize("panes", [1, 2], ids=["chat", "compare"])
def test_sigkill_during_a_pause_keeps_the_text_sent_before_it(
    isolated_home: Path, mock_server: MockServerProcess, panes: int
) -> None:
    """Tokens, then the server goes quiet: the text must be saved without waiting for a next
    batch (the first token at once, the rest by the frame clock)."""
    names = []
    for _ in range(panes):
        name = f"pause-{uuid.uuid4().hex[:6]}"
        mock_server.add_scenario(
            name, {"n_tokens": 400, "ttft_ms": 50, "tps": 40, "silent_after_tokens": 20}
        )
        names.append(name)
    tmux = _app(isolated_home, mock_server, " ".join(f"-m mock/{n}" for n in names))
    try:
        _send(tmux)
        for n in names:
            _wait_for_tokens(mock_server, n, 20)
        time.sleep(1.5)  # the pause: no batch arrives
        pid = _app_pid(tmux)
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)
        replies = _replies(isolated_home)
        assert len(replies) == panes, replies
        for reply in replies:
            assert len(reply["content"].split()) == 20, reply
    finally:
        tmux.close()


# --- items 8 and 10: SIGTERM and SIGHUP end the replies, log them, restore the terminal ------


@pytest.mark.parametrize("sig", ["TERM", "HUP"])
@pytest.mark.parametrize("panes", [1, 2], ids=["chat", "compare"])
def test_stop_signal_mid_reply_saves_it_interrupted_and_restores_the_terminal(
    isolated_home: Path, mock_server: MockServerProcess, sig: str, panes: int
) -> None:
    names = [_scenario(mock_server, tps=40) for _ in range(panes)]
    tmux = _app(isolated_home, mock_server, " ".join(f"-m mock/{n}" for n in names))
    try:
        _send(tmux)
        _wait_for_tokens(mock_server, names[-1], 30)
        assert _terminal_flags(tmux) == IN_APP
        pid = _app_pid(tmux)
        number = getattr(signal, f"SIG{sig}")
        sent_ns = time.perf_counter_ns()
        os.kill(pid, number)
        _wait_gone(pid)
        tmux.wait_for(f"EXIT={128 + number}", 10, POLL_S)
        assert _terminal_flags(tmux) == RESTORED
        replies = _replies(isolated_home)
        assert len(replies) == panes
        for n, reply in zip(names, replies, strict=True):
            (sent_before,) = _tokens_sent(mock_server, n, sent_ns - 300_000_000)
            assert reply["status"] == "interrupted", reply
            assert f"SIG{sig}" in reply["error"]
            # Stopped cleanly: everything received is saved, not only the last checkpoint.
            assert len(reply["content"].split()) >= sent_before, (reply, sent_before)
        records = [r for r in _log(isolated_home) if r["model"] in {f"mock/{n}" for n in names}]
        assert sorted(r["model"] for r in records) == sorted(f"mock/{n}" for n in names)
        assert {r["status"] for r in records} == {"interrupted"}
    finally:
        tmux.close()


@pytest.mark.parametrize("how", ["kill-window", "kill-session"])
def test_closing_the_terminal_mid_race_saves_the_replies_interrupted(
    isolated_home: Path, mock_server: MockServerProcess, how: str
) -> None:
    import subprocess

    names = [_scenario(mock_server, tps=40) for _ in range(2)]
    tmux = _app(isolated_home, mock_server, " ".join(f"-m mock/{n}" for n in names))
    try:
        _send(tmux)
        _wait_for_tokens(mock_server, names[-1], 30)
        pid = _app_pid(tmux)
        if how == "kill-window":
            # A second window keeps the session (and the server) after this one closes.
            subprocess.run([*tmux.tmux, "new-window", "-d", "-t", tmux.name], check=True)
            subprocess.run([*tmux.tmux, "kill-window", "-t", f"{tmux.name}:0"], check=True)
        else:
            subprocess.run([*tmux.tmux, "kill-session", "-t", tmux.name], check=True)
        _wait_gone(pid)
        import psutil

        assert not psutil.pid_exists(pid)
        replies = _replies(isolated_home)
        assert [r["status"] for r in replies] == ["interrupted", "interrupted"], replies
        assert all("SIGHUP" in r["error"] for r in replies)
        assert all(len(r["content"].split()) >= 30 for r in replies)
        records = [r for r in _log(isolated_home) if r["model"] in {f"mock/{n}" for n in names}]
        assert sorted(r["status"] for r in records) == ["interrupted", "interrupted"]
    finally:
        tmux.close()


# --- item 10: `ask` stopped by a signal still writes its summary and its record ----------------


@pytest.mark.parametrize("sig", ["INT", "TERM", "HUP"])
def test_ask_stopped_by_a_signal_writes_the_summary_and_the_record(
    isolated_home: Path, mock_server: MockServerProcess, sig: str
) -> None:
    import subprocess

    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\n'
    )
    name = _scenario(mock_server, tps=40)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "ask", "-m", f"mock/{name}", "count slowly"],
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_tokens(mock_server, name, 20)
        number = getattr(signal, f"SIG{sig}")
        proc.send_signal(number)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    expected = {"INT": "cancelled", "TERM": "interrupted", "HUP": "interrupted"}[sig]
    assert proc.returncode == (130 if sig == "INT" else 128 + number), err
    assert len(out.split()) >= 20
    assert f"mock/{name}" in err and expected in err, err  # the summary line
    (rec,) = [r for r in _log(isolated_home) if r["model"] == f"mock/{name}"]
    assert rec["status"] == expected and rec["source"] == "ask"

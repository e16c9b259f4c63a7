"""Hostile servers against the real app in a real terminal (tmux, a private server per test).

A lone surrogate and an absurd usage count must not stop the saving (issue 15, item 2), and
Esc must cancel a reply that never ends while it pours in (item 4).
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from bench.common import Tmux
from tests.support.cli import terminal_env
from tests.support.hostile_stream import HostileServer

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

POLL_S = 0.25


def _config(home: Path, url: str, extra: str = "") -> None:
    (home / "config.toml").write_text(
        f'[endpoints.srv]\nbase_url = "{url}"\nmodels = ["hostile", "fine", "endless"]\n{extra}'
    )


def _quit(tmux: Tmux, timeout: float = 20) -> None:
    """Ctrl+Q, then wait for the shell prompt to come back (the app has exited)."""
    tmux.keys("C-q")
    tmux.wait_for(r"(?m)[#$] *$", timeout, POLL_S)


def test_saves_continue_after_a_bad_value_in_a_real_terminal(isolated_home: Path) -> None:
    with HostileServer() as srv:
        _config(isolated_home, srv.base_url)
        tmux = Tmux(f"{sys.executable} -m tui.cli -m srv/hostile", terminal_env(isolated_home))
        try:
            tmux.wait_for("Message…", 20, POLL_S)
            tmux.keys("first question", "Enter")
            tmux.wait_for("bad \ufffd char then more", 30, POLL_S)
            tmux.wait_for("✓ complete", 30, POLL_S)
            tmux.keys("/model srv/fine", "Enter")
            time.sleep(0.5)
            tmux.keys("second question", "Enter")
            _, screen = tmux.wait_for("fine, thank you", 30, POLL_S)
            assert "UnicodeEncodeError" not in screen and "failed and was skipped" not in screen
            _quit(tmux)
        finally:
            tmux.close()
    db = sqlite3.connect(isolated_home / "data" / "history.db")
    try:
        contents = [r[0] for r in db.execute("SELECT content FROM messages ORDER BY id")]
        statuses = [r[0] for r in db.execute("SELECT status FROM runs ORDER BY started_at")]
    finally:
        db.close()
    assert contents == [
        "first question",
        "bad \ufffd char then more",
        "second question",
        "fine, thank you",
    ]
    assert statuses == ["complete", "complete"]


def test_esc_works_during_an_endless_stream_in_a_real_terminal(isolated_home: Path) -> None:
    with HostileServer() as srv:
        # A cap far above what arrives during the test: the reply never ends by itself.
        _config(isolated_home, srv.base_url, "[engine]\nmax_reply_bytes = 2000000000\n")
        tmux = Tmux(f"{sys.executable} -m tui.cli -m srv/endless", terminal_env(isolated_home))
        try:
            tmux.wait_for("Message…", 20, POLL_S)
            tmux.keys("never stop", "Enter")
            tmux.wait_for("lorem", 30, POLL_S)
            time.sleep(4)  # megabytes pour in meanwhile
            t = time.monotonic()
            tmux.keys("Escape")
            tmux.wait_for("⊘ cancelled", 30, POLL_S)
            took = time.monotonic() - t
            assert took < 5, f"Esc took {took:.1f} s during an endless stream"
            t = time.monotonic()
            _quit(tmux)
            assert time.monotonic() - t < 10
        finally:
            tmux.close()


def test_quit_while_another_program_locks_the_history(isolated_home: Path) -> None:
    from tui.session.store import Store

    with HostileServer() as srv:
        _config(isolated_home, srv.base_url)
        db = isolated_home / "data" / "history.db"
        db.parent.mkdir(parents=True)
        Store(db).close()  # the file exists, so another program can lock it
        other = sqlite3.connect(db, timeout=0, isolation_level=None)
        tmux = Tmux(f"{sys.executable} -m tui.cli -m srv/fine", terminal_env(isolated_home))
        try:
            tmux.wait_for("Message…", 20, POLL_S)
            other.execute("BEGIN EXCLUSIVE")  # from now on every write waits
            tmux.keys("kept while locked", "Enter")
            tmux.wait_for("fine, thank you", 30, POLL_S)
            tmux.wait_for("locked", 30, POLL_S)  # the notice promises to keep the turns
            tmux.keys("C-q")
            _, screen = tmux.wait_for(r"history-unsaved-", 40, POLL_S)
        finally:
            tmux.close()
            other.execute("ROLLBACK")
            other.close()
    # Printed to the shell after the app's exit, the message wraps at the terminal's width, in
    # the middle of a word or between two, wherever the path's length puts it.
    assert "mergedintothehistorythenexttime" in "".join(screen.split())
    told: list[str] = []
    store = Store(db, on_error=told.append)
    try:
        contents = [r[0] for r in store._read.execute("SELECT content FROM messages ORDER BY id")]
    finally:
        store.close()
    assert contents == ["kept while locked", "fine, thank you"]
    assert any("merged" in m for m in told)

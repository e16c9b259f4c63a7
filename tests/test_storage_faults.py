"""A full disk and a locked database: clear errors, nothing lost on screen, saving resumes."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

from tests.support.mock_server import MockServerProcess
from tests.support.tui import make_app, mock_config, wait_until
from tui.screens.chat import ChatScreen
from tui.session.store import Store
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.prompt_box import PromptBox


def notices(app: Any) -> list[str]:
    return [n.message for n in app._notifications]


async def _send(pilot: Any, text: str) -> None:
    prompt = pilot.app.screen.query_one(PromptBox)
    prompt.set_prompt(text)
    await pilot.press("enter")


async def test_full_disk(isolated_home: Path, mock_server: MockServerProcess) -> None:
    name = f"d-{uuid.uuid4().hex[:8]}"
    mock_server.add_scenario(name, {"n_tokens": 3000, "ttft_ms": 5, "tps": 2000})
    errors: list[str] = []
    store = Store(isolated_home / "history.db", on_error=errors.append)
    store.flush()
    pages = store._read.execute("PRAGMA page_count").fetchone()[0]
    # SQLite's own limit stands in for a full disk: writes fail with SQLITE_FULL.
    store.submit(lambda c: c.execute(f"PRAGMA max_page_count = {pages + 2}"))
    app = make_app(mock_config(mock_server), isolated_home, models=[f"mock/{name}"], store=store)

    def on_error(message: str) -> None:
        errors.append(message)
        app.store_error(message)

    store.on_error = on_error
    async with app.run_test(size=(100, 30)) as pilot:
        await _send(pilot, "a long answer please")
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await wait_until(
            pilot, lambda: screen.run is not None and screen.run.shown_final, timeout=20
        )
        await wait_until(
            pilot, lambda: any("disk is full" in e for e in errors), what="a full-disk error"
        )
        # The notice reaches the app's loop from the writer thread a moment later.
        await wait_until(
            pilot, lambda: any("disk is full" in n for n in notices(app)), what="the notice"
        )
        reply = screen.query_one(AssistantMessage)
        assert reply.status == "complete" and len(reply.body.source) > 10_000  # on screen
        # Space comes back (from outside: the writer is busy retrying): its retries save all.
        # Under the writer's lock, so that it lands between two attempts, not inside one.
        with store._lock:
            store._write.execute("PRAGMA max_page_count = 1073741823")
        await wait_until(
            pilot,
            lambda: any("saving works again" in e for e in errors),
            timeout=10,
            what="saving to resume",
        )
        assert store.flush(30)
        rows = store.messages(screen.conv.id)
        assert rows[-1]["content"] == reply.body.source
        run = store.run_for_message(rows[-1]["id"])
        assert run is not None and run["status"] == "complete"


async def test_locked_database(isolated_home: Path, mock_server: MockServerProcess) -> None:
    import time

    name = f"l-{uuid.uuid4().hex[:8]}"
    mock_server.add_scenario(name, {"text": "saved after the lock", "ttft_ms": 5})
    errors: list[str] = []
    db = isolated_home / "history.db"
    store = Store(db, on_error=errors.append)
    app = make_app(mock_config(mock_server), isolated_home, models=[f"mock/{name}"], store=store)

    def on_error(message: str) -> None:
        errors.append(message)
        app.store_error(message)

    store.on_error = on_error
    other = sqlite3.connect(db, timeout=0, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            t = time.monotonic()
            await _send(pilot, "while locked")
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            await wait_until(
                pilot, lambda: screen.run is not None and screen.run.shown_final, timeout=10
            )
            assert time.monotonic() - t < 3  # the UI never waited for the lock
            await wait_until(
                pilot, lambda: any("locked" in e for e in errors), timeout=10, what="a lock error"
            )
            # The store's thread reports first; the notice follows on the UI's loop
            # (``call_from_thread``): one clean-checkout run read the notices in between.
            await wait_until(
                pilot,
                lambda: any("database is locked" in n for n in notices(app)),
                timeout=10,
                what="the lock notice",
            )
            assert screen.query_one(AssistantMessage).body.source == "saved after the lock"
            other.execute("ROLLBACK")
            await wait_until(
                pilot, lambda: any("saving works again" in e for e in errors), timeout=10
            )
            assert store.flush()
            contents = [r["content"] for r in store.messages(screen.conv.id)]
            assert contents == ["while locked", "saved after the lock"]
    finally:
        other.close()


async def test_the_writer_reports_a_failure_without_waiting_for_the_ui(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    """The store's writer thread tells the app of a failure and goes on at once: it never
    waits for the UI's loop. It used to (``call_from_thread``), so a long frame held up the
    saves, and a ``Store.flush`` on the UI's thread waited out its timeout for a writer that
    was waiting for the UI (``test_locked_database`` failed so on a loaded machine)."""
    import threading

    app = make_app(mock_config(mock_server), isolated_home, models=["mock/x"])
    async with app.run_test(size=(100, 30)) as pilot:
        writer = threading.Thread(target=app.store_error, args=("cannot save history (test)",))
        writer.start()
        writer.join(2.0)  # on the UI's thread: its loop runs nothing until this returns
        assert not writer.is_alive(), "the writer waited for the UI's loop"
        await wait_until(
            pilot,
            lambda: "cannot save history (test)" in notices(app),
            timeout=5,
            what="the notice, shown once the loop runs",
        )

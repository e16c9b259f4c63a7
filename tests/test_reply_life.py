"""A reply's life without a terminal: checkpoints from the first token, and recovery on open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from providers.events import (
    Finished,
    RequestSent,
    ServerTimings,
    StreamError,
    TextDelta,
    ToolCallDelta,
)
from tui.session.conversation import CHECKPOINT_S, Conversation, LiveRun
from tui.session.store import Store, connect, recover_interrupted


def _run() -> LiveRun:
    return LiveRun("mock/m", 0, None, 10)


def test_the_first_token_is_saved_at_once_then_at_most_every_checkpoint_interval(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "h.db")
    conv = Conversation()
    run = _run()
    run.feed([RequestSent(t_ns=1)])
    assert not run.maybe_checkpoint(store, conv, {})  # nothing to show yet, and not due
    run.feed([TextDelta(t_ns=2, text="one ")])
    assert run.maybe_checkpoint(store, conv, {})  # the first token: at once
    run.feed([TextDelta(t_ns=3, text="two ")])
    assert not run.maybe_checkpoint(store, conv, {})  # a moment later: not yet
    assert run.checkpoint_due(now=run._saved_at + CHECKPOINT_S + 1e-3)  # type: ignore[operator]
    store.flush()
    rows = store.messages(conv.id)
    assert [(r["content"], r["status"]) for r in rows] == [("one ", "streaming")]
    (saved,) = store.runs(conv.id)
    assert saved["token_events"] == 1 and saved["pid"] is not None
    store.close()


def test_a_reply_left_streaming_is_interrupted_only_when_its_process_is_gone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.db"
    store = Store(path)
    conv = Conversation()
    dead, alive = _run(), _run()
    for run in (dead, alive):
        run.feed([RequestSent(t_ns=1), TextDelta(t_ns=2, text="partial")])
        run.checkpoint(store, conv, {})
    store.flush()
    store.close()
    db = connect(path)
    db.execute("UPDATE runs SET pid = 111 WHERE id = ?", (dead.run_id,))
    db.execute("UPDATE runs SET pid = 222 WHERE id = ?", (alive.run_id,))
    recovered = recover_interrupted(db, alive=lambda pid: pid == 222)
    assert [r["id"] for r in recovered] == [dead.run_id]
    status = dict(db.execute("SELECT id, status FROM messages").fetchall())
    assert status == {dead.message_id: "interrupted", alive.message_id: "streaming"}
    assert recover_interrupted(db, alive=lambda pid: pid == 222) == []  # once only
    db.close()


def test_opening_the_store_recovers_what_a_dead_process_left(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    store = Store(path)
    conv = Conversation()
    run = _run()
    run.feed([RequestSent(t_ns=1), TextDelta(t_ns=2, text="kept text")])
    run.checkpoint(store, conv, {})
    store.flush()
    store.close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE runs SET pid = 2147483000")  # no such process
    raw.commit()
    raw.close()
    again = Store(path)
    assert [r["status"] for r in again.recovered] == ["interrupted"]
    loaded = Conversation.load(again, conv.id)
    assert loaded is not None
    (turn,) = loaded.turns(0)
    assert (turn.content, turn.status) == ("kept text", "interrupted")
    again.close()


def test_migration_2_adds_the_streaming_pid_and_old_streaming_replies_read_interrupted(
    tmp_path: Path,
) -> None:
    from tui.session.store import migrate

    db = tmp_path / "h.db"
    conn = connect(db)
    assert migrate(conn, upto=1) == 1  # the schema before the pid column
    conn.execute(
        "INSERT INTO conversations(id, title, created_at, updated_at) VALUES (1, 't', 0, 0)"
    )
    conn.execute(
        "INSERT INTO messages(id, conversation_id, role, content, status, created_at, "
        "updated_at) VALUES (2, 1, 'assistant', 'half a repl', 'streaming', 0, 0)"
    )
    conn.execute(
        "INSERT INTO runs(id, message_id, conversation_id, model, endpoint, status, started_at) "
        "VALUES (3, 2, 1, 'srv/m', 'srv', 'streaming', 0)"
    )
    conn.commit()
    assert migrate(conn, upto=2) == 2
    conn.row_factory = sqlite3.Row
    assert conn.execute("SELECT pid FROM runs WHERE id = 3").fetchone()["pid"] is None
    # A run from before the column has no process that could still own it.
    (row,) = recover_interrupted(conn, alive=lambda pid: True)
    assert row["status"] == "interrupted"
    msg = conn.execute("SELECT status, content FROM messages WHERE id = 2").fetchone()
    assert (msg["status"], msg["content"]) == ("interrupted", "half a repl")
    conn.close()


def test_a_finished_reply_is_not_read_again_event_by_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its turn, save and status come from what ``feed`` saw: at the end of a fast race, a
    reply of 8,000 events was read seven times over in the frame that showed its last token."""
    from tui.session import conversation

    def no_fold(events: object) -> None:
        raise AssertionError("the events were folded again")

    monkeypatch.setattr(conversation, "fold", no_fold)
    store = Store(tmp_path / "h.db")
    conv = Conversation()
    run = _run()
    run.feed([RequestSent(t_ns=1), *(TextDelta(t_ns=2 + i, text="x ") for i in range(50))])
    run.feed([ServerTimings(t_ns=60, values=(("predicted_ms", 12.5),))])
    run.feed([Finished(t_ns=70, reason="stop")])
    assert run.status == "complete" and run.final().status == "complete"
    assert run.turn().tool_calls == ()
    run.checkpoint(store, conv, {})
    store.flush()
    (saved,) = store.runs(conv.id)
    assert saved["status"] == "complete"
    store.close()


def test_a_reply_with_tool_calls_or_an_error_keeps_them() -> None:
    run = _run()
    run.feed(
        [
            RequestSent(t_ns=1),
            ToolCallDelta(t_ns=2, index=0, id="c1", name="get", arguments='{"a":'),
            ToolCallDelta(t_ns=3, index=0, arguments="1}"),
            StreamError(t_ns=4, kind="server", message="boom"),
        ]
    )
    turn = run.turn()
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [("get", '{"a":1}')]
    assert turn.error == "boom" and run.status == "error"

"""Conversations as trees: edit and re-race, forks, and the branch that resume, export follow."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.support.mock_server import MockServerProcess
from tests.support.tui import (
    make_app,
    mock_config,
    scenario,
    send,
    wait_for_screen,
    wait_until,
)
from tui.launch import resume_conversation
from tui.screens.compare import CompareScreen
from tui.screens.conversations import ConversationsScreen
from tui.screens.fork_chooser import ForkChooser
from tui.session.conversation import Conversation, branch_ends, current_branch, message_tree
from tui.session.export import export_text
from tui.session.state import UiState
from tui.session.store import CONVERSATION_TREES, MIGRATIONS, connect, migrate
from tui.widgets.prompt_box import PromptBox


def race_over(app: Any) -> bool:
    s = app.screen
    return (
        isinstance(s, CompareScreen)
        and bool(s.runs)
        and all(r.shown_final for r in s.runs.values())
        and not s.streaming
    )


async def race(pilot: Any, text: str) -> CompareScreen:
    s = await wait_for_screen(pilot, CompareScreen)
    await send(pilot, text)
    await wait_until(pilot, lambda: race_over(pilot.app) and pilot.app.screen.runs, what=text)
    s = pilot.app.screen
    assert isinstance(s, CompareScreen)
    return s


def contents(conv: Conversation, pane: int) -> list[str]:
    return [t.content for t in conv.turns(pane)]


async def test_edit_and_fork_keep_every_turn_and_resume_follows_the_branch(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    a = scenario(mock_server, text="from A", ttft_ms=2, tps=500)
    b = scenario(mock_server, text="from B", ttft_ms=2, tps=500)
    state = UiState()
    app = make_app(mock_config(mock_server), isolated_home, models=[a, b], state=state)
    async with app.run_test(size=(160, 40)) as pilot:
        await race(pilot, "one")
        s = await race(pilot, "two")
        # Up on an empty prompt still walks the prompt history.
        prompt = s.query_one(PromptBox)
        prompt.focus()
        await pilot.press("up")
        assert prompt.text == "two"
        prompt.clear_prompt()
        # Alt+E: the last prompt comes back to edit; every pane loses its last turn.
        await pilot.press("alt+e")
        s = await wait_for_screen(pilot, CompareScreen)
        await wait_until(pilot, lambda: s.query_one(PromptBox).text == "two")
        assert contents(s.conv, 0) == ["one", "from A"]
        assert contents(s.conv, 1) == ["one", "from B"]
        s = await race(pilot, "two, edited")
        assert contents(s.conv, 1) == ["one", "from B", "two, edited", "from B"]
        # Alt+R: fork from the first prompt.
        await pilot.press("alt+r")
        await wait_for_screen(pilot, ForkChooser)
        await pilot.press("home", "enter")
        s = await wait_for_screen(pilot, CompareScreen)
        await wait_until(pilot, lambda: s.query_one(PromptBox).text == "one")
        s = await race(pilot, "uno")
        assert contents(s.conv, 0) == ["uno", "from A"]
        conv_id = s.conv.id
        # F4 shows the tree, the current branch marked.
        await pilot.press("f4")
        f4 = await wait_for_screen(pilot, ConversationsScreen)
        tree = str(f4.query_one("#tree").render())
        assert "● you › uno" in tree and "○ you › two, edited" in tree, tree
        # Tab picks another branch (oldest first, round), Enter resumes it in every pane.
        for marked in (["one", "two"], ["one", "two, edited"], ["uno"], ["one", "two"]):
            await pilot.press("tab")
            tree = str(f4.query_one("#tree").render())
            assert re.findall(r"● you › (.*)", tree) == marked, tree
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: (
                isinstance(app.screen, CompareScreen)
                and app.screen.conv.id == conv_id
                and "two" in contents(app.screen.conv, 0)
            ),
            what="the conversation resumed",
        )
        s = await wait_for_screen(pilot, CompareScreen)
        assert contents(s.conv, 0) == ["one", "from A", "two", "from A"]
        assert contents(s.conv, 1) == ["one", "from B", "two", "from B"]
    store = app.store
    assert store is not None
    store.flush()
    rows = store.messages(conv_id)
    # Every turn of every branch is kept: 4 prompts × (prompt + reply) × 2 panes.
    assert len(rows) == 16
    for pane, reply in ((0, "from A"), (1, "from B")):
        shape = [(d, r["role"], r["content"]) for d, r in message_tree(rows, pane)]
        # Siblings share a depth; what follows a branch point is indented under it.
        assert shape == [
            (0, "user", "one"),
            (1, "assistant", reply),
            (1, "user", "two"),
            (2, "assistant", reply),
            (1, "user", "two, edited"),
            (2, "assistant", reply),
            (0, "user", "uno"),
            (1, "assistant", reply),
        ], shape
    # --resume opens the branch last used (the one picked in F4); the export follows it too.
    conv = resume_conversation(store, state)
    assert conv is not None and conv.id == conv_id
    assert contents(conv, 1) == ["one", "from B", "two", "from B"]
    md = export_text(store, conv_id, "md")
    assert "two" in md and "uno" not in md and "edited" not in md
    # A fork not yet sent is the branch last used too: resume opens it, not the newest one.
    assert conv.fork_at(-1, store) == "two"
    store.flush()
    again = Conversation.load(store, conv_id)
    assert again is not None and contents(again, 0) == ["one", "from A"]
    assert len(store.messages(conv_id)) == 16


def test_the_tree_migration_links_stored_lines(tmp_path: Path) -> None:
    number = MIGRATIONS.index(CONVERSATION_TREES) + 1
    conn = connect(tmp_path / "h.db")
    migrate(conn, upto=number - 1)
    conn.execute(
        "INSERT INTO conversations(id, title, mode, settings, created_at, updated_at) "
        "VALUES (1, 't', 'compare', '{}', 0, 0)"
    )
    for msg_id, pane, role in ((10, 0, "user"), (11, 1, "user"), (12, 0, "assistant")):
        conn.execute(
            "INSERT INTO messages(id, conversation_id, pane, role, content, created_at, "
            "updated_at) VALUES (?, 1, ?, ?, ?, 0, 0)",
            (msg_id, pane, role, f"m{msg_id}"),
        )
    conn.execute(
        "INSERT INTO messages(id, conversation_id, pane, role, content, status, created_at, "
        "updated_at) VALUES (13, 1, 1, 'assistant', 'm13', 'error', 0, 0)"
    )
    migrate(conn)
    parents = {r["id"]: r["parent_id"] for r in conn.execute("SELECT id, parent_id FROM messages")}
    assert parents == {10: None, 11: None, 12: 10, 13: 11}
    rows = list(conn.execute("SELECT * FROM messages"))
    assert [r["id"] for r in current_branch(rows, {})] == [10, 12, 11, 13]
    conn.close()


def test_a_retried_reply_stays_on_the_branch_before_its_replacement() -> None:
    rows = [
        {"id": 1, "pane": 0, "role": "user", "parent_id": None},
        {"id": 2, "pane": 0, "role": "assistant", "parent_id": 1},  # failed, then F5
        {"id": 3, "pane": 0, "role": "assistant", "parent_id": 1},
        {"id": 4, "pane": 0, "role": "user", "parent_id": 3},
    ]
    assert [r["id"] for r in current_branch(rows, {})] == [1, 2, 3, 4]
    assert [r["id"] for r in current_branch(rows, {0: 1})] == [1, 2, 3, 4]
    # A retried reply ends no branch of its own: one branch here, and one when the retry is
    # the last message.
    assert branch_ends(rows) == [4]
    assert branch_ends(rows[:3]) == [3]

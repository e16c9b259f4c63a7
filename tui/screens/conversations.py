"""F4: past conversations: resume, rename, delete, search."""

from __future__ import annotations

import time
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from providers.inert import inert_label
from tui.screens.dialog import Dialog, hint
from tui.session.conversation import (
    branch_ends,
    branch_since,
    branch_tips,
    branch_tips_at,
    current_branch,
    message_tree,
)
from tui.session.store import ConversationRow

TREE_LINES = 12
TREE_CHARS = 70


def tree_text(rows: list[Any], tips: dict[int, int | None], since: int | None = None) -> Content:
    """Pane A's messages as a tree: ``●`` marks the current branch, indents are branches."""
    on_branch = current_branch(rows, tips, since)
    current = {int(r["id"]) for r in on_branch}
    lines: list[Content] = []
    for depth, r in message_tree(rows, 0):
        text = " ".join(str(r["content"]).split())
        text = text[:TREE_CHARS] + ("…" if len(text) > TREE_CHARS else "")
        mark = "●" if int(r["id"]) in current else "○"
        what = "you › " if r["role"] == "user" else "  ↳ "
        lines.append(
            Content.assemble(
                "  " * depth + f"{mark} {what}",
                (inert_label(text or "(no text)"), "bold" if int(r["id"]) in current else "dim"),
            )
        )
    if not lines:
        return Content("")
    branches = sum(1 for r in rows if int(r["pane"]) == 0 and r["role"] == "user") - len(
        [r for r in on_branch if int(r["pane"]) == 0 and r["role"] == "user"]
    )
    head = Content.styled(
        "Branches (● the one Enter resumes; Tab picks another)" if branches else "Messages",
        "bold",
    )
    return Content("\n").join([head, *lines[-TREE_LINES:]])


def _age(ts: float) -> str:
    delta = time.time() - ts
    if delta < 3600:
        return f"{max(1, int(delta // 60))} min ago"
    if delta < 86400:
        return f"{int(delta // 3600)} h ago"
    return time.strftime("%Y-%m-%d", time.localtime(ts))


class ConversationsScreen(Dialog[None]):
    """Enter resumes · F2/ctrl+e renames · Delete (twice) deletes · type to search."""

    DEFAULT_CSS = """
    ConversationsScreen > Vertical { width: 110; height: 85%; padding: 0 1; }
    ConversationsScreen OptionList { height: 1fr; }
    ConversationsScreen #tree { height: auto; max-height: 14; border-top: solid $panel; }
    ConversationsScreen #rename { display: none; }
    ConversationsScreen #rename.-on { display: block; }
    """
    BINDINGS = [
        Binding("escape", "close", "Close", show=False),
        Binding("ctrl+e", "rename", "Rename", show=False, priority=True),
        Binding("tab", "next_branch", "Another branch", show=False, priority=True),
        Binding("delete", "delete", "Delete", show=False, priority=True),
        Binding("down", "move(1)", show=False),
        Binding("up", "move(-1)", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[ConversationRow] = []
        self._armed_delete: int | None = None
        self._picked: dict[int, int] = {}  # conversation → the branch picked (Tab), by index

    def compose(self) -> ComposeResult:
        with Vertical():
            yield hint(
                "Conversations · Enter resumes · Tab another branch · Ctrl+E renames "
                "· Delete twice deletes · type to search titles and text · Esc closes"
            )
            yield Input(placeholder="search…", id="search")
            yield Input(placeholder="new title, Enter saves", id="rename")
            yield OptionList()
            yield Static("", id="tree")

    def on_mount(self) -> None:
        self._refresh("")
        self.query_one("#search", Input).focus()

    def _refresh(self, search: str) -> None:
        store = self.tapp.store
        assert store is not None
        store.flush()
        self.rows = store.conversations(search or None)
        options = self.query_one(OptionList)
        options.clear_options()
        for r in self.rows:
            mode = "⚔ compare" if r.mode == "compare" else "chat"
            options.add_option(
                Option(
                    Content.assemble(
                        (f"{inert_label(r.title or 'untitled')[:60]:<60}", "bold"),
                        f"  {mode:<9} {r.messages:>4} msgs  {_age(r.updated_at)}",
                    ),
                    id=str(r.id),
                )
            )
        if self.rows:
            options.highlighted = 0
        self._show_tree()

    @on(OptionList.OptionHighlighted)
    def _show_tree(self) -> None:
        """The highlighted conversation's branches, as a tree."""
        row = self._current()
        if row is None or self.tapp.store is None:
            self.query_one("#tree", Static).update("")
            return
        self._draw_tree(row, self.tapp.store.messages(row.id))

    def _draw_tree(self, row: ConversationRow, rows: list[Any]) -> None:
        """``row``'s tree from its messages ``rows``, on the branch picked (Tab) if any."""
        tree = self.query_one("#tree", Static)
        picked = self._picked.get(row.id)
        if picked is None:
            tree.update(tree_text(rows, branch_tips(row.branch), branch_since(row.branch)))
        else:
            tree.update(tree_text(rows, branch_tips_at(rows, picked)))

    def action_next_branch(self) -> None:
        """Tab: mark the highlighted conversation's next branch as the one to resume."""
        row = self._current()
        if row is None or self.tapp.store is None:
            return
        rows = self.tapp.store.messages(row.id)
        ends = branch_ends(rows, 0)
        if len(ends) < 2:
            self.notify("This conversation has one branch.")
            return
        picked = self._picked.get(row.id)
        if picked is None:  # start from the branch it would resume now
            on = current_branch(rows, branch_tips(row.branch), branch_since(row.branch))
            on_ids = {int(r["id"]) for r in on if int(r["pane"]) == 0}
            picked = next((i for i, end in enumerate(ends) if end in on_ids), len(ends) - 1)
        self._picked[row.id] = (picked + 1) % len(ends)
        self._draw_tree(row, rows)  # the messages just read

    @on(Input.Changed, "#search")
    def _search(self, event: Input.Changed) -> None:
        self._armed_delete = None
        self._refresh(event.value)

    def _current(self) -> ConversationRow | None:
        options = self.query_one(OptionList)
        if options.highlighted is None or not self.rows:
            return None
        return self.rows[options.highlighted]

    def action_move(self, step: int) -> None:
        super().action_move(step)
        self._armed_delete = None

    @on(Input.Submitted, "#search")
    @on(OptionList.OptionSelected)
    def _resume(self) -> None:
        row = self._current()
        if row is None:
            return
        picked = self._picked.get(row.id)
        if picked is not None and self.tapp.store is not None:
            tips = branch_tips_at(self.tapp.store.messages(row.id), picked)
            self.tapp.store.update_conversation(row.id, branch={str(p): t for p, t in tips.items()})
            self.tapp.store.flush()
        self.dismiss()
        self.tapp.open_conversation(row.id)

    def action_rename(self) -> None:
        row = self._current()
        if row is None:
            return
        box = self.query_one("#rename", Input)
        box.value = row.title
        box.add_class("-on")
        box.focus()

    @on(Input.Submitted, "#rename")
    def _renamed(self, event: Input.Submitted) -> None:
        row = self._current()
        box = self.query_one("#rename", Input)
        box.remove_class("-on")
        if row is not None and event.value.strip():
            assert self.tapp.store is not None
            self.tapp.store.update_conversation(row.id, title=event.value.strip())
            self.notify(f"Renamed to {inert_label(event.value.strip())!r}.")
        search = self.query_one("#search", Input)
        search.focus()
        self._refresh(search.value)

    def action_delete(self) -> None:
        row = self._current()
        if row is None:
            return
        if self._armed_delete != row.id:
            self._armed_delete = row.id
            self.notify(
                f"Press Delete again to delete {inert_label(row.title)!r} and its runs.",
                severity="warning",
            )
            return
        assert self.tapp.store is not None
        self.tapp.store.delete_conversation(row.id)
        self._armed_delete = None
        self.notify(f"Deleted {inert_label(row.title)!r}.")
        self._refresh(self.query_one("#search", Input).value)

    def action_close(self) -> None:
        box = self.query_one("#rename", Input)
        if box.has_class("-on"):
            box.remove_class("-on")
            self.query_one("#search", Input).focus()
            return
        self.dismiss()

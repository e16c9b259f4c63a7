"""A line diff of two panes' latest answers (pane A against another)."""

from __future__ import annotations

import difflib

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from providers.inert import inert, inert_label
from tui.screens.dialog import Dialog
from tui.session.race import PANE_LETTERS


def diff_lines(a: str, b: str, a_name: str, b_name: str) -> list[tuple[str, str]]:
    """(kind, line) pairs: kind is '-', '+', ' ' or '@' (a hunk header)."""
    out: list[tuple[str, str]] = []
    for line in difflib.unified_diff(
        a.splitlines(), b.splitlines(), a_name, b_name, lineterm="", n=3
    ):
        if line.startswith(("---", "+++")) or line.startswith("@@"):
            out.append(("@", line))
        elif line.startswith("-"):
            out.append(("-", line))
        elif line.startswith("+"):
            out.append(("+", line))
        else:
            out.append((" ", line))
    return out


class DiffView(Dialog[None]):
    """Pane A against pane B (or C, D: press its letter); - and + mark the lines, not colour."""

    DEFAULT_CSS = """
    DiffView > VerticalScroll { width: 95%; height: 90%; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,f8,q", "dismiss", "Close", show=False)]

    def __init__(self, answers: dict[int, str], models: list[str]) -> None:
        super().__init__()
        self.answers = answers
        self.models = models
        self.other = min(i for i in answers if i != 0) if len(answers) > 1 else 0

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self._render_diff(), id="diff")

    def _render_diff(self) -> Content:
        a, b = self.answers.get(0, ""), self.answers.get(self.other, "")
        la, lb = PANE_LETTERS[0], PANE_LETTERS[self.other]
        title = Content.assemble(
            (
                f"Diff: pane {la} ({inert_label(self.models[0])}) → pane {lb} "
                f"({inert_label(self.models[self.other])})",
                "bold",
            ),
            "   - only in ",
            la,
            ", + only in ",
            lb,
            "; press a pane letter to compare A with it; Esc closes",
        )
        lines = diff_lines(
            inert(a),
            inert(b),
            f"A {inert_label(self.models[0])}",
            f"{lb} {inert_label(self.models[self.other])}",
        )
        if not lines:
            return Content.assemble(title, "\n\n", "The two answers are identical.")
        styled = []
        for kind, line in lines:
            style = {"-": "$bad", "+": "$good", "@": "bold $text-muted"}.get(kind, "")
            styled.append(Content.styled(line, style) if style else Content(line))
        return Content.assemble(title, "\n\n", Content("\n").join(styled))

    def on_key(self, event: events.Key) -> None:
        key = event.key.lower()
        letters = PANE_LETTERS[: len(self.models)].lower()
        if len(key) == 1 and key in letters[1:]:
            index = letters.index(key)
            if index in self.answers:
                event.stop()
                self.other = index
                self.query_one("#diff", Static).update(self._render_diff())

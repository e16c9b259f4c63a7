"""Choose a pane by its letter (for a model change, or a verdict with 't' for a tie)."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from providers.inert import inert_label
from tui.screens.dialog import Dialog
from tui.session.race import PANE_LETTERS
from tui.widgets.compare_pane import PANE_GLYPHS


class PaneChooser(Dialog[int | None]):
    """Press a pane's letter; ``t`` means a tie (returned as -1) when allowed; Esc closes."""

    DEFAULT_CSS = """
    PaneChooser > Vertical { width: 70; height: auto; padding: 1 2; }
    """

    def __init__(self, models: list[str], question: str, allow_tie: bool = False) -> None:
        super().__init__()
        self.models = models
        self.question = question
        self.allow_tie = allow_tie

    def compose(self) -> ComposeResult:
        rows = [Content.styled(self.question, "bold"), Content("")]
        for i, m in enumerate(self.models):
            rows.append(
                Content.assemble(
                    (f"  {PANE_LETTERS[i].lower()}", "bold"),
                    f"   {PANE_GLYPHS[i]} pane {PANE_LETTERS[i]}  {inert_label(m)}",
                )
            )
        if self.allow_tie:
            rows.append(Content.assemble(("  t", "bold"), "   tie: no pane was better"))
        rows += [Content(""), Content.styled("Esc closes", "dim")]
        with Vertical():
            yield Static(Content("\n").join(rows))

    def on_key(self, event: events.Key) -> None:
        key = event.key.lower()
        letters = PANE_LETTERS[: len(self.models)].lower()
        if len(key) == 1 and key in letters:
            event.stop()
            self.dismiss(letters.index(key))
        elif key == "t" and self.allow_tie:
            event.stop()
            self.dismiss(-1)

"""Ask how many times to replay the last prompt."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Static

from tui.screens.dialog import Dialog

MAX_REPLAYS = 100


class ReplayCount(Dialog[int | None]):
    """A number from 1 to 100; Enter starts, Esc closes."""

    DEFAULT_CSS = """
    ReplayCount > Vertical { width: 60; height: auto; padding: 1 2; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Replay the last prompt how many times? (1–100; Enter starts)")
            yield Input("5", id="count", type="integer")
            yield Static("", id="why")

    @on(Input.Submitted)
    def _go(self, event: Input.Submitted) -> None:
        try:
            n = int(event.value)
        except ValueError:
            n = 0
        if not 1 <= n <= MAX_REPLAYS:
            self.query_one("#why", Static).update(f"Give a whole number from 1 to {MAX_REPLAYS}.")
            return
        self.dismiss(n)

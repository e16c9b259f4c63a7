"""The table after "replay N times": per model, median / p95 TTFT, median decode, tokens, cost."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from tui.screens.dialog import Dialog
from tui.screens.summary import summary_table
from tui.session.model_summary import ModelSummary


class ReplayResults(Dialog[None]):
    """What N replays of one prompt measured."""

    DEFAULT_CSS = """
    ReplayResults > VerticalScroll { width: 95%; height: auto; max-height: 80%; padding: 1 2; }
    """
    BINDINGS = [Binding("escape,enter", "dismiss", "Close", show=False)]

    def __init__(self, rows: list[ModelSummary], runs: int) -> None:
        super().__init__()
        self.rows = rows
        self.runs = runs

    def compose(self) -> ComposeResult:
        report = Content.assemble(
            (f"Replay: {self.runs} runs of the same prompt", "bold"),
            "\n\n",
            summary_table(self.rows),
            "\n\n",
            Content.styled(
                "Esc closes. Every run is also in the conversation and the history database.",
                "dim",
            ),
        )
        with VerticalScroll():
            yield Static(report)

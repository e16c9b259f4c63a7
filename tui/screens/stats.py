"""The leaderboard screen: every stored verdict, as ``tokenrace stats`` prints it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from tui.screens.dialog import Dialog, note
from tui.session.stats import report_text, stats_report


class StatsScreen(Dialog[None]):
    """Wins, ties, losses, Wilson intervals and Bradley–Terry ratings over all verdicts."""

    DEFAULT_CSS = """
    StatsScreen > VerticalScroll { width: 95%; height: 90%; padding: 1 2; }
    """
    BINDINGS = [Binding("escape", "dismiss", "Close", show=False)]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Content.styled("Leaderboard", "bold"))
            yield Static("", id="leaderboard")
            yield note(
                "From every verdict given with F9 in a race: the best pane beats each other "
                "pane, a tie ties them all. Win rate = wins / races, with a Wilson 95% "
                "interval; rating = Bradley–Terry log-strength (maximum likelihood, mean 0: "
                "+0.69 over another is 2:1 odds). tokenrace stats --json has it all. "
                "Esc closes."
            )

    def on_mount(self) -> None:
        runs, verdicts = self.stored()
        report = stats_report(verdicts, runs)
        text = (
            report_text(report)
            if report.all.standings
            else "No verdicts yet: race models (F3) and press F9 when a race has finished."
        )
        # Model names are server- and user-supplied: Content, never markup.
        self.query_one("#leaderboard", Static).update(Content(text))

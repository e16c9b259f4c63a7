"""The leaderboard screen: every stored verdict, as ``tokenrace stats`` prints it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.session.stats import report_text, stats_report

if TYPE_CHECKING:
    from tui.app import TokenraceApp


class StatsScreen(ModalScreen[None]):
    """Wins, ties, losses, Wilson intervals and Bradley–Terry ratings over all verdicts."""

    DEFAULT_CSS = """
    StatsScreen { align: center middle; }
    StatsScreen > VerticalScroll {
        width: 95%; height: 90%; border: round $primary; background: $surface; padding: 1 2;
    }
    """
    BINDINGS = [Binding("escape", "dismiss", "Close", show=False)]

    @property
    def tapp(self) -> TokenraceApp:
        from tui.app import TokenraceApp

        assert isinstance(self.app, TokenraceApp)
        return self.app

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Content.styled("Leaderboard", "bold"))
            yield Static("", id="leaderboard")
            yield Static(
                Content.styled(
                    "From every verdict given with F9 in a race: the best pane beats each other "
                    "pane, a tie ties them all. Win rate = wins / races, with a Wilson 95% "
                    "interval; rating = Bradley–Terry log-strength (maximum likelihood, mean 0: "
                    "+0.69 over another is 2:1 odds). tokenrace stats --json has it all. "
                    "Esc closes.",
                    "dim",
                )
            )

    def on_mount(self) -> None:
        store = self.tapp.store
        verdicts: list[Any] = []
        runs: list[Any] = []
        if store is not None:
            store.flush()
            verdicts = store.verdicts()
            runs = store.runs()
        report = stats_report(verdicts, runs)
        text = (
            report_text(report)
            if report.all.standings
            else "No verdicts yet: race models (F3) and press F9 when a race has finished."
        )
        # Model names are server- and user-supplied: Content, never markup.
        self.query_one("#leaderboard", Static).update(Content(text))

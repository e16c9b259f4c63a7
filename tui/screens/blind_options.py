"""Alt+H in compare mode: how a blind race shows itself (timings, replies live or together)."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.session.blind import BlindRace


class BlindOptions(ModalScreen[BlindRace | None]):
    """``t`` timings shown or hidden, ``l`` replies live or together, Enter starts, Esc closes."""

    DEFAULT_CSS = """
    BlindOptions { align: center middle; }
    BlindOptions > Vertical {
        width: 76; height: auto; border: round $primary; background: $surface; padding: 1 2;
    }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Close", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self.race = BlindRace()
        self.text = Static("", markup=False)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield self.text

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        r = self.race
        self.text.update(
            Content("\n").join(
                [
                    Content.styled("Blind race", "bold"),
                    Content(
                        "The same models, shuffled, named model A, B… everywhere until the "
                        "verdict (F9) reveals them."
                    ),
                    Content(""),
                    Content.assemble(
                        ("  t", "bold"),
                        f"   timings and cost: {'shown' if r.show_timings else 'hidden'}"
                        " (a fast provider can give itself away)",
                    ),
                    Content.assemble(
                        ("  l", "bold"),
                        "   replies: "
                        + ("live, as they stream" if r.live_replies else "together, when all end"),
                    ),
                    Content(""),
                    Content.styled("Enter starts · Esc closes", "dim"),
                ]
            )
        )

    def on_key(self, event: events.Key) -> None:
        if event.key == "t":
            self.race.show_timings = not self.race.show_timings
        elif event.key == "l":
            self.race.live_replies = not self.race.live_replies
        elif event.key == "enter":
            event.stop()
            self.dismiss(self.race)
            return
        else:
            return
        event.stop()
        self._show()

"""Choose the export format: m for Markdown, j for JSON."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class ExportDialog(ModalScreen[str | None]):
    """Returns "md" or "json"."""

    DEFAULT_CSS = """
    ExportDialog { align: center middle; }
    ExportDialog > Vertical {
        width: 64; height: auto; border: round $primary; background: $surface; padding: 1 2;
    }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Close", show=False)]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                "Export this conversation with every reply's model and figures:\n\n"
                "  m   Markdown\n  j   JSON\n\nEsc closes. Exports never contain keys."
            )

    def on_key(self, event: events.Key) -> None:
        if event.key in ("m", "j"):
            event.stop()
            self.dismiss("md" if event.key == "m" else "json")

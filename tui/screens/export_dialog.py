"""Choose the export format: m for Markdown, j for JSON, h for a shareable HTML page."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class ExportDialog(ModalScreen[str | None]):
    """Returns "md", "json" or "html"."""

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
                "  m   Markdown\n  j   JSON\n  h   HTML page to share\n\n"
                "Esc closes. Exports never contain keys."
            )

    def on_key(self, event: events.Key) -> None:
        if event.key in ("m", "j", "h"):
            event.stop()
            self.dismiss({"m": "md", "j": "json", "h": "html"}[event.key])

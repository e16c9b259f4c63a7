"""Choose the export format: m for Markdown, j for JSON, h for a shareable HTML page."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from tui.screens.dialog import Dialog


class ExportDialog(Dialog[str | None]):
    """Returns "md", "json" or "html"."""

    DEFAULT_CSS = """
    ExportDialog > Vertical { width: 64; height: auto; padding: 1 2; }
    """

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

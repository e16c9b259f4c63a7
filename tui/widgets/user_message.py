"""A user turn; very long prompts show collapsed with their size."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.widgets import Static

from providers.attachments import Image
from providers.inert import inert
from tui.widgets.prompt_box import human_size

COLLAPSE_CHARS = 4000
COLLAPSE_LINES = 40
PREVIEW_LINES = 8


class UserMessage(Static):
    """The user's prompt as sent."""

    DEFAULT_CSS = """
    UserMessage {
        margin: 1 0 0 0;
        padding: 0 1;
        background: $boost;
    }
    """

    def __init__(self, text: str, images: Sequence[Image] = ()) -> None:
        self.text = text
        content = self._content(text)
        for img in images:  # name, kind, size, dimensions; a file name is shown, never parsed
            content += Content.assemble("\n", ("▣ ", "$accent"), (inert(img.describe()), "dim"))
        super().__init__(content, markup=False)

    @staticmethod
    def _content(text: str) -> Content:
        text = inert(text)  # pasted text can hold escape sequences too
        lines = text.splitlines()
        if len(text) <= COLLAPSE_CHARS and len(lines) <= COLLAPSE_LINES:
            return Content.assemble(("▍ You", "bold $primary"), "\n", text)
        preview = "\n".join(lines[:PREVIEW_LINES])
        if len(preview) > COLLAPSE_CHARS:
            preview = preview[:COLLAPSE_CHARS] + "…"
        note = (
            f"… {human_size(len(text.encode('utf-8')))}, {len(lines):,} lines "
            "(collapsed; sent in full)"
        )
        return Content.assemble(("▍ You", "bold $primary"), "\n", preview, "\n", (note, "italic"))

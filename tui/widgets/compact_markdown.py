"""A finished reply as one widget, drawn once by Rich (see ``streaming_markdown``).

Replies that are finished and out of the way, and every reply of a reopened conversation, are
shown this way: one widget a reply instead of one a block, so a long conversation opens fast.
"""

from __future__ import annotations

from tui.widgets.streaming_markdown import MarkdownBlock


class CompactMarkdown(MarkdownBlock):
    """A whole reply as one block; the same interface as ``StreamingMarkdown``."""

    DEFAULT_CSS = """
    CompactMarkdown { margin: 0; }
    """

    def finish(self) -> None:
        """Nothing streams into a compact view."""

    def append(self, text: str) -> None:
        self.set_source(self.source + text)

"""The scrolling list of turns; follows the stream unless the user scrolled up.

Textual's anchor keeps an anchored container at the bottom as content grows (including the
re-layout when a reply's last block is re-rendered), and releases it when the user scrolls; we
read that state to say "new text below" instead of yanking the view back.
"""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.reactive import reactive

from tui.widgets.uniform import UniformRows


class MessageList(UniformRows, VerticalScroll):
    """Turns of one conversation (or one pane), newest at the bottom."""

    DEFAULT_CSS = """
    MessageList {
        height: 1fr;
        padding: 0 1;
    }
    """

    new_below: reactive[bool] = reactive(False)

    def on_mount(self) -> None:
        self.anchor()

    @property
    def follow(self) -> bool:
        """True while the view sticks to the newest text."""
        return self.is_anchored and not self._anchor_released

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self.follow:
            self.new_below = False

    def content_grew(self) -> None:
        """New text arrived: the anchor keeps up, or we say that there is more below."""
        if not self.follow:
            self.new_below = True

    def resume_follow(self) -> None:
        """Jump to the bottom and follow again."""
        self.anchor()
        self.new_below = False

"""Containers whose rows all look alike draw one row and repeat it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.geometry import Region
from textual.strip import Strip

from tui.textual_private import has_border_title

if TYPE_CHECKING:
    from textual.widget import Widget

    _Base = Widget
else:
    # Not a DOMNode: Textual inherits default CSS along the first DOMNode base only, so the
    # widget class must stay the first one (``class MessageList(UniformRows, VerticalScroll)``).
    _Base = object


class UniformRows(_Base):
    """Mixin for a container that paints only its background, padding and side borders.

    Its children are drawn by the compositor on top of it, so every row of its own is the
    same strip. Textual styles each row separately, and again whenever the container is
    resized or scrolled, which a streaming reply does a few times a second: about 300 rows a
    second for two panes, all alike. This renders one row and repeats it; a top or bottom
    border, or a border title, falls back to Textual's row-by-row rendering.
    """

    def render_lines(self, crop: Region) -> list[Strip]:
        styles = self.styles
        top, _right, bottom, _left = styles.border
        if (
            top[0]
            or bottom[0]
            or styles.outline[0][0]
            or styles.outline[2][0]
            or has_border_title(self)
            or crop.height <= 1
        ):
            return super().render_lines(crop)
        y = min(styles.gutter.top, max(0, self.size.height - 1))
        return super().render_lines(Region(crop.x, y, crop.width, 1)) * crop.height

"""Text that changes every frame but rarely changes size (figures, timers)."""

from __future__ import annotations

from rich.cells import cell_len
from textual.content import Content
from textual.css.scalar import Unit
from textual.widgets import Static


def rows_needed(text: str, width: int) -> int:
    """Rows ``text`` wraps to at ``width`` cells (an estimate; exact for short lines)."""
    if width <= 0:
        return -1
    return sum(max(1, -(-cell_len(line) // width)) for line in text.split("\n"))


class LiveLine(Static):
    """A ``Static`` whose ``show`` relayouts the screen only when the text's height changes.

    ``Static.update`` asks for a layout by default: a reflow of the whole screen. The figures
    and timers redraw at the frame rate while replies stream, and with two panes that was
    seven layouts a frame for text whose height had not changed. A line whose height is set
    in cells never asks: figures that wrapped to a second row at a race's start made a layout
    of all four panes (issue 21), for a status line one row high.
    """

    def __init__(self, content: str | Content = "", **kwargs: object) -> None:
        super().__init__(content, markup=False, **kwargs)  # type: ignore[arg-type]
        self._rows = -1

    def show(self, content: str | Content) -> None:
        text = content.plain if isinstance(content, Content) else content
        rows = rows_needed(text, self.content_region.width) if text else 0
        height = self.styles.height
        fixed = height is not None and height.unit == Unit.CELLS  # (a status line: 1 row)
        # Before its first text, the rows it takes are the ones it was laid out with: a
        # reply's live line (one row, as its empty line took) laid out every pane at a race's
        # first figures.
        had = self._rows if self._rows >= 0 or not self.region else self.size.height
        self.update(content, layout=not fixed and (rows != had or rows < 0))
        self._rows = rows

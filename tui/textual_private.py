"""A compositor that renders only the rows a partial update repaints.

Textual's ``Compositor._get_renders`` crops a widget to the update region only when the widget
is partly hidden; a widget wholly on screen renders every one of its rows, and the rows
outside the update are then thrown away. While two panes stream, each frame repaints a few
rows near the bottom of each pane, yet the screen, the pane row, both panes, both message lists
and both replies each rendered all their 35–45 rows: about 13,000 styled rows a second, most of
the compositor's time (``bench/README.md``, CPU row). Here every widget is cropped to the
update's rows, so a frame costs the rows it repaints.

The override keeps the parent's contract: widgets in the same front-to-back order, each with a
clip whose intersection with its region is exactly the rows and columns its strips cover, which
is what ``_render_chops`` reads. It leans on Textual 8 internals (``_get_renders``,
``_regions_to_spans``, ``_dirty_regions``; pyproject pins ``textual<9``), so
``tests/test_render_paths.py`` compares its output with Textual's own, cell by cell: a change
there fails a test rather than the screen.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual._compositor import ChopsUpdate, Compositor
from textual.geometry import Region
from textual.strip import Strip


class CroppingCompositor(Compositor):
    """``Compositor`` whose partial updates render only what they repaint.

    Two cuts, both exact: each widget renders only the update's rows; and a widget is not
    rendered at all when, on every row of the update, the columns to repaint that it spans
    are already covered by widgets in front of it (the compositor keeps the front-most strip
    there anyway). A reply's new lines are repainted by the reply's markdown view, so the
    screen, the pane row, the panes, the message lists and the replies behind it are skipped.
    """

    _spans: list[tuple[int, int, int]] | None = None

    def render_partial_update(self) -> ChopsUpdate | None:
        # The spans to repaint, as the parent computes them from the same dirty regions.
        regions = self._dirty_regions
        self._spans = list(self._regions_to_spans(regions)) if regions else None
        try:
            return super().render_partial_update()
        finally:
            self._spans = None

    def _get_renders(
        self, crop: Region | None = None
    ) -> Iterable[tuple[Region, Region, list[Strip]]]:
        if crop is None:
            yield from super()._get_renders(crop)
            return
        intersection = Region.intersection
        top, bottom = crop.y, crop.bottom
        # Per row, the columns still to repaint: widgets in front claim theirs first.
        uncovered: dict[int, list[tuple[int, int]]] | None = None
        if self._spans is not None:
            uncovered = {}
            for y, x1, x2 in self._spans:
                uncovered.setdefault(y, []).append((x1, x2))
        for widget, (region, widget_clip) in self.visible_widgets.items():
            clip_x, clip_y, clip_width, clip_height = widget_clip
            if clip_x >= crop.right or clip_x + clip_width <= crop.x:
                continue  # beside the update, as Textual skips it
            # Rows only: ``_render_chops`` cuts each strip at the widgets' edges counting from
            # the strip's left end, which must be an edge too, so columns stay as they are.
            y0 = max(clip_y, top)
            y1 = min(clip_y + clip_height, bottom)
            if y1 <= y0:
                continue
            clip = Region(clip_x, y0, clip_width, y1 - y0)
            x, y, width, height = intersection(region, clip)
            if not (width and height):
                continue
            if uncovered is not None:
                rows = _claim(uncovered, x, x + width, y, y + height)
                if rows is None:
                    continue  # every column it would repaint is a front widget's
                y, height = rows[0], rows[1] - rows[0]
                clip = Region(clip_x, y, clip_width, height)
            yield (
                region,
                clip,
                widget.render_lines(Region(x - region.x, y - region.y, width, height)),
            )


def _claim(
    uncovered: dict[int, list[tuple[int, int]]], x1: int, x2: int, y1: int, y2: int
) -> tuple[int, int] | None:
    """Take columns ``x1..x2`` of rows ``y1..y2`` from ``uncovered``; the first and last+1
    rows where any were still uncovered, or None when none were."""
    first = last = -1
    for y in range(y1, y2):
        ranges = uncovered.get(y)
        if not ranges:
            continue
        left: list[tuple[int, int]] = []
        for a, b in ranges:
            if b <= x1 or a >= x2:
                left.append((a, b))
                continue
            if a < x1:
                left.append((a, x1))
            if b > x2:
                left.append((x2, b))
        if len(left) != len(ranges) or left != ranges:
            if first < 0:
                first = y
            last = y
            uncovered[y] = left
    return None if first < 0 else (first, last + 1)

"""A compositor that renders only the rows a partial update repaints.

Textual's ``Compositor._get_renders`` crops a widget to the update region only when the widget
is partly hidden; a widget wholly on screen renders every one of its rows, and the rows
outside the update are then thrown away. While two panes stream, each frame repaints a few
rows near the bottom of each pane, yet the screen, the pane row, both panes, both message lists
and both replies each rendered all their 35–45 rows: about 13,000 styled rows a second, most of
the compositor's time (``bench/README.md``, CPU row). Here every widget is cropped to the
update's rows, so a frame costs the rows it repaints.

The override keeps the parent's contract: the same widgets in the same front-to-back order,
each with a clip whose intersection with its region is exactly the rows and columns its strips
cover, which is what ``_render_chops`` reads.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual._compositor import Compositor
from textual.geometry import Region
from textual.strip import Strip


class CroppingCompositor(Compositor):
    """``Compositor`` whose partial updates render only the rows inside the update."""

    def _get_renders(
        self, crop: Region | None = None
    ) -> Iterable[tuple[Region, Region, list[Strip]]]:
        if crop is None:
            yield from super()._get_renders(crop)
            return
        intersection = Region.intersection
        top, bottom = crop.y, crop.bottom
        for widget, (region, widget_clip) in self.visible_widgets.items():
            # Rows only: ``_render_chops`` cuts each strip at the widgets' edges counting from
            # the strip's left end, which must be an edge too, so columns stay as they are.
            clip_x, clip_y, clip_width, clip_height = widget_clip
            if clip_x >= crop.right or clip_x + clip_width <= crop.x:
                continue  # beside the update, as Textual skips it
            y0 = max(clip_y, top)
            y1 = min(clip_y + clip_height, bottom)
            if y1 <= y0:
                continue
            clip = Region(clip_x, y0, clip_width, y1 - y0)
            x, y, width, height = intersection(region, clip)
            if width and height:
                yield (
                    region,
                    clip,
                    widget.render_lines(Region(x - region.x, y - region.y, width, height)),
                )

"""The scrolling list of turns; follows the stream unless the user scrolled up.

Textual's anchor keeps an anchored container at the bottom as content grows (including the
re-layout when a reply's last block is re-rendered), and releases it when the user scrolls; we
read that state to say "new text below" instead of yanking the view back.
"""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.scrollbar import ScrollBar
from textual.widget import Widget

from tui.textual_private import (
    OneLayout,
    anchor_released,
    redrawn_anchor_scrollbar,
    shift_animation,
)
from tui.widgets.uniform import UniformRows


class MessageList(UniformRows, OneLayout, VerticalScroll):
    """Turns of one conversation (or one pane), newest at the bottom."""

    DEFAULT_CSS = """
    MessageList {
        height: 1fr;
        padding: 0 1;
    }
    """

    new_below: reactive[bool] = reactive(False)
    # Compare panes: while the turns fit, they start at the top, so every pane's prompt is on
    # the same row. (Textual's anchor scrolls a short list to a negative offset: the turns sat
    # at the bottom, each pane at its own height.) The anchor takes over once they overflow.
    top_aligned = False

    def __init__(self, *args: object, top_aligned: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.top_aligned = top_aligned
        self._fits = False  # top-aligned and everything fits: following needs no anchor
        self._realigned = False  # ``_align`` changed the alignment (it needs a layout)

    @property
    def vertical_scrollbar(self) -> ScrollBar:
        """Textual's bar, drawn again whenever the anchor moves its thumb."""
        bar: ScrollBar = redrawn_anchor_scrollbar(self)
        return bar

    def on_mount(self) -> None:
        self.anchor()

    @property
    def follow(self) -> bool:
        """True while the view sticks to the newest text."""
        return self._fits or (self.is_anchored and not anchor_released(self))

    @property
    def pinned_to_end(self) -> bool:
        """True while the view shows the end of the list and keeps showing it as it grows
        (following, and not top-aligned turns that fit: those are shown from the top)."""
        return not self._fits and self.is_anchored and not anchor_released(self)

    def watch_virtual_size(self) -> None:
        self._align()

    def layout_wanted(self) -> bool:
        """Whether the last size update changed the alignment (``OneLayout`` keeps the layout
        it asks for then)."""
        realigned, self._realigned = self._realigned, False
        return realigned

    def on_resize(self) -> None:
        self._align()

    def _align(self) -> None:
        if not self.top_aligned:
            return
        fits = self.virtual_size.height <= self.scrollable_content_region.height
        if fits and (self._fits or self.follow):
            self._realigned = not self._fits or self.is_anchored or self.scroll_y != 0
            self._fits = True
            if self.is_anchored:
                self.anchor(False)
            if self.scroll_y != 0:
                self.scroll_to(y=0, animate=False, immediate=True)
        elif not fits and self._fits:
            self._realigned = True
            self._fits = False
            self.anchor()  # it has just overflowed: follow the newest text from here

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self.follow:
            self.new_below = False
        else:
            self._reveal(old_value, self._leave_tails(old_value, new_value))

    def _leave_tails(self, old: float, new: float) -> float:
        """The user scrolls away from the end: a reply drawn at the bottom of the lines it
        took (``StreamingMarkdown`` tail mode) goes back to their top, and the list scrolls
        back by the rows that moved up, so that the rows in view stay put; the new offset."""
        from tui.widgets.streaming_markdown import StreamingMarkdown

        views = [v for v in self.query(StreamingMarkdown) if v.in_tail]
        if not views:
            return new
        viewport = self.scrollable_content_region
        scrolled = round(new) - round(old)  # regions are laid out at the old offset
        shift = 0
        for view in views:
            shift += view.leave_tail(viewport.y - view.region.y + scrolled)
        if shift:
            self._scroll_by_drawn(new, -shift)
        return new - shift

    def _reveal(self, old: float, new: float) -> None:
        """The user scrolls: replies draw the blocks that scrolled past unseen while they
        streamed (``StreamingMarkdown.reveal``) before they come into sight, and the list
        scrolls by what that moved above the rows on screen, so that those rows stay put."""
        from tui.widgets.streaming_markdown import StreamingMarkdown

        views = [v for v in self.query(StreamingMarkdown) if v.pending]
        if not views:
            return
        viewport = self.scrollable_content_region
        scrolled = round(new) - round(old)  # regions are laid out at the old offset
        shift = 0
        for view in views:
            top = viewport.y - view.region.y + scrolled
            shift += view.reveal(top, top + viewport.height, top)
        if shift:
            self._scroll_by_drawn(new, shift)

    def _scroll_by_drawn(self, scroll_y: float, shift: int) -> None:
        """Blocks drawn above the rows in sight moved them ``shift`` rows: scroll by as much
        from ``scroll_y``, so that they stay where they were on screen."""
        target = max(0.0, scroll_y + shift)
        # Past the old height's limit: the layout that follows grows the list to match.
        self.set_reactive(Widget.scroll_y, target)
        if shift_animation(self, "scroll_y", shift):
            # A page up (animated) goes on to the rows it was going to: without this it went
            # on to the old offset, and from a reply's tail (``_leave_tails``) that was the end.
            target = max(0.0, self.scroll_target_y + shift)
        self.set_reactive(Widget.scroll_target_y, target)
        self.refresh(layout=True)

    def reveal_ahead(self, height: int) -> None:
        """The window is about to grow: the viewport will be ``height`` rows tall. Replies
        draw the sized blocks that will then be in sight now, before the layout shows them:
        drawn in that frame's paint instead (``StreamingMarkdown.late_draws``), they moved the
        rows once it was out."""
        from tui.widgets.streaming_markdown import StreamingMarkdown

        views = [v for v in self.query(StreamingMarkdown) if v.pending]
        if not views or height <= 0:
            return
        viewport = self.scrollable_content_region
        scroll = round(self.scroll_y)
        pinned = self.pinned_to_end
        # The first row in sight then, in the list's rows: the end stays in sight while it
        # follows; otherwise the top row stays where it is.
        top = max(0, self.virtual_size.height - height) if pinned else scroll
        shift = 0
        for view in views:
            first = top - (view.region.y - viewport.y + scroll)  # in the view's own rows
            shift += view.reveal(first, first + height, first)
        if shift and not pinned:
            self._scroll_by_drawn(self.scroll_y, shift)

    def overflows(self) -> None:
        """A reply in turns that fit is about to take more rows than the view has (its tail
        mode, ``StreamingMarkdown._may_tail``): the list follows its end from the layout
        that grows it. Anchored only once that layout found the turns overflowing, the list
        was drawn at its top in it (blank rows reserved above the reply's text) and moved to
        its end in a second layout, a redraw of every pane."""
        if self._fits:
            self._fits = False
            self.anchor()

    def content_grew(self) -> None:
        """New text arrived: the anchor keeps up, or we say that there is more below."""
        if not self.follow:
            self.new_below = True

    def resume_follow(self) -> None:
        """Jump to the bottom and follow again."""
        self.anchor()
        self.new_below = False
        self._align()

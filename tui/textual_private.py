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
``_render_chops`` and ``render_partial_update``, rewritten with shortcuts that give the same
chops, ``cuts``, ``_regions_to_spans``, ``_dirty_regions``; pyproject pins ``textual<9``), so
``tests/test_render_paths.py`` compares its output with Textual's own, cell by cell: a change
there fails a test rather than the screen.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

from textual._compositor import ChopsUpdate, Compositor
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widget import Widget

if TYPE_CHECKING:
    from rich.console import Console
    from textual import events
    from textual.app import App
    from textual.screen import Screen


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
        # Textual's own (``Compositor.render_partial_update``), with the spans to repaint
        # computed once: ``_get_renders`` reads them too.
        update_regions = self._dirty_regions.copy()
        self._dirty_regions.clear()
        if not update_regions:
            return None
        crop = Region.from_union(update_regions).intersection(self.size.region)
        spans = list(self._regions_to_spans(update_regions))
        if not spans:
            return None  # nothing on screen to repaint (Textual's update fails on no spans)
        is_rendered_line = {y for y, _, _ in spans}.__contains__
        self._spans = spans
        try:
            chops = self._render_chops(crop, is_rendered_line)
        finally:
            self._spans = None
        chop_ends = [cut_set[1:] for cut_set in self.cuts]
        return _Chops(chops, spans, chop_ends)

    def _render_chops(
        self, crop: Region, is_rendered_line: Callable[[int], bool]
    ) -> Sequence[Mapping[int, Strip]]:
        # Textual's own, with two shortcuts that give the same chops: a row's cuts inside a
        # widget are found by bisection (Textual filtered every cut of the row, for every
        # widget on it), and a strip that spans exactly one chop is that chop, undivided.
        cuts = self.cuts
        chops: list[dict[int, Strip | None]] = [dict.fromkeys(row[:-1]) for row in cuts]
        intersection = Region.intersection
        for region, clip, strips in self._get_renders(crop):
            render_region = intersection(region, clip)
            render_x = render_region.x
            first_cut, last_cut = render_region.column_span
            width = last_cut - render_x
            for y, strip in zip(render_region.line_range, strips, strict=False):
                if not is_rendered_line(y):
                    continue
                chops_line = chops[y]
                row = cuts[y]
                lo = bisect_left(row, first_cut)
                hi = bisect_right(row, last_cut)
                if hi - lo == 2 and strip.cell_length == width:
                    if chops_line.get(first_cut) is None:
                        chops_line[first_cut] = strip  # ``strip.divide([width])`` is ``[strip]``
                    continue
                final_cuts = row[lo:hi]
                cut_strips = strip.divide([cut - render_x for cut in final_cuts[1:]])
                get_chops_line = chops_line.get
                for cut, piece in zip(final_cuts, cut_strips, strict=False):
                    if get_chops_line(cut) is None:
                        chops_line[cut] = piece
        return cast("Sequence[Mapping[int, Strip]]", chops)

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


class _Chops(ChopsUpdate):
    """Textual's partial update, written to the terminal as Textual writes it, with the cursor
    moves written directly: Rich builds a ``Control`` object for each move (one per widget a
    row crosses, ~1,500 a frame with four streaming panes: 5% of the UI's time)."""

    def render_segments(self, console: Console) -> str:
        sequences: list[str] = []
        append = sequences.append
        chops = self.chops
        chop_ends = self.chop_ends
        last_y = self.spans[-1][0]
        for y, x1, x2 in self.spans:
            line = chops[y]
            ends = chop_ends[y]
            for end, (x, strip) in zip(ends, line.items(), strict=False):
                if strip is None or x > x2 or end <= x1:
                    continue
                whole = x2 > x >= x1 and end <= x2
                append(f"\x1b[{y + 1};{x + 1}H")  # Rich's ``Control.move_to(x, y)``
                append((strip if whole else strip.crop(0, min(end, x2) - x)).render(console))
            if y != last_y:
                append("\n")
        return "".join(sequences)


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
        for a, b in ranges:
            if b > x1 and a < x2:
                break
        else:
            continue  # nothing of it left to repaint on this row (the usual case behind)
        left: list[tuple[int, int]] = []
        for a, b in ranges:
            if b <= x1 or a >= x2:
                left.append((a, b))
                continue
            if a < x1:
                left.append((a, x1))
            if b > x2:
                left.append((x2, b))
        if first < 0:
            first = y
        last = y
        uncovered[y] = left
    return None if first < 0 else (first, last + 1)


# --- the fence --------------------------------------------------------------------------------
# Every touch of Textual's private API, in one module (pyproject pins the Textual it ran on).
#
# An upgrade of Textual is one file to read and ``tests/test_textual_contracts.py`` (with
# ``tests/test_render_paths.py`` and ``tests/test_terminal_input.py``) to run: each surface below
# is checked there against Textual's own code path or signature.
#
# - ``CroppingCompositor``, put on a screen by ``use_cropping_compositor``
#   (``Screen._compositor``);
# - ``has_border_title`` (``Widget._border_title`` / ``_border_subtitle``);
# - ``anchor_released`` (``Widget._anchor_released``);
# - ``redrawn_anchor_scrollbar`` (``Widget._vertical_scrollbar``, ``App._start_widget``, and
#   ``ScrollBar._reactive_position``, which the compositor sets for an anchored widget; its
#   bar is drawn without the styles cache, checked strip for strip against Textual's);
# - ``styled_lines_kept`` / ``restore_styled_lines`` (``Widget._styles_cache`` and its lines, for
#   an override of ``Widget._size_updated``);
# - ``OneLayout`` (``Widget._size_updated``, ``_layout_required`` and ``_repaint_required``);
# - ``private_override``: a widget method that overrides a private one says so, and the
#   contracts test checks each still exists with the same parameters;
# - the input side (``textual._xterm_parser``, ``textual._ansi_sequences``, the Linux driver's
#   decoder), used by ``tui.terminal_input``;
# - the output side: Textual's writer thread writes to ``sys.__stderr__``
#   (``terminal_output_guard``) and its input thread may outlive a closed terminal
#   (``exit_if_threads_linger``).


def use_cropping_compositor(screen: Screen[Any]) -> None:
    """Give ``screen`` the cropping compositor (Textual has no public hook for its compositor)."""
    screen._compositor = CroppingCompositor()


# --- screens -----------------------------------------------------------------------------------


def switchable_default_screen(app: App[Any], screen: Screen[Any]) -> Screen[Any]:
    """``screen``, made fit to be the one ``App.get_default_screen`` returns.

    Textual gives a screen its result callback when it is pushed, and ``switch_screen`` pops
    that callback from the screen it replaces; the default screen is never pushed, so
    switching away from it raised IndexError, with the stack already emptied. It gets the
    callback a push would give it (none to call)."""
    screen._push_result_callback(app, None)
    return screen


def draw_now(screen: Screen[Any], widgets: Iterable[Widget]) -> bool:
    """Write the lines of ``widgets`` that changed to the terminal now. Textual draws them at
    the screen's next update tick, after a message to the screen from each widget once it is
    idle and the screen's own idle: when the frame clock's tick comes first, that is a whole
    frame of every pane's new text later (25-75 ms at 4 × 2,000 tok/s). The regions each
    widget asked to repaint are drawn (``Screen._on_timer_update``), and its message later
    finds none left. False, and nothing drawn, when a layout is due: Textual's update lays
    the screen out first, and its message says which widgets to lay out again."""
    if not screen.is_current or screen.app._batch_count or screen._layout_required:
        return False
    shown = [widget for widget in widgets if widget.is_attached]
    if any(widget._layout_required for widget in shown):
        return False
    screen._dirty_widgets.update(shown)
    screen._on_timer_update()
    return True


# --- widgets -----------------------------------------------------------------------------------


def shift_animation(widget: Widget, attribute: str, by: float) -> bool:
    """Move a running animation of ``widget.attribute`` by ``by`` (where it started, where it
    ends): the rows under a scroll moved while it animated, and it goes on to the same rows.
    False when nothing animates it. (``Animator._animations``, ``SimpleAnimation``.)"""
    from textual._animator import SimpleAnimation

    animation = widget.app.animator._animations.get((id(widget), attribute))
    if not isinstance(animation, SimpleAnimation):
        return False
    if not isinstance(animation.start_value, int | float) or not isinstance(
        animation.end_value, int | float
    ):
        return False
    animation.start_value += by
    animation.end_value += by
    if isinstance(animation.final_value, int | float):
        animation.final_value += by
    return True


def has_border_title(widget: Widget) -> bool:
    """Whether ``widget`` draws a border title or subtitle (set, even if empty)."""
    return widget._border_title is not None or widget._border_subtitle is not None


def anchor_released(widget: Widget) -> bool:
    """Whether the user scrolled an anchored ``widget`` away from its end (Textual keeps the
    anchor but stops following until it is scrolled back)."""
    return bool(widget._anchor_released)


def redrawn_anchor_scrollbar(widget: Widget) -> Any:
    """``widget``'s vertical scrollbar, made (once) so that it is drawn again whenever its
    thumb moves, and drawn a column of segments at a time.

    For an anchored widget, Textual's compositor moves the thumb by setting the bar's
    ``_reactive_position`` directly, which does not mark the bar for drawing: the screen kept
    a thumb drawn for an earlier offset, a row off, until something else redrew the bar (the
    compare snapshots at the end of a race, 1 run in 2, with every value of the bar right)."""
    if widget._vertical_scrollbar is None:
        bar = _RedrawnScrollBar(
            vertical=True, name="vertical", thickness=widget.scrollbar_size_vertical
        )
        bar.display = False
        widget._vertical_scrollbar = bar
        widget.app._start_widget(widget, bar)
    return widget._vertical_scrollbar


def _redrawn_scrollbar_class() -> type:
    from rich.color import Color as RichColor
    from rich.segment import Segment
    from textual.scrollbar import ScrollBar, ScrollBarRender
    from textual.style import Style as TextualStyle

    class RedrawnScrollBar(ScrollBar):
        # The storage of the ``position`` reactive, as a property: a property costs the
        # bar's other attributes nothing (a ``__setattr__`` took 8% of the compositor's time).
        def _get_position(self) -> float:
            value: float = self.__dict__.get("_position_value", 0)
            return value

        def _set_position(self, value: float) -> None:
            moved = value != self.__dict__.get("_position_value", value)
            self.__dict__["_position_value"] = value
            if moved:
                self.refresh()

        _reactive_position = property(_get_position, _set_position)

        def render_lines(self, crop: Region) -> list[Strip]:
            # The thumb moves at every frame of a streaming pane, and Textual drew the bar
            # row by row through the styles cache and a Rich render (the bars of four panes
            # were the dearest widgets of a frame at 4 × 500 tok/s). A plain vertical bar is a
            # column of one segment a row: built here, with the same filters.
            width, height = self.size
            bar = self.render()
            if (
                not self.vertical
                or not isinstance(bar, ScrollBarRender)
                or self.styles.tint.a
                or self.opacity != 1.0
                or not width
                or not height
            ):
                return list(super().render_lines(crop))
            if self.window_size >= self.window_virtual_size:
                # Nothing to scroll (a list that keeps its bar placed, ``overflow-y:
                # scroll``): the gutter, blank, as when no bar is shown.
                parent = self.parent
                assert isinstance(parent, Widget)
                under, back = parent.background_colors  # the style of the list's padding
                blank = Strip.blank(width, TextualStyle(background=under + back).rich_style)
                for line_filter in self.get_line_filters():
                    blank = blank.apply_filter(line_filter, self.background_colors[1])
                return [blank.crop(crop.x, crop.right)] * len(crop.line_range)
            style = self.app.console.get_style(bar.style)
            segments = ScrollBarRender.render_bar(
                size=height,
                virtual_size=bar.virtual_size,
                window_size=bar.window_size,
                position=bar.position,
                vertical=True,
                thickness=width,
                back_color=style.bgcolor or RichColor.parse("#555555"),  # as Textual's own
                bar_color=style.color or RichColor.parse("bright_magenta"),
            )
            base = self.visual_style.rich_style
            rows = list(Segment.apply_style([s for s in segments.segments if s.text != "\n"], base))
            filters = tuple(self.get_line_filters())
            background = self.background_colors[1]
            # A bar is a handful of distinct rows (track, thumb, the thumb's two ends): each
            # one's strip is made and filtered once, and the filters' and crops' caches of the
            # same strip serve every later frame (a new strip a row cost 2 ms a frame a bar).
            made: dict[Segment | None, Strip]
            key = (width, background, filters)
            cached = self.__dict__.get("_made_rows")
            if cached is None or cached[0] != key:
                made = {}
                self.__dict__["_made_rows"] = (key, made)
            else:
                made = cached[1]
            out: list[Strip] = []
            for y in crop.line_range:
                row = rows[y] if y < len(rows) else None
                strip = made.get(row)
                if strip is None:
                    strip = Strip([row], width) if row is not None else Strip.blank(width)
                    for line_filter in filters:
                        strip = strip.apply_filter(line_filter, background)
                    made[row] = strip
                out.append(strip.crop(crop.x, crop.right) if crop.width != width else strip)
            return out

    return RedrawnScrollBar


_RedrawnScrollBar: Any = _redrawn_scrollbar_class()


class KeptLines(NamedTuple):
    """A styles cache's lines and dirty rows, taken out of it across a height step."""

    lines: dict[int, Strip]
    dirty: set[int]
    height: int  # the widget's height when they were taken


def styled_lines_kept(widget: Widget, size: Size) -> KeptLines | None:
    """Take the lines of ``widget``'s styles cache, still valid at ``size`` if only its height
    changes (same width, no bottom gutter), out of the cache before ``Widget._size_updated``
    empties it. The cache's own dict is taken, not copied: a copy cost a pass over every line
    the reply had drawn, at each height step (a sixth of a layout at 4 × 500 tok/s, and more
    the longer the reply)."""
    cache = widget._styles_cache
    if size.width != widget._size.width or widget.styles.gutter.bottom:
        return None
    kept = KeptLines(cache._cache, cache._dirty_lines, widget._size.height)
    cache._cache, cache._dirty_lines = {}, set()
    return kept


def restore_styled_lines(
    widget: Widget, kept: KeptLines | None, size: Size, blank_from: int | None = None
) -> None:
    """Put the ``kept`` lines back (after ``_size_updated``), less the rows ``size`` no longer
    has. The rows dirty before the step stay dirty; the rest are clean again (Textual's
    ``_set_dirty()`` marked every row dirty in the cache it emptied).

    ``blank_from``: the widget draws every row from there down as the same blank line. The
    rows a step adds there share one styled blank line (a clean kept row's, or the first new
    row's, styled now) instead of each being styled: up to 16 rows a pane at each step of a
    busy race, most of the rows a step restyled. Called from ``_size_updated``, once the
    widget has its new region."""
    cache = widget._styles_cache
    if kept is None or cache._width != size.width:
        return
    lines = kept.lines
    for y in range(size.height, kept.height):
        lines.pop(y, None)
    cache._cache, cache._dirty_lines = lines, kept.dirty
    first = size.height if blank_from is None else max(blank_from, kept.height)
    if first + 1 >= size.height:
        return  # no row added below the text, or one: nothing to share
    dirty = kept.dirty
    blank = next(
        (lines[y] for y in range(blank_from or 0, kept.height) if y in lines and y not in dirty),
        None,
    )
    if blank is None:
        widget.render_lines(Region(0, first, size.width, 1))  # styled once, then shared
        blank = lines[first]
    for y in range(first, size.height):
        lines[y] = blank


F = TypeVar("F", bound=Callable[..., Any])

# (the Textual class, our method) for every override of a private method, as declared.
PRIVATE_OVERRIDES: list[tuple[type, Callable[..., Any]]] = []


def private_override(base: type) -> Callable[[F], F]:
    """Mark a method that overrides ``base``'s private method of the same name."""

    def mark(method: F) -> F:
        PRIVATE_OVERRIDES.append((base, method))
        return method

    return mark


# --- layout: one reflow for one change ---------------------------------------------------------


if TYPE_CHECKING:
    _WidgetBase = Widget
else:
    _WidgetBase = object


class OneLayout(_WidgetBase):
    """Mixin: a widget whose size updates ask for no second layout, nor a second paint.

    After a reflow, Textual hands every widget its new size through the ``virtual_size``
    reactive, and that reactive asks for a layout (``layout=True``): each reply that grew asked
    for a second full reflow of the screen, which found nothing to move. At 4 × 500 tok/s a
    third of the screen's updates were such reflows (25-45 ms each: 40% of the updates with
    new text cost again). The repaint it asks for is dropped too: the update in progress paints
    what moved or changed size, and the repaint after it painted each pane's rows again (a
    further 28 ms an update, 12 ms once it was gone: what is left is the scrollbars' thumbs).
    Only the requests the size update itself makes are dropped: one made before it
    (``refresh(layout=True)`` elsewhere) is kept, and so is one a watcher makes, which a widget
    says by returning True from ``layout_wanted()`` (``MessageList``'s alignment).

    Not a DOMNode (Textual inherits default CSS along the first DOMNode base only), it goes
    before the widget class: ``class MessageList(UniformRows, OneLayout, VerticalScroll)``.
    """

    @private_override(Widget)
    def _size_updated(
        self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True
    ) -> bool:
        asked = self._layout_required, self._repaint_required
        resized = super()._size_updated(size, virtual_size, container_size, layout)
        if not self.layout_wanted():
            # The update in progress lays out and paints everything that moved or changed size.
            if not asked[0]:
                self._layout_required = False
            if not asked[1]:
                self._repaint_required = False
        return resized

    def layout_wanted(self) -> bool:
        """Whether a watcher of the size update asked for a layout of its own."""
        return False


# --- the input side: what the terminal sends ---------------------------------------------------


def wrap_key_events(
    wrap: Callable[[Callable[..., Iterable[events.Key]], Any, str, bool], Iterator[events.Key]],
) -> None:
    """Route Textual's ``XTermParser._sequence_to_key_events(self, sequence, alt)`` through
    ``wrap(original, parser, sequence, alt)``."""
    from textual._xterm_parser import XTermParser

    original = XTermParser._sequence_to_key_events

    def sequence_to_key_events(
        self: XTermParser, sequence: str, alt: bool = False
    ) -> Iterator[events.Key]:
        return wrap(original, self, sequence, alt)

    XTermParser._sequence_to_key_events = sequence_to_key_events  # type: ignore[method-assign]


def set_input_decoder(factory: Callable[[str], Any]) -> None:
    """The ``codecs.getincrementaldecoder`` Textual's Linux driver decodes stdin with."""
    from textual.drivers import linux_driver

    setattr(linux_driver, "getincrementaldecoder", factory)  # noqa: B010


def ansi_sequence_keys() -> dict[str, Any]:
    """Textual's table of escape sequences to keys (or to characters), to edit in place."""
    from textual import _ansi_sequences

    table: dict[str, Any] = _ansi_sequences.ANSI_SEQUENCES_KEYS  # type: ignore[assignment]
    return table


# --- the output side: the terminal going away --------------------------------------------------


class TerminalOutput:
    """The terminal stream Textual writes to, surviving the terminal going away.

    Textual's writer thread writes frames to ``sys.__stderr__`` and dies on the first error;
    when the terminal is closed (SIGHUP) those writes fail with EIO, the thread's bounded queue
    fills, and the app's next frame blocked forever, before the SIGHUP handler could save the
    replies. Writes to a terminal that is gone are dropped instead.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return int(self._stream.write(text))
            except OSError:
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except OSError:
                self.gone = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


OUTPUT_SWITCH_S = 0.001  # the interpreter's switch interval while the app runs


@contextlib.contextmanager
def terminal_output_guard() -> Iterator[None]:
    """While the app runs, Textual's writer thread writes through a ``TerminalOutput``, and
    takes the interpreter's lock from the UI thread within ``OUTPUT_SWITCH_S``.

    A frame is handed to the writer thread as one string; the UI thread goes on to the next
    work (the next frame's text, the engine's pipe) and held the lock for up to Python's
    default switch interval, 5 ms, at a time: at 4 × 500 tok/s a frame waited 14-21 ms at the
    95th percentile before its first byte was written (1 ms at the median), and 5.5-6.5 ms
    with a 1-ms interval (bench/README.md, "the writer thread's wait"). The interval is
    restored after."""
    switch = sys.getswitchinterval()
    sys.setswitchinterval(OUTPUT_SWITCH_S)
    terminal = sys.__stderr__
    try:
        if terminal is None:
            yield
            return
        # typeshed declares sys.__stderr__ a Final TextIOWrapper; Textual's writer thread
        # writes to whatever it is, so it is replaced on purpose with a stream-like wrapper.
        sys.__stderr__ = TerminalOutput(terminal)  # type: ignore[misc,assignment]
        try:
            yield
        finally:
            sys.__stderr__ = terminal  # type: ignore[misc]
    finally:
        sys.setswitchinterval(switch)


def exit_if_threads_linger(code: int, wait_s: float = 2.0) -> None:
    """Exit now if a thread would keep the process alive after the app has ended.

    Everything is saved by now. Textual's input thread, once its terminal is gone, can spin on
    a descriptor that always reads empty, and the interpreter would wait for it at exit for
    ever, at 40% of a core (seen after a closed tmux window).
    """
    import threading

    main = threading.main_thread()
    deadline = time.monotonic() + wait_s
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

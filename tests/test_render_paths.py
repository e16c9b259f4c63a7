"""The shortcuts in drawing a streaming screen draw exactly what Textual's own paths draw.

Three of them (CPU row of ``bench/README.md``): the compositor renders only the rows inside a
partial update; containers whose rows are all alike render one row and repeat it; a reply's
markdown view keeps its styled lines across a height step. Each is checked against the
unoptimised path on a compare screen with two replies streaming mixed markdown, at many
moments while they grow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.segment import ControlType
from textual._compositor import ChopsUpdate, Compositor
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from tests.support.mock_server import MockServerProcess, builtin_scenarios
from tests.support.tui import make_app, mock_config, scenario, send, wait_until
from tests.test_compare_screen import screen
from tui.textual_private import CroppingCompositor
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.compare_pane import ComparePane
from tui.widgets.message_list import MessageList
from tui.widgets.streaming_markdown import StreamingMarkdown

SIZE = (120, 36)


def _strips_equal(a: list[Strip], b: list[Strip]) -> bool:
    return [list(s) for s in a] == [list(s) for s in b]


def _rows(compositor: Compositor, crop: Region) -> list[list[Any]]:
    """The segments the compositor's chops put inside ``crop``, row by row."""
    chops = compositor._render_chops(crop, lambda y: crop.y <= y < crop.bottom)
    rows = []
    for line in chops[crop.y : crop.bottom]:
        row: list[Any] = []
        for x, strip in sorted(line.items()):
            if strip is None or x >= crop.right or x + strip.cell_length <= crop.x:
                continue
            row += list(strip.crop(max(0, crop.x - x), crop.right - x))
        rows.append(row)
    return rows


def _stock_rows(compositor: Compositor, crop: Region) -> list[list[Any]]:
    """The same from Textual's own compositor."""
    compositor.__class__ = Compositor
    try:
        return _rows(compositor, crop)
    finally:
        compositor.__class__ = CroppingCompositor


def _painted(update: Any, console: Any) -> dict[tuple[int, int], tuple[str, Any]]:
    """The cells a partial update writes on the terminal, with their styles (Textual also
    sends a bare cursor move at a span's right end: not a cell)."""
    cells: dict[tuple[int, int], tuple[str, Any]] = {}
    if not update.spans:  # nothing in the regions to paint (Textual's own update then fails)
        return cells
    x = y = 0
    for segment in update.__rich_console__(console, console.options):
        if segment.control:
            for control in segment.control:
                if control[0] == ControlType.CURSOR_MOVE_TO:
                    x, y = control[1] - 1, control[2] - 1
            continue
        if segment.text == "\n":
            continue
        for ch in segment.text:
            cells[(x, y)] = (ch, segment.style)
            x += cell_len(ch)
    return cells


async def _while_streaming(
    isolated_home: Path, mock: MockServerProcess, check: Any, tps: tuple[int, int] = (400, 300)
) -> int:
    """Stream two long mixed-markdown replies at ``tps``; call ``check(app)`` every few frames
    (for 3.5 s: height steps, blocks closing, code fences and tables)."""
    text = "".join(builtin_scenarios()["mock-markdown"]["tokens"])
    a = scenario(mock, text=text, ttft_ms=5, tps=tps[0])
    b = scenario(mock, text=text[len(text) // 3 :], ttft_ms=5, tps=tps[1])
    app = make_app(mock_config(mock), isolated_home, models=[a, b])
    checks = 0
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "go")
        await wait_until(pilot, lambda: len(screen(app).query(StreamingMarkdown)) == 2)
        views = list(screen(app).query(StreamingMarkdown))
        while checks < 50 and any(not v._finished for v in views):
            await pilot.pause(0.07)
            check(app)
            checks += 1
    return checks


async def test_cropped_partial_updates_equal_textuals(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    seen: list[int] = []

    def check(app: Any) -> None:
        compositor = app.screen._compositor
        assert isinstance(compositor, CroppingCompositor)
        width, height = app.screen.size
        # A band across both panes where the replies grow, and one inside a single pane.
        for crop in (Region(0, height - 12, width, 5), Region(3, 4, width // 2 - 5, 3)):
            ours = _rows(compositor, crop)
            assert ours == _stock_rows(compositor, crop), crop
            assert all(ours), crop  # every row drawn
        seen.append(1)

    checks = await _while_streaming(isolated_home, mock_server, check)
    assert checks >= 10 and len(seen) == checks


async def test_partial_updates_paint_what_textuals_paint(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    """The bytes sent to the terminal for a partial update are Textual's, for the dirty
    regions a streaming frame makes (new lines, figures, a relayout) and odd ones."""
    skipped: list[int] = []

    def check(app: Any) -> None:
        compositor = app.screen._compositor
        console = app.console
        views = list(app.screen.query(StreamingMarkdown))
        width, height = app.screen.size
        cases = [
            [v.region for v in views],  # a relayout of both replies
            [Region(v.region.x, v.region.bottom - 3, v.region.width, 3) for v in views],
            [w.region for w in app.screen.query(MessageList)],
            [Region(0, 1, width, height - 2)],
            [Region(5, 3, 7, 2), Region(width - 9, height - 6, 8, 4)],  # not on widget edges
        ]
        for case in cases:
            on_screen = (r.intersection(app.screen.region) for r in case)
            regions = [r for r in on_screen if r.area]
            if not regions:
                continue
            compositor._dirty_regions.update(regions)
            ours = compositor.render_partial_update()
            compositor._dirty_regions.update(regions)
            compositor.__class__ = Compositor
            try:
                stock = compositor.render_partial_update()
                stock_count = len(list(Compositor._get_renders(compositor, None)))
            finally:
                compositor.__class__ = CroppingCompositor
            assert ours is not None and stock is not None
            assert _painted(ours, console) == _painted(stock, console), regions
            # Written to the terminal byte for byte as Textual writes the same update.
            written = ours.render_segments(console)
            assert type(ours) is not ChopsUpdate
            assert written == ChopsUpdate.render_segments(ours, console), regions
            # How many widgets the update rendered, against all Textual renders.
            compositor._spans = list(compositor._regions_to_spans(regions))
            try:
                ours_count = len(list(compositor._get_renders(Region.from_union(regions))))
            finally:
                compositor._spans = None
            skipped.append(stock_count - ours_count)
        # Dirty only in an empty region (``StreamingMarkdown._relayout`` refreshes one, a
        # region cut to the screen can be one): nothing to paint, where Textual's update
        # fails on its empty list of spans.
        compositor._dirty_regions.update([Region(3, 3, 0, 0)])
        assert compositor.render_partial_update() is None

    await _while_streaming(isolated_home, mock_server, check)
    assert max(skipped) > 5  # widgets behind the new lines were not rendered at all


async def test_uniform_containers_draw_what_textual_draws(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    kinds: set[str] = set()

    def check(app: Any) -> None:
        for cls in (MessageList, AssistantMessage, ComparePane):
            for w in app.screen.query(cls):
                if not w.size.area:
                    continue
                full = w.size.region
                for wanted in (full, Region(1, 2, max(1, w.size.width - 2), 3)):
                    crop = wanted.intersection(full)
                    if not crop.area:
                        continue
                    ours = w.render_lines(crop)
                    w._styles_cache.clear()
                    stock = Widget.render_lines(w, crop)
                    w._styles_cache.clear()
                    assert len(ours) == crop.height
                    assert _strips_equal(ours, stock), (cls.__name__, crop)
                    kinds.add(cls.__name__)

    await _while_streaming(isolated_home, mock_server, check)
    assert kinds == {"MessageList", "AssistantMessage", "ComparePane"}


async def test_uniform_containers_keep_their_css(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    # Textual inherits default CSS along the first DOMNode base only: a mixin that is a
    # Widget put first would drop VerticalScroll's ``overflow-x: hidden`` and its scrollbar
    # (a pane's list keeps its bar placed: ``overflow-y: scroll``, drawn blank while it fits).
    a = scenario(mock_server, n_tokens=900, ttft_ms=5, tps=2000)
    app = make_app(mock_config(mock_server), isolated_home, models=[a, a])
    from textual.geometry import Region

    def bar_colours(m: MessageList) -> set[object]:
        bar = m.vertical_scrollbar
        strips = bar.render_lines(Region(0, 0, *bar.size))
        return {segment.style.bgcolor for strip in strips for segment in strip if segment.style}

    async with app.run_test(size=SIZE) as pilot:
        lists = list(screen(app).query(MessageList))
        await pilot.pause()
        for m in lists:  # nothing to scroll: the bar is the list's blank padding
            assert m.show_vertical_scrollbar and m.vertical_scrollbar.size.height
            base, back = m.background_colors
            assert bar_colours(m) == {(base + back).rich_color}, bar_colours(m)
        await send(pilot, "go")
        await wait_until(pilot, lambda: all(m.max_scroll_y > 0 for m in lists), 20)
        await pilot.pause(0.2)
        for m in lists:
            assert m.styles.overflow_x == "hidden"
            assert m.styles.overflow_y == "scroll"
            assert m.show_vertical_scrollbar
            assert len(bar_colours(m)) == 2  # a thumb on its track


async def test_kept_lines_show_what_the_reply_holds(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    """Every row of each markdown view, as the screen composes it, is the view's own line."""
    steps: list[int] = []

    def check(app: Any) -> None:
        compositor = app.screen._compositor
        strips = compositor.render_strips()
        for view in app.screen.query(StreamingMarkdown):
            if view not in compositor.visible_widgets:
                continue
            region, clip = compositor.visible_widgets[view]
            visible = region.intersection(clip)
            for y in range(visible.y, visible.bottom):
                row = y - region.y
                on_screen = strips[y].crop(region.x, region.right).text
                assert (
                    on_screen == view.render_line(row).text.ljust(region.width)[: region.width]
                ), (row, on_screen)
            steps.append(view.size.height)

    # At 100 and 75 tok/s: faster, the replies take their tail within a second (a step every
    # 6 s from there), and the views grew through 3-4 heights, not the many steps checked here.
    await _while_streaming(isolated_home, mock_server, check, tps=(100, 75))
    assert len(set(steps)) > 5  # the views grew through many height steps while checked

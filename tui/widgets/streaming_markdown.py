"""Markdown that streams in at bounded cost per append, however long the reply (DESIGN §7).

One widget per reply, drawn with Textual's line API (like ``RichLog``): the reply is split into
top-level blocks, and each block is rendered by Rich into lines (``Strip``s) once:

- closed blocks (every block but the last) are rendered once per width and cached;
- the open (last) block is re-rendered as it grows, except an open code fence, which only
  highlights the lines completed since the last frame (in chunks of ``FENCE_CHUNK_LINES``).

A frame then costs the visible lines, fetched from the cache, and the open block's re-render:
not the length of the reply, and not a widget tree (Textual's ``Markdown`` makes about a dozen
widgets per block, and every layout pass walks them; measured here: 2 panes at 100 tok/s used
55–63% of a core with it, and a frame took 45 ms).

Appends are coalesced: ``append`` records text; the view re-syncs at most ``fps`` times a second.
``finish`` renders what is left. ``source`` is exactly what was fed.
"""

from __future__ import annotations

import math
import re
import time
from bisect import bisect_right
from functools import cache
from itertools import pairwise
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Offset, Region, Size
from textual.strip import Strip
from textual.widget import Widget

from providers.inert import inert
from tui.textual_private import (
    OneLayout,
    private_override,
    restore_styled_lines,
    styled_lines_kept,
)

if TYPE_CHECKING:  # imported when the first reply is drawn: 25 ms less before the first frame
    from markdown_it import MarkdownIt
    from markdown_it.token import Token
    from rich.measure import Measurement
    from rich.padding import PaddingDimensions
    from rich.syntax import Syntax
    from textual.selection import Selection

FENCE_CHUNK_LINES = 24
GROW_MIN = 4  # a streaming reply reserves at least this many lines for what comes next
GROW_MAX = 8  # ... and at most this many (16 left a gap of 15 blank lines at 200 tok/s)
# ... or this many while the UI is busy (``sync(busy=True)``): at 4 × 500 tok/s each pane then
# steps half as often, and so lays out and redraws half as often (reflows 144-161 -> 80-83
# in 10 s, the screen's updates -24 %); the blank lines below are filled within the frames
# that follow at such rates.
GROW_MAX_BUSY = 16
GROW_AHEAD_S = 0.5  # ... or what it grew in this long at its recent rate
# Tail mode: a reply the list follows, taller than the list's view, streaming while the UI is
# busy, reserves this many views' rows at a step and draws its text bottom-aligned in them
# (``_tail``): the view then shows the text's last rows, never reserved blank ones, and a step
# (a layout of the screen and a repaint of its pane, 30-38 ms with four panes) comes every
# few seconds instead of several times a second. Each frame repaints the rows in view instead,
# served straight from the reply's lines (``render_lines``): 6.5 ms of compositor a frame for
# four panes of 33 rows, in process (bench/README.md, "Tail mode, built").
TAIL_VIEWS = 4
# ... or what it grows in this long at its rate since the last step, if more: at 4 × 2,000
# tok/s a pane grew four views in a third of a second, and the steps' layouts (30-40 ms each)
# were a sixth of the UI's time. The rows are above the text, out of view: reserving them
# costs nothing but the scrollbar's thumb; at most ``TAIL_MAX_VIEWS`` views (a burst, say a
# cached answer in one chunk, is not a rate). With 2 s (and 32 views), a 10,000-token race at
# 4 × 500 tok/s laid out the screen 22-25 times (0.8-1.0 s of layouts), and half the markers
# of the worst 5% waited for one; with 6 s, 17 times (0.6 s), a fifth of them.
TAIL_AHEAD_S = 6.0
TAIL_MAX_VIEWS = 128
# At its tail, the text scrolls in jumps (as xterm's jump scroll): when it reaches the view's
# end it moves up by this fraction of the view, and the frames after draw the new rows into
# the blank rows left below it. Scrolled by each frame's new rows instead, every row in view
# moved at every frame: four whole panes composed and written to the terminal 20 times a
# second at 4 × 500 tok/s. Between two jumps a frame redraws only the rows that changed. A
# frame that brings more new rows than a jump leaves (thousands of tokens a second) shows
# the text down to the view's end, as before: it redraws the whole view anyway.
TAIL_JUMP = 0.5
# A reply that will fill the rest of its list's view within this long at its rate takes those
# rows at once (``_room``; they show blank, as reserved rows do): a race's first second made a
# step, a layout of every pane (30-60 ms with four), each time the text grew half a
# second's worth, 6 times before tail mode at 4 × 500 tok/s. A slow reply steps as before.
ROOM_FILL_S = 1.0
# A fast reply in a pane whose turns fit takes its tail (its text from the view's top, blank
# rows below it) when its text fills the view less a jump, or will fill it within this long:
# at 4 × 500 tok/s the step that took the rows left in the view was one more layout of every
# pane in a race's first 300 ms (``_may_tail``).
TAIL_SOON_S = 0.25
PARAGRAPH_FREEZE_LINES = 8  # an open paragraph longer than this has its top lines frozen
OPEN_BUDGET_S = 0.008  # an open block that takes longer than this to draw ...
OPEN_DUTY = 0.25  # ... is drawn at most this fraction of the time (a 300-row table: 140 ms)
SETTLED_LINE_CHARS = 12  # a line this long has shown what kind of block it starts
PARAGRAPH_OPEN_LINES = 3  # ... all but its last lines, which later text can still rewrap
# An open paragraph draws at most this many characters past its frozen lines in one frame
# (~15 ms): text that pours in faster than it can be drawn is shown a frame later, and a frame
# never costs what arrived since the last one (a server streaming without end took every
# frame longer than the last, and the keys with it).
PARAGRAPH_FRAME_CHARS = 12_000
# A closed block that scrolled out of sight before any frame drew it is sized, not drawn
# (``_Closed``): drawn when it comes into view (within this many screen heights of it), or
# after the reply ends, this long at most a step, while nothing else is to be drawn.
REVEAL_SCREENS = 1.0
SCROLL_TAU_S = 0.5  # the text's rows a second: a moving average over about this long
SETTLE_STEP_S = 0.004
LONG_PARAGRAPH_CHARS = 4 * PARAGRAPH_FRAME_CHARS  # a closed paragraph longer is drawn in steps
_UNCLOSED = re.compile(r"[*`]|~~|(?<!\w)_")
_NOT_PLAIN = re.compile(r"[^A-Za-z0-9 .,;:?'\"()/-]")
_FENCE_CLOSE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*$")
_BLOCK_OPEN = (
    "paragraph_open",
    "heading_open",
    "bullet_list_open",
    "ordered_list_open",
    "blockquote_open",
    "table_open",
    "fence",
    "code_block",
    "hr",
    "html_block",
)


_now = time.monotonic  # the growth rate's and the open block's clock (tests replace it)
_perf = time.perf_counter  # what drawing the open block cost (tests replace it)


def code_theme(dark: bool) -> str:
    """The Pygments theme for code, by the app theme's light or dark mode."""
    return "monokai" if dark else "default"


class Trimmed:
    """A renderable without the blank lines Rich puts before lists, quotes and tables, or
    around a code block, so that blocks drawn one by one are spaced like a whole document."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # Rendered without the height limit: cropping before trimming would cut the last line.
        lines = console.render_lines(self.renderable, options.update(height=None), pad=False)
        start, end = 0, len(lines)
        while start < end and not "".join(seg.text for seg in lines[start]).strip():
            start += 1
        while end > start and not "".join(seg.text for seg in lines[end - 1]).strip():
            end -= 1
        new_line = Segment.line()
        for line in lines[start:end]:
            yield from line
            yield new_line


@cache
def markdown_class() -> Any:
    """Rich's ``Markdown`` with one shared parser: Rich builds a new ``MarkdownIt`` (rules,
    linkify tables) for every document, and a reply is drawn as dozens of documents."""
    from markdown_it import MarkdownIt
    from rich.markdown import CodeBlock, TableElement
    from rich.markdown import Markdown as RichMarkdown

    parser = MarkdownIt().enable("strikethrough").enable("table")

    class _CodeBlock(CodeBlock):
        def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
            code = str(self.text).rstrip()
            yield FastCode(code, lexer_for(self.lexer_name), self.theme, 1)

    class _TableElement(TableElement):
        def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
            row = self.header.row if self.header is not None else None
            if row is not None:
                rows = self.body.rows if self.body is not None else []
                segments = table_segments(
                    [cell.content for cell in row.cells],
                    [[cell.content for cell in body_row.cells] for body_row in rows],
                    console,
                    options,
                )
                if segments is not None:
                    return segments
            return super().__rich_console__(console, options)

    class _Markdown(RichMarkdown):
        elements: ClassVar[dict[str, Any]] = {
            **RichMarkdown.elements,
            "fence": _CodeBlock,
            "code_block": _CodeBlock,
            "table_open": _TableElement,
        }

        def __init__(self, markup: str, theme: str) -> None:
            self.markup = markup
            self.parsed = parser.parse(markup)
            self.code_theme = theme
            self.justify = None
            self.style = "none"
            self.hyperlinks = False
            self.inline_code_lexer = None
            self.inline_code_theme = theme

    return _Markdown


def table_segments(
    header: list[Text], rows: list[list[Text]], console: Console, options: ConsoleOptions
) -> list[Segment] | None:
    """The segments Rich's ``Table`` draws for a markdown table, drawn here without it when
    every cell fits on one line at its column's natural width; None when one does not (or the
    table is not the usual shape), and Rich draws it.

    A table was a main cost of a reply with tables: Rich measures every cell through two
    wrappers, renders each through ``Padding`` and ``render_lines`` twice, and reshapes the
    lines (1.5-2.4 ms for 2 columns and 4 rows; the open table of a reply is drawn again at
    every frame). When nothing wraps, what it draws is simple: each column as wide as its
    widest cell plus the padding between columns, each cell its text padded to that width,
    and the borders of ``box.SIMPLE``. This follows ``TableElement`` and ``Table._render`` step
    by step, with the same styles added in the same order (a ``Style`` sum is not
    commutative), so the lines are equal segment for segment
    (``test_tables_drawn_directly_are_drawn_as_rich_draws_them``). A cell of plain printable
    ASCII is drawn here; any other cell (inline code, emphasis, other characters) is drawn
    by Rich's ``Text`` itself at the column's width, as the table would draw it."""
    from rich import box
    from rich.cells import cell_len

    count = len(header)
    if not count or any(len(row) != count for row in rows):
        return None  # markdown-it gives every row the header's cells; Rich would add columns
    grid = [header, *rows]
    # Natural widths, as ``Table._measure_column`` measures them: the widest cell (a
    # ``Text``'s widest line, here its only one) plus the padding to its right, 1 cell after
    # every column but the last (``collapse_padding`` and no ``pad_edge``); at least 1.
    pads = [1] * (count - 1) + [0]
    widths = [0] * count
    for cells in grid:
        for i, text in enumerate(cells):
            plain = text.plain
            if plain.isascii() and plain.isprintable():
                length = len(plain)
            elif "\t" in plain or (plain and plain.splitlines() != [plain]):
                return None  # tabs are expanded, and a line break wraps: Rich draws it
            else:
                length = cell_len(plain)
            widths[i] = max(widths[i], length + pads[i])
    widths = [width or 1 for width in widths]
    # Beyond the width the table shrinks columns and wraps cells: Rich draws that. An empty
    # column but the last has no room for its text at all, which Rich draws apart too.
    if sum(widths) > options.max_width - (count + 1) or any(
        width - pad < 1 for width, pad in zip(widths, pads, strict=True)
    ):
        return None

    get_style = console.get_style
    null = Style.null()
    pad_style = get_style("none")  # ``Padding``'s style: the cells' padding
    border = get_style("markdown.table.border") + get_style("")  # table style + border style
    row_styles = (
        get_style(get_style("table.header") + get_style("")) + null,  # the header row's cells
        get_style(get_style("")) + get_style(null),  # a body row's cells
    )
    # A header cell's text is stylized with "markdown.table.header"; ``Text.render`` adds its
    # style to the text's own ("") for the text, and leaves the padding in the text's own.
    text_base = get_style("", default=null)
    heading = Style.combine((text_base, get_style("markdown.table.header", default=null)))
    simple = box.SIMPLE.substitute(options, safe=console.safe_box)
    column_options: list[ConsoleOptions | None] = [None] * count

    new_line = Segment.line()
    out = [Segment(simple.get_top(widths), border), new_line]
    last_row = len(grid) - 1
    for index, cells in enumerate(grid):
        if index == 0:
            left, right, between = simple.head_left, simple.head_right, simple.head_vertical
        elif index == last_row:
            left, right, between = simple.foot_left, simple.foot_right, simple.foot_vertical
        else:
            left, right, between = simple.mid_left, simple.mid_right, simple.mid_vertical
        # A blank divider takes the row's background (a null style's here), then the border's.
        divider = Segment(between, border if between.strip() else null.background_style + border)
        cell_style = row_styles[index > 0]
        out.append(Segment(left, border))
        for i, text in enumerate(cells):
            plain = text.plain
            width = widths[i] - pads[i]
            justify = text.justify
            if (
                not text.spans
                and justify in ("default", "left", "center", "right")
                and plain.isascii()
                and plain.isprintable()
                and plain == plain.strip()
            ):
                # ``Text.wrap`` at a width the text fits: no break, and justified by padding
                # the text ("default" leaves it, then ``render_lines`` pads it in ``Padding``'s
                # style).
                room = width - len(plain)
                lead = room // 2 if justify == "center" else room if justify == "right" else 0
                trail = room - lead if justify in ("left", "center") else 0
                segments = (
                    [
                        *([Segment(" " * lead, text_base)] if lead else ()),
                        Segment(plain, heading),
                        *([Segment(" " * trail, text_base)] if trail else ()),
                    ]
                    if index == 0 and plain
                    else [Segment(" " * lead + plain + " " * trail)]
                )
                if justify == "default" and room:
                    segments.append(Segment(" " * room, pad_style))
            else:
                # Drawn by Rich's ``Text``, at the width and with the options ``Padding`` draws
                # it with inside the table's cell.
                drawn = text
                if index == 0:
                    drawn = text.copy()
                    drawn.stylize("markdown.table.header")
                options_i = column_options[i]
                if options_i is None:
                    options_i = column_options[i] = options.update(
                        width=width,
                        justify="left",
                        no_wrap=False,
                        overflow="ellipsis",
                        height=None,
                        highlight=False,
                    )
                lines = console.render_lines(drawn, options_i, style=pad_style, pad=True)
                if len(lines) != 1:
                    return None
                segments = lines[0]
            if pads[i]:
                segments.append(Segment(" " * pads[i], pad_style))
            if cell_style:
                segments = list(Segment.apply_style(segments, cell_style))
            out += segments
            out.append(divider if i < count - 1 else Segment(right, border))
        out.append(new_line)
        if index == 0:
            out += [Segment(simple.get_row(widths, "head", edge=True), border), new_line]
    out += [Segment(simple.get_bottom(widths), border), new_line]
    return out


def code_fits(code: str, width: int) -> bool:
    """Whether every line of ``code`` fits ``width`` cells (tabs at 4, as ``Syntax`` expands
    them). Then Rich's ``Syntax`` draws the same lines without ``word_wrap``, in one render of
    the code instead of one per line: a 9-line block took 2.5 ms, and takes 1.5
    (``test_code_that_fits_is_drawn_as_word_wrap_draws_it`` holds the two equal)."""
    from rich.cells import cell_len

    return all(
        (len(line) if line.isascii() else cell_len(line)) <= width
        for line in code.expandtabs(4).split("\n")
    )


@cache
def lexer_for(language: str) -> Any:
    """A Pygments lexer for ``language``, made once: Rich looks one up by name for every code
    block it draws (a search of Pygments' tables, milliseconds each), and an open fence is
    drawn again every few lines. An unknown name is passed on for Rich's plain fallback."""
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=True, tabsize=4)
    except ClassNotFound:
        return language


# Code drawn by ``FastCode``: printable ASCII, tabs and line ends. Anything else (wide or
# zero-width characters, control codes Rich strips or counts as zero cells, carriage returns
# Pygments rewrites) is left to Rich's ``Syntax``.
_PLAIN_CODE = re.compile(r"[\n\t -~]*")


class _CodeTheme:
    """A syntax theme's styles as ``Syntax`` applies them, kept per theme name: ``Syntax``
    builds its theme again for every block, and combines every token's style twice (once in
    its ``Text``, once in its ``Padding``) for every render."""

    def __init__(self, name: str) -> None:
        from pygments.token import Comment
        from rich.syntax import Syntax

        self.theme = Syntax.get_theme(name)
        # ``Syntax._get_base_style`` without a ``background_color``.
        self.base = self.theme.get_background_style() + Style()
        # Code on a transparent background takes another path through ``Syntax`` (not padded
        # to its width); such a theme is left to it.
        simple = self.base + self.theme.get_style_for_token(Comment) + Style(dim=True) + Style()
        self.opaque = not (self.base.transparent_background or simple.transparent_background)
        # A line's blank end: the line's style in the ``Text``, the padding's over it.
        self.blank = self.base + self.base
        self.styles: dict[Any, Style | None] = {}

    def style(self, token_type: Any) -> Style | None:
        """What a token of ``token_type`` is drawn in: the line's style, the token's over it,
        then the padding's style under both. None for a token without a style (a type the
        theme does not know, as YAML's scalars): Rich's ``Text`` gives it no span, so its text
        is drawn in the line's style, in one segment with the text around it that has none."""
        try:
            return self.styles[token_type]
        except KeyError:
            token = self.theme.get_style_for_token(token_type)
            style = self.base + (self.base + token) if token else None
            self.styles[token_type] = style
            return style


@cache
def _code_theme(name: str) -> _CodeTheme:
    """The theme called ``name``, made once."""
    return _CodeTheme(name)


class FastCode:
    """Code as Rich's ``Syntax`` draws it, with ``padding``: segment for segment, the same
    text and styles. Code whose every line fits (``code_fits``) is drawn here from Pygments'
    tokens, without ``word_wrap``: ``Syntax`` then builds a ``Text``, splits it into lines,
    pads them and renders them again inside a ``Padding``. A fence of 8 lines of Python at 48
    columns took 1.33 ms, 0.40 of it in Pygments, and takes 0.54 (Pygments' 0.40 is most of
    it now). Code that does not fit is drawn by ``Syntax`` with ``word_wrap``, and code this
    cannot draw exactly (see ``_lines``) by ``Syntax`` without it."""

    def __init__(self, code: str, lexer: Any, theme: str, padding: PaddingDimensions) -> None:
        from rich.padding import Padding

        self.code = code
        self.lexer = lexer
        self.theme = theme
        self.padding = Padding.unpack(padding)

    def syntax(self, word_wrap: bool) -> Syntax:
        """Rich's ``Syntax`` for this code: what it is drawn by when not drawn here."""
        from rich.syntax import Syntax

        return Syntax(
            self.code, self.lexer, theme=self.theme, word_wrap=word_wrap, padding=self.padding
        )

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return self.syntax(False).__rich_measure__(console, options)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # A list, not a generator: Rich iterates either, and this is one generator fewer
        # for every segment.
        top, right, bottom, left = self.padding
        width = options.max_width
        code_width = width - left - right
        if not code_fits(self.code, code_width):
            return [self.syntax(True)]
        lines = self._lines(code_width)
        if lines is None:
            return [self.syntax(False)]
        # As ``Padding`` yields them, around the lines ``Syntax`` draws.
        style = _code_theme(self.theme).base
        blank = [Segment(" " * width + "\n", style)]
        pad_left = [Segment(" " * left, style)] if left else []
        end = [Segment(" " * right, style), Segment.line()] if right else [Segment.line()]
        out = blank * top
        for line in lines:
            out += pad_left
            out += line
            out += end
        out += blank * bottom
        return out

    def _lines(self, code_width: int) -> list[list[Segment]] | None:
        """The code's lines, each ``code_width`` cells wide, as ``Syntax`` draws them without
        ``word_wrap``. Its ``Text`` gives every token with a style a span, and every line a span
        of the line's style; a segment ends wherever a span does. So a line is a segment per
        piece of a token with a style, in the token's style, and the text between them that has
        none, with the line's blank end, in the line's. None where that is not certain:
        characters other than printable ASCII, tokens that are not the code, a transparent
        theme, a line wider than ``code_width``."""
        code = self.code
        theme = _code_theme(self.theme)
        if code_width < 1 or not theme.opaque or not _PLAIN_CODE.fullmatch(code):
            return None
        lexer = self.lexer
        if isinstance(lexer, str):  # Rich looks the name up, and lexes as plain text if unknown
            lexer = lexer_for(lexer)
            if isinstance(lexer, str):
                lexer = lexer_for("text")
        # ``Syntax._process_code``: a line end is added and tabs are expanded before lexing,
        # and the added line end is taken off the highlighted text.
        ends_on_nl = code.endswith("\n")
        processed = (code if ends_on_nl else code + "\n").expandtabs(4)
        styles = theme.styles
        blank = theme.blank
        lines: list[list[Segment]] = []
        line: list[Segment] = []
        append = line.append
        length = 0
        plain = ""  # text without a style since the last segment
        seen = 0
        for token_type, value in lexer.get_tokens(processed):
            if not processed.startswith(value, seen):
                return None
            seen += len(value)
            try:
                style = styles[token_type]
            except KeyError:
                style = theme.style(token_type)
            # Most tokens are a piece of one line: split only those that are not.
            for i, piece in enumerate(value.split("\n") if "\n" in value else (value,)):
                if i:  # the line ends
                    if length > code_width:
                        return None
                    plain += " " * (code_width - length)
                    if plain:
                        append(Segment(plain, blank))
                    lines.append(line)
                    line, length, plain = [], 0, ""
                    append = line.append
                if piece:
                    length += len(piece)
                    if style is None:
                        plain += piece
                    else:
                        if plain:
                            append(Segment(plain, blank))
                            plain = ""
                        append(Segment(piece, style))
        if seen != len(processed) or line or plain:
            return None
        if ends_on_nl:  # the text keeps its line end, and so a blank last line
            lines.append([Segment(" " * code_width, blank)])
        return lines


def preload() -> None:
    """Import and build what drawing a reply needs (markdown-it, Rich's markdown and syntax,
    Pygments' Python lexer, both code themes: ~90 ms), so that the first reply does not wait
    for it. Run in a thread once the first frame is out: the imports are deferred to keep
    start-up fast, and without this the first code block of the first reply stalled the frames
    for as long (render lag at 2 × 200 tok/s peaked at 170-280 ms a second into the stream)."""
    markdown_class()
    lexer_for("python")
    for dark in (True, False):
        _code_theme(code_theme(dark))


def render_markdown(source: str, dark: bool) -> Trimmed:
    """One piece of markdown as Rich draws it, with code coloured for the app's mode."""
    return Trimmed(markdown_class()(source, code_theme(dark)))


def render_paragraph(source: str, dark: bool) -> RenderableType:
    """One paragraph as Rich draws it: no blank lines around it to trim, so it is drawn once
    (``Trimmed`` draws twice: 40% of a long paragraph's cost)."""
    return cast("RenderableType", markdown_class()(source, code_theme(dark)))


def block_parser() -> MarkdownIt:
    """The block rules Rich's ``Markdown`` parses with, without the inline pass: only where
    blocks start is needed here (inline parsing was a sixth of a streaming frame)."""
    from markdown_it import MarkdownIt

    return MarkdownIt().enable("strikethrough").enable("table").disable(["inline", "text_join"])


def block_starts(tokens: list[Token]) -> list[tuple[int, Token]]:
    """Line numbers where top-level blocks start, with each block's first token."""
    out: list[tuple[int, Token]] = []
    for t in tokens:
        if (
            t.level == 0
            and t.map is not None
            and t.nesting >= 0
            and t.type in _BLOCK_OPEN
            and (not out or out[-1][0] != t.map[0])
        ):
            out.append((t.map[0], t))
    return out


def split_blocks(text: str, md: MarkdownIt) -> list[str]:
    """``text`` cut into top-level blocks (each keeps its trailing blank lines)."""
    lines = text.splitlines(keepends=True)
    bounds = [s for s, _ in block_starts(md.parse(text))] or [0]
    bounds[0] = 0
    blocks = ["".join(lines[a:b]) for a, b in zip(bounds, [*bounds[1:], len(lines)], strict=True)]
    return [b for b in blocks if b.strip()]


def estimate_rows(source: str, width: int) -> int:
    """About the rows ``source`` takes drawn ``width`` columns wide, without drawing it: its
    lines, folded at the width (exact for plain text; near for the rest)."""
    rows = 0
    for line in source.rstrip("\n").split("\n"):
        rows += max(1, -(-len(line) // max(1, width - 2)))
    return rows


class StreamingMarkdown(OneLayout, Widget):
    """A reply's markdown as cached lines; ``append`` while it streams, ``finish`` at the end."""

    DEFAULT_CSS = """
    StreamingMarkdown {
        height: auto;
    }
    """

    fps: ClassVar[float] = 20.0

    def __init__(
        self,
        source: str = "",
        *,
        id: str | None = None,
        classes: str | None = None,
        finished: bool = False,
        driven: bool = False,
    ) -> None:
        super().__init__(id=id, classes=classes)
        # Driven: the screen calls ``sync`` on its own frame clock, so that every pane's new
        # text lands in the same frame (one redraw, not one per pane).
        self.driven = driven
        # Server text, so made inert on the way in: a reply cannot steer the terminal.
        self._parts: list[str] = [inert(source)] if source else []
        self._md = block_parser()
        self._finished = finished
        self._kept = False  # reserved lines kept after the end, until the figures (``finish``)
        self._ahead = GROW_MIN  # the lines the last step reserved ahead (``_step``)
        self._grow_max = GROW_MAX  # ... at most (``sync``)
        self._deferred = False  # out of sight when its list opened: sized, drawn when reached
        self._scheduled = False
        self._synced_len = -1
        self._closed_upto = 0  # characters of source that are closed blocks
        self._closed_blocks = _Closed()  # closed blocks: sources, lines (or estimated heights)
        self._open = ""  # the open block's source
        self._open_first: Token | None = None  # its first token, from the last block parse
        self._reserved = 0  # lines taken while streaming (``_grow``)
        self._tail = False  # the text is drawn at the bottom of the lines taken (``TAIL_VIEWS``)
        self._gap = 0  # ... above this many blank rows, in view (``TAIL_JUMP``)
        self.jumps = 0  # jumps of the text at its tail (tests)
        self._hold_until = 0.0  # no frame before this (``_now``): see OPEN_DUTY
        self._last_step: tuple[float, int] | None = None  # when it last grew, and to what
        self._open_lines: list[Strip] = []
        # What the open block's lines were drawn from, when drawn as a closed block would be
        # (its source and the width): ``_drawn_open``.
        self._open_drawn: tuple[str, int] | None = None
        self._fence: _OpenFence | None = None
        self._paragraph = _OpenParagraph()
        self._width = 0
        self._dark: bool | None = None
        self.syncs = 0
        self.block_parses = 0  # parses to find where blocks start (tests of the skip)
        self.rendered_blocks = 0  # closed blocks rendered (tests of the cost bound)
        self.full_renders = 0  # whole-reply re-renders (new width or theme)
        self.sized_blocks = 0  # closed blocks sized without being drawn (tests of the skip)
        self.late_draws = 0  # sized blocks first drawn when a frame showed them (not expected)
        self.reused_blocks = 0  # closed blocks that took the open block's last lines
        self._settling = False  # drawing sized blocks after the reply ended (``_settle``)
        self._follower_node: Any = False  # not looked up yet
        self.rendered_lines = 0  # lines Rich has drawn for this widget (the cost of a frame)
        self._style: Style | None = None  # the widget's text style, until styles change
        self._options: tuple[int, ConsoleOptions] | None = None
        self.rows_per_s = 0.0  # how fast the text grows, in rows (``views_per_s``)
        self._rows_at: tuple[float, int] | None = None

    @property
    def _blocks(self) -> list[str]:
        return self._closed_blocks.sources

    @property
    def _closed_lines(self) -> list[Strip]:
        """Every closed block's lines, each drawn (those only sized so far are drawn now)."""
        for i in self._closed_blocks.pending_indexes():
            self._draw_block(i)
        return self._closed_blocks.flat()

    @property
    def pending(self) -> int:
        """Closed blocks sized but not drawn yet."""
        return self._closed_blocks.pending

    # --- feeding -------------------------------------------------------------------------

    @property
    def source(self) -> str:
        """Everything fed so far, as drawn (control characters made visible by ``inert``)."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def on_mount(self) -> None:
        # The app tells every view of a theme change (``theme_changed``): a watcher on the
        # app's ``theme`` per view stayed in the app's list after the view was removed,
        # holding every reply's lines (soak: +40 MB a hundred replies).
        # Nothing is drawn before the first layout gives the width: drawing at a guessed
        # width and again at the real one doubled the cost of opening a long conversation.
        self.refresh(layout=True)

    def append(self, text: str) -> None:
        """Add text; it is drawn within 1/fps seconds."""
        if not text:
            return
        self._parts.append(inert(text))
        if not self._scheduled and self.is_mounted and not self.driven:
            self._scheduled = True
            self.set_timer(1.0 / self.fps, self._scheduled_sync)

    def _scheduled_sync(self) -> None:
        self._scheduled = False
        self._sync()

    def sync(self, busy: bool = False) -> bool:
        """Draw what arrived since the last frame (the screen's frame clock calls this); True
        when the reply took a step of height (the screen lays out again). ``busy``: the UI is
        busy drawing, so a step may reserve up to ``GROW_MAX_BUSY`` lines."""
        self._grow_max = GROW_MAX_BUSY if busy else GROW_MAX
        if not self.is_mounted:
            return False
        stepped = self._sync()
        self._count_rows()
        return stepped

    def _count_rows(self) -> None:
        """Follow how fast the text grows (``rows_per_s``), at each frame."""
        now, lines = _now(), self._text_lines
        if self._rows_at is not None:
            wall = now - self._rows_at[0]
            if wall <= 0:
                return
            rate = (lines - self._rows_at[1]) / wall
            self.rows_per_s += (1 - math.exp(-wall / SCROLL_TAU_S)) * (rate - self.rows_per_s)
        self._rows_at = (now, lines)

    @property
    def views_per_s(self) -> float:
        """How fast the text moves through its list's view, in views a second (0 outside a
        list): what the frame pacer reads to draw text that flies by less often."""
        rows = self._view_rows()
        return self.rows_per_s / rows if rows > 0 else 0.0

    def finish(self, keep_height: bool = False) -> None:
        """The stream is over: the last block becomes a closed one.

        ``keep_height`` keeps the lines reserved below the text (``_grow``) until a plain
        ``finish``: the last text then goes out in a frame that redraws the lines it changed,
        not in a layout of the whole screen after every pane's height changed (at the end of a
        race of four fast panes that layout was 30-40 ms, before any last token was shown)."""
        height = self._height()
        self._finished = True
        self._kept = keep_height
        if self.is_mounted:
            self._sync()
            if self._tail and not keep_height:
                # Top-aligned again: every row moved (the list, following, keeps its end in
                # view, so the text stays where it is on screen).
                self.leave_tail()
            elif self._height() != height:  # (``_sync`` compares heights from here on)
                self._relayout()  # (``_sync`` asked for the lines it changed)
            self._start_settling()

    def _relayout(self) -> None:
        """Ask for a layout, restyling no line. A plain ``refresh(layout=True)`` empties
        Textual's styles cache, every line the reply has shown: freeing them took 5 ms of a
        reply's last frame at 8,000 tokens, and every line in sight was styled again."""
        self.refresh(Region(0, 0, 0, 0), layout=True)

    def defer(self) -> None:
        """This reply opens out of sight (an older turn of a conversation that opens at its
        end): its blocks are sized, not drawn, and drawn as the list scrolls to them
        (``reveal``), as a fast reply's unseen blocks are. Opening a 500-message conversation
        drew its 30 newest turns whole before the first frame (about 200 ms of markdown, where
        one screenful is seen). Call before the view's first layout."""
        if self._synced_len < 0:
            self._deferred = True

    def _start_settling(self) -> None:
        if self._deferred:
            return  # drawn when scrolled to: nothing is drawn in the background
        if self._finished and self._closed_blocks.pending and not self._settling:
            self._settling = True
            self.set_timer(1.0 / self.fps, self._settle)

    # --- rendering -----------------------------------------------------------------------

    def _render_strips(self, renderable: RenderableType, width: int) -> list[Strip]:
        console = self.app.console
        if self._options is None or self._options[0] != width:
            self._options = (width, console.options.update_width(width).update(height=None))
        options = self._options[1]
        if self._style is None:
            # Applied once here, so a frame only copies lines. Textual computes it by walking
            # every ancestor's styles, a tenth of a frame's render: kept until styles change.
            self._style = self.rich_style
        style = self._style
        if isinstance(renderable, Trimmed):
            # What ``Trimmed`` yields, drawn once: Rich's lines, padded, without the blank
            # ones at either end (through ``Trimmed`` every line was split and padded twice,
            # a third of a block's cost).
            lines = console.render_lines(renderable.renderable, options, pad=True)
            start, end = 0, len(lines)
            while start < end and not "".join(seg.text for seg in lines[start]).strip():
                start += 1
            while end > start and not "".join(seg.text for seg in lines[end - 1]).strip():
                end -= 1
            lines = lines[start:end]
        else:
            lines = console.render_lines(renderable, options, pad=True)
        self.rendered_lines += len(lines)
        return [Strip(Segment.apply_style(line, style=style), width) for line in lines]

    def _render_block(self, source: str, width: int) -> list[Strip]:
        self.rendered_blocks += 1
        if len(source) > LONG_PARAGRAPH_CHARS:
            starts = block_starts(self._md.parse(source))
            if len(starts) == 1 and starts[0][1].type == "paragraph_open":
                lines = _OpenParagraph().whole(0, source, self, width)
                return [*lines, Strip.blank(width, self._style)] if lines else []
        lines = self._render_strips(render_markdown(source.rstrip("\n"), bool(self._dark)), width)
        return [*lines, Strip.blank(width, self._style)] if lines else []

    def _width_now(self) -> int:
        """The width lines are rendered at: the content region (inside any padding)."""
        return max(1, self.content_region.width or self._width or 80)

    def notify_style_update(self) -> None:
        # Textual calls this when this widget's or an ancestor's rules change (classes,
        # pseudo-classes, theme): the text style is taken again.
        super().notify_style_update()
        self._style = None

    def theme_changed(self) -> None:
        """Code colours follow the theme: draw everything again."""
        self._rerender_all()

    def _rerender_all(self, width: int | None = None) -> None:
        """New width or theme: draw every block again (the only O(reply) path; while the
        list follows a streaming reply, only what is in sight is drawn, the rest sized)."""
        width = width or self._width_now()
        if self._deferred and self._closed_blocks.pending < len(self._closed_blocks.sources):
            self._deferred = False  # scrolled to before: drawn again whole, as any reply
        self.full_renders += 1
        self._style = self._options = None
        self._width = width
        self._dark = self.app.current_theme.dark
        if self._lazy():
            # Only what is in sight is drawn again; the rest is sized until it comes into view.
            for i, block in enumerate(self._closed_blocks.sources):
                self._closed_blocks.set(i, None, self._estimate(block, width))
            self._draw_in_sight()
        else:
            for i, block in enumerate(self._closed_blocks.sources):
                self._closed_blocks.set(i, self._render_block(block, width))
        if self._fence is not None:
            self._fence.reset()
        self._paragraph.reset()
        self._render_open(width)
        self.refresh(layout=True)
        self._start_settling()

    def _sync(self, refresh: bool = True) -> bool:
        """Draw the text that arrived; True when the reply's height changed (a layout)."""
        source = self.source
        behind = self._paragraph.behind
        if len(source) == self._synced_len and not (self._finished and self._open) and not behind:
            return False
        if self._hold_until and not self._finished and _now() < self._hold_until:
            if behind and not self._scheduled and self.is_mounted:
                self._scheduled = True
                self.set_timer(self._hold_until - _now(), self._scheduled_sync)
            return False  # the last frame's open block was costly: this one waits (OPEN_DUTY)
        if not self._width:
            if not self.content_region.width:
                self.refresh(layout=True)  # drawn at the first layout (get_content_height)
                return True
            self._width = self._width_now()
            self._dark = self.app.current_theme.dark
        self._synced_len = len(source)
        self.syncs += 1
        height = self._height()
        drawn = self._text_lines  # not the lines reserved below
        tail, shift = self._tail, self._shift()
        changed_from = self._closed_blocks.height  # lines above this one stay as they are
        text = source[self._closed_upto :]
        open_first: Token | None = None
        closed_blocks: list[str] | None = None
        # A long paragraph still being drawn in frame-sized steps finishes drawing first.
        finishing = self._finished and not (
            behind and self._open_first is not None and self._open_first.type == "paragraph_open"
        )
        if finishing:
            closing, open_text = text, ""
        elif self._same_blocks(text):
            # Text added to a line whose block is already settled: no new block can start.
            closing, open_text, open_first = "", text, self._open_first
        else:
            self.block_parses += 1
            tokens = self._md.parse(text)
            starts = block_starts(tokens)
            if len(starts) >= 2:
                lines = text.splitlines(keepends=True)
                bounds = [0, *(start for start, _ in starts[1:])]
                # The closed blocks, cut where this parse found them (no second parse).
                closed_blocks = ["".join(lines[a:b]) for a, b in pairwise(bounds)]
                closed_blocks = [b for b in closed_blocks if b.strip()]
                closing = "".join(lines[: starts[-1][0]])
                open_text = text[len(closing) :]
            else:
                closing, open_text = "", text
            open_first = starts[-1][1] if starts else None
        self._open_first = open_first
        lazy = False
        if closing:
            key = self._closed_upto
            self._closed_upto += len(closing)
            lazy = self._lazy()
            if closed_blocks is None:
                closed_blocks = split_blocks(closing, self._md)
            for i, block in enumerate(closed_blocks):
                rendered = (
                    (self._closed_paragraph(key, block) or self._drawn_open(block))
                    if i == 0
                    else []
                )
                if rendered or not lazy:
                    rendered = rendered or self._render_block(block, self._width)
                    self._closed_blocks.append(block, rendered)
                else:
                    # Sized now; drawn below if it is still in sight once this frame's text
                    # is in (at thousands of tokens a second most blocks are not).
                    self.sized_blocks += 1
                    self._closed_blocks.append(block, None, self._estimate(block, self._width))
            self._fence = None
        if open_text != self._open or closing or behind:
            before = self._open_lines
            self._open = open_text
            started = _perf()
            self._render_open(self._width, open_first)
            cost = _perf() - started
            # A big open block (a long table or list is drawn whole until it closes) is
            # drawn at most OPEN_DUTY of the time, so it cannot take the frame rate down.
            self._hold_until = _now() + cost * (1 / OPEN_DUTY - 1) if cost > OPEN_BUDGET_S else 0
            if not closing:
                # The open block's top lines are often the same strips (a frozen paragraph, a
                # fence's finished chunks): only lines from the first change down are redrawn.
                changed_from += _common_prefix(before, self._open_lines)
        if lazy:
            self._draw_in_sight()
        self._grow()
        jumped = self._tail and tail and self._scroll_tail(self._text_lines - drawn)
        new_height = self._height()
        if self._paragraph.behind and not self._scheduled and self.is_mounted:
            self._scheduled = True  # the rest of a long paragraph is drawn in the next frames
            self.set_timer(1.0 / self.fps, self._scheduled_sync)
        if not refresh:
            return new_height != height
        shown = self._text_lines + self._gap  # (``_fill_rows`` ≤ the view's rows: read last)
        if self._tail and shown < self._view_rows() and shown < self._fill_rows():
            self.leave_tail()  # the view grew past the text (a larger window): rows above it
        if self._tail and (jumped or not tail or new_height != height or self._shift() != shift):
            # Every row in view moved (a jump, a step): each is drawn again (from the lines
            # kept: ``render_lines``).
            rows = self._view_rows() or new_height
            width = self.size.width or self._width
            self.refresh(
                Region(0, max(0, new_height - rows), width, min(rows, new_height) or 1),
                layout=new_height != height,
            )
            return new_height != height
        # Only the lines from the old open block down to the end of the text, old or new,
        # changed: redraw just those. The lines reserved below the text stay blank (each frame
        # restyled them all: a third of the lines a race restyled). At the tail, between two
        # jumps, the text's rows are ``shift`` rows down, and none of them moved. A new height
        # also asks for a layout; ``_size_updated`` keeps the other lines' styling.
        top = shift + changed_from if self._tail else changed_from
        width = self.size.width or self._width
        end = max(drawn, self._text_lines)
        changed = Region(0, top, width, max(1, end - changed_from))
        self.refresh(changed, layout=new_height != height)
        return new_height != height

    def _drawn_open(self, block: str) -> list[Strip]:
        """The block that just closed, from the lines the open block's last frame drew, when
        that frame drew its whole text the way a closed block is drawn (one Rich render of
        the same source at the same width: exact). A table or list used to be drawn again
        as it closed; at 100 tok/s nearly every block was. Empty when that is not so."""
        lines = self._open_lines
        key = fence_key(block, closed=True) if block.startswith(("```", "~~~")) else None
        if self._open_drawn != (key or block.rstrip("\n"), self._width) or not lines:
            return []
        if self._style is None:
            return []  # the styles changed since: drawn again with the new ones
        if not lines[0].text.strip() or not lines[-1].text.strip():
            return []  # ``Trimmed`` would cut a blank end line: drawn again, as before
        self.reused_blocks += 1
        return [*lines, Strip.blank(self._width, self._style)]

    def _closed_paragraph(self, key: int, block: str) -> list[Strip]:
        """A long paragraph that just closed, from its frozen lines (``_OpenParagraph``); empty
        when it was not one (a paragraph can still become a heading: ``text`` + ``===``)."""
        if not self._paragraph.active(key):
            return []
        starts = block_starts(self._md.parse(block))
        if not starts or starts[0][1].type != "paragraph_open" or len(starts) > 1:
            return []
        lines = self._paragraph.closed_lines(key, block, self, self._width)
        if not lines:
            return []
        self.rendered_blocks += 1
        return [*lines, Strip.blank(self._width, self._style)]

    # --- drawing what is in sight --------------------------------------------------------

    def _follower(self) -> Any:
        """The message list this view is in (it says whether it follows the newest text);
        None elsewhere. Looked up once: a reply stays in its list."""
        if self._follower_node is False:
            from tui.widgets.message_list import MessageList

            self._follower_node = next(
                (n for n in self.ancestors if isinstance(n, MessageList)), None
            )
        return self._follower_node

    def _lazy(self) -> bool:
        """Whether closed blocks may be sized without being drawn: a reply that streamed (or
        streams) at the bottom of a list that follows it, so that only its last screenful
        can be seen; or one that opened out of sight (``defer``)."""
        if self._deferred:
            return True
        if not self.driven:
            return False
        follower = self._follower()
        return follower is not None and bool(follower.pinned_to_end)

    def _keep_rows(self) -> int:
        """How many of the last rows can be in sight while the list follows: its viewport's
        height (a screen's before the list is laid out)."""
        return max(1, int((self._view_rows() or self.app.size.height) * REVEAL_SCREENS))

    def _estimate(self, source: str, width: int) -> int:
        """The lines a closed block will take, without drawing it: its source lines, folded at
        the width, and the blank line after it (exact for plain text; near for the rest)."""
        return estimate_rows(source, width) + 1

    def _draw_block(self, i: int) -> int:
        """Draw closed block ``i`` (sized until now); returns how its height changed."""
        before = self._closed_blocks.heights[i]
        self._closed_blocks.set(i, self._render_block(self._closed_blocks.sources[i], self._width))
        return self._closed_blocks.heights[i] - before

    def _draw_in_sight(self) -> None:
        """Draw the sized blocks among the last screenful of rows (all below is drawn)."""
        closed = self._closed_blocks
        if not closed.pending or self._deferred:
            return  # (a deferred view is wholly out of sight)
        keep = self._keep_rows()
        rows = len(self._open_lines)
        for i in range(len(closed.sources) - 1, -1, -1):
            if rows >= keep:
                break
            if closed.lines[i] is None:
                self._draw_block(i)
            rows += closed.heights[i]

    def reveal(self, top: int, bottom: int, anchor: int) -> int:
        """Draw the sized blocks among rows ``top`` to ``bottom`` (and a screen either side),
        this view's rows about to be in sight; returns how far the row ``anchor`` moved (the
        list scrolls by as much, so that rows on screen stay where they are). Rows already
        drawn at the bottom are the anchor when they are in sight."""
        if not self._closed_blocks.pending:
            return 0
        # In tail mode, in text rows; a block drawn above moves the text up, and the rows above
        # it (``_shift``) shrink by as much: the anchor's row moves by the difference.
        shift = self._shift()
        moved = self._reveal_text_rows(top - shift, bottom - shift, anchor - shift)
        return moved + self._shift() - shift

    def _reveal_text_rows(self, top: int, bottom: int, anchor: int) -> int:
        closed = self._closed_blocks
        margin = self._keep_rows()
        exact_from = closed.exact_from()
        if top <= exact_from < bottom:
            anchor = exact_from
        lo, hi = top - margin, bottom + margin
        moved = 0
        drawn = False
        for i in closed.pending_indexes():
            start = closed.tops[i]
            end = start + closed.heights[i]
            if end <= lo or start >= hi:
                continue
            delta = self._draw_block(i)
            drawn = True
            if end <= anchor:
                moved += delta
        if drawn:
            self.refresh(layout=True)
        return moved

    def _settle(self) -> None:
        """After the reply ended, draw its sized blocks a few at a time, nearest the end first,
        while the list follows (the anchor keeps the rows on screen still)."""
        closed = self._closed_blocks
        if not closed.pending or not self.is_mounted:
            self._settling = False
            return
        follower = self._follower()
        if follower is None or not follower.pinned_to_end:
            self._settling = False  # scrolling reveals them from here (``reveal``)
            return
        if getattr(self.screen, "streaming", False):
            # Another reply on this screen still streams (or this one's figures are not out
            # yet): each step lays the screen out again, 25-40 ms with four panes, and that
            # held a pane's last text off the screen at the end of a race. Later, then.
            self.set_timer(1.0 / self.fps, self._settle)
            return
        started = _perf()
        for i in reversed(closed.pending_indexes()):
            self._draw_block(i)
            if _perf() - started > SETTLE_STEP_S:
                break
        self.refresh(layout=True)
        self.set_timer(1.0 / self.fps, self._settle)

    def _same_blocks(self, tail: str) -> bool:
        """True when ``tail`` is the open block plus text on its last line that cannot change
        where blocks start: no line break, and that line already long enough that its start
        (an indent, a list or quote marker, a heading, a fence and its info string) is fixed.
        A block parse of a long open paragraph was a tenth of a frame."""
        old = self._open
        if not old or self._open_first is None or not tail.startswith(old):
            return False
        if "\n" in tail[len(old) :] or self._open_first.type == "html_block":
            return False
        last_line = old[old.rfind("\n") + 1 :]
        if self._open_first.type == "fence" and (
            "\n" not in old or last_line.lstrip().startswith(("```", "~~~"))
        ):
            return False  # the info string (the language) or a closing line still arriving
        return len(last_line) >= SETTLED_LINE_CHARS and not last_line.isspace()

    def _render_open(self, width: int, first: Token | bool | None = False) -> None:
        """Draw the open block; ``first`` is its first token when the caller parsed it."""
        text = self._open
        self._open_drawn = None
        if not text.strip():
            self._open_lines = []
            self._fence = None
            return
        if first is False:
            starts = block_starts(self._md.parse(text))
            first = starts[0][1] if starts else None
        token = None if isinstance(first, bool) else first
        kind = token.type if token is not None else None
        if token is not None and kind == "fence":
            language = (token.info or "").split(" ")[0] or "text"
            if self._fence is None or self._fence.language != language:
                self._fence = _OpenFence(language)  # ``py`` at one frame, ``python`` the next
            self._open_lines = self._fence.lines(text, self, width)
            if self._fence.one_chunk:
                # Highlighted whole, as a closed fence is: kept when it closes (``_drawn_open``)
                # if nothing but its closing line comes after.
                key = fence_key(text, closed=False)
                self._open_drawn = (key, width) if key else None
        elif kind == "paragraph_open":
            self._fence = None
            paragraph = self._paragraph
            self._open_lines = paragraph.lines(self._closed_upto, text, self, width)
            if not paragraph.frozen and not paragraph.behind:
                # One render of the whole paragraph, as a closed one (``_render_block``).
                self._open_drawn = (text.rstrip("\n"), width)
        else:
            self._fence = None
            self._paragraph.reset()
            lines = self._render_strips(render_markdown(text.rstrip("\n"), bool(self._dark)), width)
            self._open_lines = lines
            self._open_drawn = (text.rstrip("\n"), width)

    # --- the line API --------------------------------------------------------------------

    @property
    def _text_lines(self) -> int:
        """Lines the text takes: every block, closed and open (not the lines reserved)."""
        return self._closed_blocks.height + len(self._open_lines)

    def _height(self) -> int:
        """Lines taken on screen: while streaming, the text plus lines reserved below it.

        Every change of height moves everything below and scrolls the view: a full relayout
        and redraw of the pane. So a streaming reply grows in steps (``_grow``) and most
        frames redraw only the new text.
        """
        lines = self._text_lines
        if (self._finished and not self._kept) or not self.driven or not lines:
            return lines
        return max(lines, self._reserved)

    def _shift(self) -> int:
        """Rows above the text in tail mode (blank, out of view): row y shows text row y − this.
        Below the text are ``_gap`` blank rows (``TAIL_JUMP``)."""
        return max(0, self._height() - self._text_lines - self._gap) if self._tail else 0

    def _scroll_tail(self, grown: int) -> bool:
        """At the tail, the text grew ``grown`` rows into the blank ones below it: when they
        run out, it jumps up (``TAIL_JUMP``). True when it jumped (every row in view moved)."""
        jump = self._jump_rows(self._view_rows())
        limit = jump
        if self._gap > jump:
            # A view made shorter: at most a jump, or what keeps the text's first row at the
            # view's top (a tail taken before the text filled its view: ``_may_tail``). Read
            # only then: the regions it reads are looked up in the screen's map.
            limit = max(jump, self._fill_rows() - (self._text_lines - grown))
        self._gap = min(self._gap, limit) - grown
        if self._gap >= 0:
            return False
        # A frame that brings a jump's rows or more draws the view whole anyway: it ends with
        # the text's last row, as it did before jumps.
        self._gap = jump if grown < jump else 0
        self.jumps += 1
        return True

    @property
    def in_tail(self) -> bool:
        """Whether the text is drawn at the bottom of the lines taken (``TAIL_VIEWS``)."""
        return self._tail

    def _view_rows(self) -> int:
        """Rows of the list's view (0 outside a list)."""
        follower = self._follower()
        return follower.scrollable_content_region.height if follower is not None else 0

    def _may_tail(self, lines: int, rate: float) -> bool:
        """Tail mode is taken at a step while the UI is busy or the text grows a view in
        ``ROOM_FILL_S`` or less, the list follows this reply and the text already fills its
        view (so that the view shows text only, from the start). By rate too: a race's
        first second is busy before the frame pacer's average says so, and stepped every
        ``GROW_MAX`` rows (a layout of every pane, 5 times at 4 × 500 tok/s).

        In a pane whose turns still fit (top-aligned, ``MessageList._fits``), it is taken
        once the text fills the view less a jump, or will fill it within ``TAIL_SOON_S`` at
        its rate: the text's first row goes to the view's top, with the rest of the view
        blank below it (``_gap``), as after a jump. Taken only once the text overflowed, a
        race's start made two or three more steps (the rows left in the view, the overflow
        that scrolls the list, the bar it shows), each a layout of every pane: 40-80 ms with
        four panes at 4 × 500 tok/s, while the first markers waited."""
        if self._tail or self._finished or not self.driven:
            return self._tail
        follower = self._follower()
        rows = self._view_rows()
        fast = self._grow_max == GROW_MAX_BUSY or rate * ROOM_FILL_S >= rows
        if not (fast and follower is not None and rows):
            return False
        if follower.pinned_to_end:
            return lines >= rows
        fill = self._fill_rows()
        soon = max(self._jump_rows(rows), rate * TAIL_SOON_S)
        return bool(follower.follow and fill and fill - lines <= soon)

    def _jump_rows(self, rows: int) -> int:
        """Rows the text moves up by at a jump in a view of ``rows`` rows (``TAIL_JUMP``)."""
        return min(rows - 1, round(rows * TAIL_JUMP)) if rows > 1 else 0

    def _fill_rows(self) -> int:
        """Rows of the list's view this view's text shows at its tail: the view less the
        rows of its message below it (its live line). 0 when it is not placed yet."""
        follower = self._follower()
        if follower is None or not self.region.height:
            return 0
        below = self._rows_below(self._list_item(follower))
        return max(0, int(follower.scrollable_content_region.height) - below)

    def _list_item(self, follower: Widget) -> Widget:
        """The list's child this view is in (its message)."""
        item: Widget = self
        while isinstance(item.parent, Widget) and item.parent is not follower:
            item = item.parent
        return item

    def _rows_below(self, item: Widget) -> int:
        """Rows of its message ``item`` below this view (its live line), as laid out."""
        return max(0, item.region.bottom - self.region.bottom)

    def leave_tail(self, view_top: int | None = None) -> int:
        """Leave tail mode (the user scrolls away, or the reply ends): the text goes back to
        the top of the lines taken, which shrink to it. Returns how many rows the text moved
        up, as seen from ``view_top`` (the first row in view, in this view's rows; None: the
        view's end): the list scrolls back by as much, so that the rows in view stay put."""
        if not self._tail:
            return 0
        shift = self._shift()
        self._tail = False
        self._gap = 0
        self._reserved = self._text_lines
        self.refresh(layout=True)  # every row moved: the styles cache is emptied
        if view_top is None:
            return shift
        return min(shift, max(0, view_top))

    def _grow(self) -> None:
        """When the text outgrows the reserved lines, reserve what the next ``GROW_AHEAD_S``
        seconds will need at the rate it grew since the last step (``GROW_MIN`` to
        ``GROW_MAX`` lines). Prose at 100 tok/s grows 5 lines a second and steps every 4
        lines, as before; code, lists and tables grow 10-40 lines a second, and stepped
        every 4 lines they relayouted the screen 9-11 times a second with two panes (a third
        of the UI's CPU); the blank lines reserved are filled within about half a second."""
        lines = self._text_lines
        if self._finished or not self.driven or lines <= self._reserved:
            return
        self._step(lines)

    def _step(self, lines: int) -> None:
        now = _now()
        ahead = GROW_MIN
        rate = 0.0  # rows a second since the last step
        if self._last_step is not None:
            t, n = self._last_step
            if now > t:
                rate = (lines - n) / (now - t)
                ahead = min(self._grow_max, max(GROW_MIN, round(rate * GROW_AHEAD_S)))
        self._last_step = (now, lines)
        if not self._tail and rate:
            room = self._room() - lines
            if 0 < room <= rate * ROOM_FILL_S:
                # To the view's end, not past it: lines past it made the list overflow, a
                # step of its own (the list scrolls) before the tail, in every pane.
                ahead = room + 1
        if self._may_tail(lines, rate):
            if not self._tail:
                # Its last row at the view's end; a text shorter than the view (a pane whose
                # turns fit) has its first row at the view's top instead, blank rows below.
                self._gap = max(0, self._fill_rows() - lines)
                self._follower().overflows()  # (turns that fit: followed from this layout)
            self._tail = True
            views = self._view_rows()
            by_rate = min(round(rate * TAIL_AHEAD_S), TAIL_MAX_VIEWS * views)
            ahead = max(ahead, TAIL_VIEWS * views, by_rate)
        self._reserved = max(self._reserved, lines - 1 + ahead)
        self._ahead = ahead

    def _room(self) -> int:
        """The rows this view can take while its list follows it without scrolling: from its
        top to the end of the list's view, less the rows of its message below it (its live
        line). 0 when it is not placed yet, its top is out of view, or its message is not the
        list's last."""
        follower = self._follower()
        region: Region = self.region
        if follower is None or not follower.follow or not region.height:
            return 0
        item = self._list_item(follower)
        if follower.children[-1] is not item:
            return 0
        viewport: Region = follower.scrollable_content_region
        if region.y < viewport.y:
            return 0
        return max(0, int(viewport.bottom) - region.y - self._rows_below(item))

    def step_along(self) -> bool:
        """Another reply on the screen took a step of height in this frame, so the screen
        lays out anyway: this one takes its own next step now when it is less than half a
        step away. Replies streaming side by side then step in the same frames: each pane
        stepping on its own made a layout, and a redraw of every pane, in 4 frames of 5 at
        4 × 500 tok/s. No more lines are reserved than a step of its own reserves."""
        lines = self._text_lines
        if self._finished or not self.driven or not self.is_mounted or not lines:
            return False
        if self._last_step is None or 2 * (self._reserved + 1 - lines) >= self._ahead:
            return False
        self._step(lines)
        self._relayout()  # only blank lines are added below the text
        return True

    @private_override(Widget)
    def _size_updated(
        self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True
    ) -> bool:
        # Textual restyles every line of a widget whose size changed. A height step while
        # streaming changes no line above the new text (same width, nothing drawn below the
        # text), so the lines styled before it are kept: a step then restyles the lines
        # that changed, not the whole visible reply, in each pane.
        # (``OneLayout``, next in line, asks for no second layout after this one.)
        if self._tail:  # every row may have moved: Textual's own (restyles what it shows)
            return super()._size_updated(size, virtual_size, container_size, layout)
        kept = styled_lines_kept(self, size)
        resized = super()._size_updated(size, virtual_size, container_size, layout)
        # Every row below the text is the same blank line (``render_line``).
        restore_styled_lines(self, kept, size, blank_from=self._text_lines)
        return resized

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if width and width != self._width and self.is_mounted:
            if self._synced_len < 0:  # the first draw, at the width the layout gives
                self._width = width
                self._dark = self.app.current_theme.dark
                self._sync(refresh=False)
            else:
                self._rerender_all(width)
        return self._height()

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        # Textual's own reads ``self._render_strips()``, which a line-API widget has no text in:
        # the selection is taken from the lines as drawn, so a copy gives what was seen. Its
        # rows are the layout's, where a block only sized takes its estimated height: each
        # end is read in its own block's drawn lines. Sized blocks between the two ends are
        # drawn for the copy only (kept, they would move the rows below before a layout).
        from textual.selection import Selection as Picked

        if shift := self._shift():  # tail mode: the rows selected, in text rows
            selection = Picked(
                *(
                    None if at is None else Offset(at.x, max(0, at.y - shift))
                    for at in (selection.start, selection.end)
                )
            )
        closed = self._closed_blocks
        count = len(closed.sources)

        def block_of(offset: Offset | None, default: int) -> int:
            if offset is None:
                return default
            return count if offset.y >= closed.height else bisect_right(closed.tops, offset.y) - 1

        first, last = block_of(selection.start, 0), block_of(selection.end, count)
        rows: list[str] = []
        tops: dict[int, int] = {}  # block → its first row in ``rows``
        for i in range(first, min(last, count - 1) + 1):
            tops[i] = len(rows)
            lines = closed.lines[i]
            if lines is None:
                lines = self._render_block(closed.sources[i], self._width)
            rows.extend(line.text.rstrip() for line in lines)
        open_top = len(rows)
        if last == count:
            rows.extend(line.text.rstrip() for line in self._open_lines)

        def drawn_row(offset: Offset | None) -> Offset | None:
            if offset is None:
                return None
            if offset.y >= closed.height:
                return Offset(offset.x, open_top + offset.y - closed.height)
            i = bisect_right(closed.tops, offset.y) - 1
            height = tops.get(i + 1, open_top) - tops[i]
            return Offset(offset.x, tops[i] + min(offset.y - closed.tops[i], max(0, height - 1)))

        start = drawn_row(selection.start)
        if not rows or (start is not None and start.y >= len(rows)):
            return None
        return Picked(start, drawn_row(selection.end)).extract("\n".join(rows)), "\n"

    def render_lines(self, crop: Region) -> list[Strip]:
        """In tail mode, every frame serves every row in view again, each one a row it served
        a frame before, moved: through Textual's styles cache each was styled again (0.1-0.2 ms
        a row, a pane's view in each frame). A reply with no box of its own (no padding,
        border, outline, tint or opacity: the styles cache adds nothing to its lines but the
        app's filters) serves its lines as they are, filtered as the styles cache filters."""
        if not self._tail or not self._plain_box():
            return super().render_lines(crop)
        width = self.size.width
        filters = self.get_line_filters()
        background = self.background_colors[1]
        strips: list[Strip] = []
        for y in crop.line_range:
            strip = self.render_line(y).adjust_cell_length(width, self._style)
            for line_filter in filters:
                strip = strip.apply_filter(line_filter, background)
            strips.append(strip)
        if crop.column_span != (0, width):
            strips = [strip.crop(*crop.column_span) for strip in strips]
        return strips

    def _plain_box(self) -> bool:
        styles = self.styles
        return (
            not any(styles.gutter)
            and not any(edge for edge, _ in styles.outline)
            and not styles.tint.a
            and self.opacity == 1.0
            and styles.text_opacity == 1.0
            and not (styles.has_rule("hatch") and styles.hatch != "none")
            and not self.BLANK
            and not (self.auto_links and self.hover_style._link_id)
        )

    def render_line(self, y: int) -> Strip:
        if self._tail:
            y -= self._shift()
            if y < 0:
                return Strip.blank(self.size.width, self._style or self.rich_style)
        closed = self._closed_blocks
        if y < closed.height:
            i = bisect_right(closed.tops, y) - 1
            lines = closed.lines[i]
            if lines is None:
                # Not expected (blocks are drawn before they come into sight), but if a
                # sized block is asked for, it is drawn, and laid out again.
                self.late_draws += 1
                self._draw_block(i)
                self.call_after_refresh(self.refresh, layout=True)
                lines = closed.lines[i] or []
            offset = y - closed.tops[i]
            if offset < len(lines):
                return lines[offset]
        elif y - closed.height < len(self._open_lines):
            return self._open_lines[y - closed.height]
        return Strip.blank(self.size.width, self._style or self.rich_style)


class _Closed:
    """The closed blocks of a reply: each one's source, its lines once drawn (None while it is
    only sized) and its height (estimated while only sized), with the row each starts at."""

    def __init__(self) -> None:
        self.sources: list[str] = []
        self.lines: list[list[Strip] | None] = []
        self.heights: list[int] = []
        self.tops: list[int] = []
        self.height = 0
        self.pending = 0
        self._flat: list[Strip] | None = []

    def append(self, source: str, lines: list[Strip] | None, estimate: int = 0) -> None:
        self.sources.append(source)
        self.lines.append(lines)
        height = len(lines) if lines is not None else estimate
        self.heights.append(height)
        self.tops.append(self.height)
        self.height += height
        if lines is None:
            self.pending += 1
            self._flat = None
        elif self._flat is not None:
            self._flat.extend(lines)

    def set(self, i: int, lines: list[Strip] | None, estimate: int = 0) -> None:
        """Block ``i`` drawn as ``lines``, or only sized (``estimate``); rows below move."""
        self.pending += (lines is None) - (self.lines[i] is None)
        self.lines[i] = lines
        height = len(lines) if lines is not None else estimate
        delta = height - self.heights[i]
        self.heights[i] = height
        if delta:
            tops = self.tops
            for j in range(i + 1, len(tops)):
                tops[j] += delta
            self.height += delta
        self._flat = None

    def pending_indexes(self) -> list[int]:
        return [i for i, lines in enumerate(self.lines) if lines is None] if self.pending else []

    def exact_from(self) -> int:
        """The first row from which every block down is drawn."""
        for i in range(len(self.lines) - 1, -1, -1):
            if self.lines[i] is None:
                return self.tops[i] + self.heights[i]
        return 0

    def flat(self) -> list[Strip]:
        """Every block's lines in order (all drawn)."""
        if self._flat is None:
            self._flat = [line for lines in self.lines for line in lines or ()]
        return self._flat


def _common_prefix(old: list[Strip], new: list[Strip]) -> int:
    """How many leading lines ``old`` and ``new`` share (the same strip, or an equal one)."""
    n = 0
    for a, b in zip(old, new, strict=False):
        if a is not b and a != b:
            break
        n += 1
    return n


class _OpenParagraph:
    """An open paragraph: its top lines are frozen once later text can no longer move them.

    A model that writes one long paragraph (no blank line for thousands of tokens) would
    otherwise cost a re-wrap of the whole paragraph every frame. Wrapping is greedy, so every
    line but the last is final once text follows it. The frozen prefix is cut where the
    rendered lines start in the source, and kept only if rendering the two parts separately
    gives exactly the lines of the whole (an emphasis or link spanning the cut fails that
    check, and the paragraph is re-rendered whole, as before). ``finish`` or the paragraph's
    end renders the block from its source again, so the final lines are always exact.
    """

    def __init__(self) -> None:
        self.reset()
        self.frozen_count = 0  # successful freezes (tests of the cost bound)

    def reset(self, key: int = -1) -> None:
        self._key = key  # where the open block starts in the reply
        self._frozen: list[Strip] = []
        self._chars = 0  # characters of the paragraph's source behind the frozen lines
        self._retry_at = PARAGRAPH_FREEZE_LINES
        self.behind = 0  # characters of the paragraph not drawn yet (PARAGRAPH_FRAME_CHARS)

    @property
    def frozen(self) -> bool:
        """Whether any of the paragraph's lines are frozen (drawn apart from the rest)."""
        return bool(self._frozen)

    def active(self, key: int) -> bool:
        """Whether the paragraph at ``key`` has frozen lines to build on."""
        return key == self._key and bool(self._frozen)

    def lines(self, key: int, text: str, view: StreamingMarkdown, width: int) -> list[Strip]:
        if key != self._key:
            self.reset(key)
        dark = bool(view._dark)
        body = text[self._chars :]
        if len(body) > PARAGRAPH_FRAME_CHARS:
            # Draw a frame's worth, ending at a space when there is one: the rest waits.
            end = body.rfind(" ", PARAGRAPH_FRAME_CHARS // 2, PARAGRAPH_FRAME_CHARS)
            body = body[: end if end > 0 else PARAGRAPH_FRAME_CHARS]
        self.behind = len(text) - self._chars - len(body)
        lines = view._render_strips(render_paragraph(body.rstrip("\n"), dark), width)
        if len(lines) >= self._retry_at:
            # A line that starts inside a code span or a link cannot be cut at: try a few.
            offset = 0
            for cut in range(len(lines) - PARAGRAPH_OPEN_LINES, len(lines) // 2, -1)[:4]:
                offset = self._cut(body, lines, cut, view, width, dark)
                if offset:
                    break
            if offset:
                self._frozen += lines[:cut]
                self._chars += offset
                self._retry_at = PARAGRAPH_FREEZE_LINES
                self.frozen_count += 1
                lines = lines[cut:]
            else:
                self._retry_at = len(lines) + PARAGRAPH_FREEZE_LINES
        return [*self._frozen, *lines] if self._frozen else lines

    def closed_lines(
        self, key: int, block: str, view: StreamingMarkdown, width: int
    ) -> list[Strip]:
        """The paragraph at ``key``, now closed as ``block``, drawn from its frozen lines and
        the rest in frame-sized steps: exact (each freeze was checked), and never one render
        of a whole long paragraph. Empty when nothing of it was frozen."""
        if key != self._key or not self._frozen:
            return []
        return self.whole(key, block, view, width)

    def whole(self, key: int, block: str, view: StreamingMarkdown, width: int) -> list[Strip]:
        """Every line of the paragraph ``block``, drawn in frame-sized steps (linear: Rich
        wraps one huge paragraph in superlinear time, 32 s for 6 MB here)."""
        text = block.rstrip("\n")
        while True:
            before = self._chars
            out = self.lines(key, text, view, width)
            if not self.behind:
                return out
            if self._chars == before:  # no cut is possible here: the rest is drawn whole
                rest = view._render_strips(
                    render_paragraph(text[self._chars :], bool(view._dark)), width
                )
                return [*self._frozen, *rest]

    @staticmethod
    def _cut(
        body: str, lines: list[Strip], cut: int, view: StreamingMarkdown, width: int, dark: bool
    ) -> int:
        """Where in ``body`` rendered line ``cut`` starts, if splitting there is exact."""
        head_text = "".join(line.text for line in lines[:cut])
        if _UNCLOSED.search(head_text):
            return 0  # an unmatched `*` or backtick may still be closed, restyling the lines
        plain = _plain_cut(body, head_text)
        if plain:
            return plain
        visible = sum(ch.isalnum() for ch in head_text)
        seen, at = 0, 0
        while at < len(body) and seen < visible:
            seen += body[at].isalnum()
            at += 1
        if seen < visible:
            return 0
        candidates = []
        end = at
        while end < len(body) and not body[end].isspace():
            end += 1
        while end < len(body) and body[end].isspace():
            end += 1
        candidates.append(end)  # text with spaces: the next line starts at the next word
        candidates.append(at)  # text without spaces (CJK): folded at a character
        for offset in candidates:
            if not 0 < offset < len(body):
                continue
            head = view._render_strips(render_paragraph(body[:offset], dark), width)
            if head != lines[:cut]:
                continue
            tail = view._render_strips(render_paragraph(body[offset:].rstrip("\n"), dark), width)
            if tail == lines[cut:]:
                return offset
        return 0


def _plain_cut(body: str, head_text: str) -> int:
    """Where the line after ``head_text`` starts in ``body`` when that part of ``body`` is plain
    words (nothing markdown could restyle, spaces as the only blanks); 0 otherwise.

    Then the rendered lines are the source wrapped greedily at spaces, so the head holds as
    many non-space characters as the source up to the break, and no check render is needed
    (counted with C-speed ``str.count``: a character loop here was half of a long paragraph's
    cost)."""
    drawn = len(head_text) - head_text.count(" ")
    lo, hi = 0, len(body)
    while lo < hi:  # the shortest prefix of body with as many non-space characters
        mid = (lo + hi) // 2
        if mid - body.count(" ", 0, mid) < drawn:
            lo = mid + 1
        else:
            hi = mid
    if lo >= len(body) or body[lo] != " " or _NOT_PLAIN.search(body, 0, lo):
        return 0  # a word folded across lines, or text markdown may draw differently
    end = lo
    while end < len(body) and body[end] == " ":
        end += 1
    return end if end < len(body) else 0


def fence_key(source: str, closed: bool) -> str | None:
    """What a fence's code lines are drawn from, the same text for the open fence as for the
    closed one: its info line and its code lines. A ``closed`` fence ends with its closing
    line and nothing after; an open one ends a line (a partial line is drawn as plain text).
    None when the two could differ: a fence's line inside that Markdown reads as code (text
    after it), code ending in white space (a closed fence's is stripped), or anything but a
    fence at the margin (an indent is stripped from the lines)."""
    opening = source.split("\n", 1)[0]
    if not opening.startswith(("```", "~~~")):
        return None
    code, partial, after = fence_lines(source)
    if partial or (closed and after is None) or any(line.strip() for line in after or ()):
        return None
    text = "\n".join(code)
    if not text or text != text.rstrip():
        return None  # (a closed fence's code is stripped at its end)
    return "\x00fence\n" + opening + "\n" + text


def fence_lines(source: str) -> tuple[list[str], str, list[str] | None]:
    """A fence's code lines that ended, its last line while that is still arriving, and the
    lines after its closing line (None while no line closes it)."""
    body = source.split("\n")[1:]
    for i, line in enumerate(body):
        if _FENCE_CLOSE.match(line):
            return body[:i], "", body[i + 1 :]
    return body[:-1], body[-1] if body else "", None


class _OpenFence:
    """An open code fence: completed lines are highlighted once, in chunks of lines."""

    def __init__(self, language: str) -> None:
        self.language = language
        self.reset()
        self.highlighted_lines = 0  # tests of the cost bound

    def reset(self) -> None:
        self._done = 0
        self._chunks: list[list[Strip]] = []  # finished chunks, rendered
        self._current: list[str] = []  # completed lines of the chunk being filled
        self._current_lines: list[Strip] = []
        self.one_chunk = False  # the last lines drawn were one highlight of the whole code

    def _syntax(self, code: str, dark: bool) -> FastCode:
        self.highlighted_lines += code.count("\n") + 1
        return FastCode(code, lexer_for(self.language), code_theme(dark), (0, 1))

    def lines(self, fence_source: str, view: StreamingMarkdown, width: int) -> list[Strip]:
        complete, partial, _ = fence_lines(fence_source)
        new = complete[self._done :]
        dark = bool(view._dark)
        if new:
            self._done = len(complete)
            for line in new:
                if len(self._current) >= FENCE_CHUNK_LINES:
                    self._chunks.append(self._current_lines)
                    self._current = []
                self._current.append(line)
            self._current_lines = view._render_strips(
                self._syntax("\n".join(self._current), dark), width
            )
        self.one_chunk = not self._chunks and not partial
        out = [line for chunk in self._chunks for line in chunk]
        out += self._current_lines
        if partial:
            out += view._render_strips(Text(" " + partial), width)
        return out

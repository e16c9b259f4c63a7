"""The streaming markdown view: what it shows is what a whole render shows, and a frame's cost
does not grow with the reply.

Costs are counted (lines Rich drew, blocks rendered), not timed, so the checks are exact on any
machine. Text is fed in random-sized pieces, as it arrives from a model.
"""

from __future__ import annotations

import random
from itertools import dropwhile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from textual.app import App, ComposeResult
from textual.containers import Horizontal

from tests.support.mock_server import MockServerProcess
from tests.support.tui import contiguous_in, wait_until
from tui.widgets.streaming_markdown import (
    FENCE_CHUNK_LINES,
    GROW_MAX,
    PARAGRAPH_FREEZE_LINES,
    StreamingMarkdown,
    fence_key,
    render_markdown,
)

SIZE = (100, 40)
LOREM = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet,",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
]


@pytest.fixture(autouse=True)
def _every_frame_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests sync back to back and compare every frame: a costly frame (a slow machine)
    must not make the next one wait (OPEN_DUTY), except in the test of that rule."""
    from tui.widgets import streaming_markdown as sm

    monkeypatch.setattr(sm, "OPEN_BUDGET_S", float("inf"))


class _Host(App[None]):
    def compose(self) -> ComposeResult:
        yield StreamingMarkdown("", driven=True)


def _prose(words: int, seed: int = 0) -> str:
    rnd = random.Random(seed)
    return " ".join(rnd.choice(LOREM) for _ in range(words)) + "."


def _mixed(sections: int) -> str:
    parts = ["# A long reply\n\n"]
    for i in range(sections):
        parts.append(f"## Part {i}\n\n{_prose(60, i)} Some **bold {i}** and `code {i}`.\n\n")
        parts.append(f"- item one of {i}\n- item two with *emphasis*\n- item three\n\n")
        parts.append(f"```python\ndef f{i}(x):\n    return x * {i}\n```\n\n")
        parts.append("| col | value |\n|---|---|\n| a | 1 |\n| b | 2 |\n\n")
    return "".join(parts)


def _drawn(view: StreamingMarkdown) -> int:
    """Rows of text drawn (every block, the lines reserved below not counted)."""
    return len(view._closed_lines) + len(view._open_lines)


def _shown(view: StreamingMarkdown) -> list[str]:
    return [strip.text for strip in [*view._closed_lines, *view._open_lines]]


def _whole(view: StreamingMarkdown, text: str) -> list[str]:
    return [strip.text for strip in view._render_strips(render_markdown(text, True), view._width)]


async def _feed(view: StreamingMarkdown, text: str, seed: int = 1, check_every: int = 0) -> int:
    """Feed ``text`` in pieces of 1–12 characters, a sync after each; returns syncs done.

    With ``check_every``, compare the view with a whole render every so many pieces."""
    rnd = random.Random(seed)
    i = n = 0
    while i < len(text):
        step = rnd.randint(1, 12)
        view.append(text[i : i + step])
        i += step
        view.sync()
        n += 1
        if check_every and n % check_every == 0:
            assert _shown(view) == _whole(view, text[:i].rstrip("\n") or " ")[: len(_shown(view))]
    return n


async def test_streamed_reply_ends_exactly_as_a_whole_render() -> None:
    text = _mixed(6)
    app = _Host()
    async with app.run_test(size=SIZE):
        view = app.query_one(StreamingMarkdown)
        await _feed(view, text)
        view.finish()
        assert view.source == text
        # Blocks are drawn one by one, each followed by one blank line (Rich's whole render
        # spaces some blocks differently): the text lines are the same, in the same order.
        shown = [line.rstrip() for line in _shown(view) if line.strip()]
        whole = [line.rstrip() for line in _whole(view, text) if line.strip()]
        assert shown == whole


async def test_each_closed_block_is_rendered_once() -> None:
    text = _mixed(20)
    app = _Host()
    async with app.run_test(size=SIZE):
        view = app.query_one(StreamingMarkdown)
        await _feed(view, text)
        view.finish()
        blocks = len(view._blocks)
        assert blocks == 1 + 20 * 5  # the title, then heading, paragraph, list, code, table
        # Each closed block is drawn once, or not at all: one the open block's last frame drew
        # whole (a heading, a paragraph, a list or a table fed a few characters a frame, or a
        # short code block whose lines had all ended) keeps those lines.
        assert view.rendered_blocks + view.reused_blocks == blocks
        assert view.reused_blocks >= 30  # 39 of the 101 here (fed 1-12 characters a frame)
        assert view.full_renders <= 1  # the first layout, which sets the width


class _KeepsAndDraws(App[None]):
    """Two views for one stream: ``#keeps`` keeps a closing block's open lines where it can,
    ``#draws`` draws every closed block again (the reference)."""

    def compose(self) -> ComposeResult:
        yield StreamingMarkdown("", driven=True, id="keeps")
        yield StreamingMarkdown("", driven=True, id="draws")

    def views(self) -> tuple[StreamingMarkdown, StreamingMarkdown]:
        keeps = self.query_one("#keeps", StreamingMarkdown)
        draws = self.query_one("#draws", StreamingMarkdown)
        draws._drawn_open = lambda block: []  # type: ignore[method-assign]
        return keeps, draws


def _assert_same_lines(keeps: StreamingMarkdown, draws: StreamingMarkdown) -> None:
    """The two views' closed lines are the same, row for row and segment for segment."""
    assert [s.text for s in keeps._closed_lines] == [s.text for s in draws._closed_lines]
    assert list(map(list, keeps._closed_lines)) == list(map(list, draws._closed_lines))


async def test_a_block_that_keeps_its_open_lines_is_exactly_a_full_render() -> None:
    """The same stream fed to a view that keeps a closing block's open lines and to one that
    draws every closed block again: the same lines, row for row, in every block kind."""
    text = _mixed(6) + "A last paragraph with *emphasis*, `code` and a [link](https://x.y).\n"
    app = _KeepsAndDraws()
    async with app.run_test(size=SIZE) as pilot:
        keeps, draws = app.views()
        await pilot.pause()
        for view in (keeps, draws):
            await _feed(view, text)
            view.finish()
        assert keeps.reused_blocks > 10 and draws.reused_blocks == 0
        _assert_same_lines(keeps, draws)


FENCES = [
    'def f(x):\n    """A docstring\n    over two lines."""\n    return x * 2',
    "for i in range(3):\n\tprint(i)  # a tab",
    "s = '漢字とかな, wide: ｗｉｄｅ'\nt = s * 2",
    "x = " + " + ".join(f"value_{i}" for i in range(40)) + "  # wraps",
    "  indented first line\nsecond",
    "trailing spaces   \nlast   ",
    "\nfirst line blank\nx",
    "last line blank\n   ",
    "a\n~~~\nb",  # another fence's line, read as code
]


def _fences() -> str:
    parts = []
    for i, code in enumerate(FENCES):
        for opening, closing in (("```python", "```"), ("~~~", "~~~"), ("````text", "````")):
            if closing in code:
                continue  # (it would close the fence)
            parts.append(f"Fence {i} {opening!r}:\n\n{opening}\n{code}\n{closing}\n\n")
    # Longer than a chunk, a string across the chunk's end: highlighted a chunk at a time while
    # open, which colours its second half as code; drawn again as it closes.
    long = [f"y{i} = {i}" for i in range(FENCE_CHUNK_LINES - 2)]
    long += ['doc = """a string', "def g(): pass", 'still the string"""', "z = 1"]
    parts.append("```python\n" + "\n".join(long) + "\n```\n\n")
    parts.append("```\nno language\n```\n\n```nosuchlanguage\nplain = 1\n```\n\nThe end.\n")
    return "".join(parts)


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_a_code_block_that_keeps_its_open_lines_is_exactly_a_full_render(
    seed: int,
) -> None:
    """A code block highlighted whole while open (one chunk, every line ended) keeps those
    lines as it closes: the same lines, row for row, as a view that draws it again; fences
    that could differ (blank end lines, trailing spaces, more than a chunk) are drawn again."""
    text = _fences()
    app = _KeepsAndDraws()
    async with app.run_test(size=SIZE) as pilot:
        keeps, draws = app.views()
        await pilot.pause()
        for view in (keeps, draws):
            if seed:
                await _feed(view, text, seed=seed)
            else:  # a line at a time: every open fence ends its lines, and so can be kept
                for line in text.splitlines(keepends=True):
                    view.append(line)
                    view.sync()
            view.finish()
        fenced = [b for b in keeps._blocks if b.startswith(("```", "~~~"))]
        kept = [b for b in fenced if fence_key(b, closed=True)]
        assert len(fenced) == 3 * len(FENCES) + 2 and len(kept) >= 3 * 5
        assert keeps.reused_blocks >= (len(kept) if not seed else len(kept) // 2)
        assert draws.reused_blocks == 0
        _assert_same_lines(keeps, draws)


_CODE_SAMPLES = {
    "python": 'def f(a, b):\n    """Doc."""\n\n    return a + b  # sum\n\tx = \'tab\'\n',
    "javascript": "const x = {a: 1, b: [2, 3]};\nfunction g() { return `t ${x.a}`; }\n",
    "rust": 'fn main() {\n    let v: Vec<i32> = vec![1, 2];\n    println!("{:?}", v);\n}',
    "json": '{\n  "key": "value",\n  "n": [1, 2.5, null, true]\n}',
    "bash": 'for f in *.py; do\n  echo "$f" | wc -c   \ndone',
    "yaml": "a: 1\nb:\n  - x\n  - 'y'\n",
    "text": "plain words\n\n   indented   \nend",
    "nosuchlanguage": "some code\nmore",
    "python-wide": "s = '日本語のテキスト'  # 全角\nprint(s, '😀')\n",
    "python-docstring": 'def f():\n    """One\n\ttwo   \n    """\n    return 1',
    "python-line": "x = 1",
    "python-blank": "",
    "python-blank-lines": "\n\nx = [\n\n]\n\n",
    "c": "#include <stdio.h>\nint main(void) {\n\treturn 0;\t// tab\n}\n",
    "diff": "--- a\n+++ b\n@@ -1 +1 @@\n-old\n+new",
}


def _code_lines(
    console: Any, options: Any, code: str, language: str, dark: bool, wrap: bool, padding: Any
) -> list[Any]:
    """``code`` as Rich's ``Syntax`` draws it, with or without ``word_wrap``."""
    from rich.syntax import Syntax

    from tui.widgets.streaming_markdown import code_theme, lexer_for

    lexer, theme = lexer_for(language), code_theme(dark)
    syntax = Syntax(code, lexer, theme=theme, word_wrap=wrap, padding=padding)
    return list(console.render_lines(syntax, options, pad=True))


@pytest.mark.parametrize("dark", [True, False])
def test_code_that_fits_is_drawn_as_word_wrap_draws_it(dark: bool) -> None:
    """Code whose every line fits is drawn without ``word_wrap`` (one Rich render instead of
    one per line, ``code_fits``): exactly the lines ``word_wrap`` draws, segments and styles,
    for every language, blank and indented lines, tabs, trailing blanks, wide characters, and
    lines of the width exactly; a line one cell longer takes the wrapping path."""
    from rich.console import Console

    from tui.widgets.streaming_markdown import code_fits

    console = Console(width=200, color_system="truecolor", force_terminal=True)
    checked = wraps = 0
    for name, code in _CODE_SAMPLES.items():
        language = name.split("-")[0]
        longest = max(len(line.expandtabs(4)) for line in code.split("\n"))
        for width in (12, 20, longest + 1, longest + 2, longest + 3, 48, 100):
            options = console.options.update_width(width).update(height=None)
            for padding in (1, (0, 1)):
                want = _code_lines(console, options, code, language, dark, True, padding)
                if code_fits(code, width - 2):
                    plain = _code_lines(console, options, code, language, dark, False, padding)
                    assert plain == want, (name, width)
                    checked += 1
                else:
                    wraps += 1
            # The fence as a reply draws it: through the markdown renderer.
            fence = f"```{language}\n{code.rstrip()}\n```"
            drawn = console.render_lines(render_markdown(fence, dark).renderable, options)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr("tui.widgets.streaming_markdown.code_fits", lambda c, w: False)
                slow = console.render_lines(render_markdown(fence, dark).renderable, options)
            assert drawn == slow, (name, width)
    assert checked >= 30 and wraps >= 10, (checked, wraps)
    assert code_fits("abc", 3) and not code_fits("abcd", 3)
    assert code_fits("\tab", 6) and not code_fits("\tabc", 6)
    assert code_fits("日本", 4) and not code_fits("日本語", 5)


_TABLE_CELLS = [
    "",
    "a",
    "key",
    "value",
    "42",
    "-3.5",
    "MA00003",
    "two words",
    "a  b",
    "x\\|y",
    "100%",
    "a cell long enough that it wraps at the narrower widths of a pane",
    "`code`",
    "`a  b `",
    "**bold**",
    "*em* tail",
    "~~gone~~",
    "[link](https://example.com)",
    "café",
    "✓ done",
    "日本語",
    "😀",
    "a&nbsp;b",
]
_TABLE_ALIGNS = ["---", ":---", ":---:", "---:"]


def _md_table(header: list[str], rows: list[list[str]], aligns: list[str] | None = None) -> str:
    """A markdown table (rows may have fewer or more cells than the header)."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    return "\n".join(
        [line(header), line(aligns or ["---"] * len(header)), *(line(row) for row in rows)]
    )


def _tables() -> list[str]:
    """Tables of 1 to 5 columns and 0 to 6 rows, cells of every kind in ``_TABLE_CELLS``,
    alignments, short and long rows, tables inside a list and a quote, and a table's
    prefixes as it streams in."""
    rng = random.Random(7)
    plain = _TABLE_CELLS[:11]
    out = [
        _md_table(["key", "value"], [[f"MA0000{i}", "42"] for i in range(3, 6)]),
        _md_table(["key", "value"], []),  # header only
        _md_table(["", ""], [["", ""]]),
        _md_table(["a", ""], [["", ""], ["1", ""]]),
        _md_table(["a", "b", "c"], [["1"], ["1", "2", "3", "4"]]),  # short and long rows
        _md_table(["n"], [[str(i)] for i in range(6)]),
        "- item\n\n  " + _md_table(["a", "b"], [["1", "2"]]).replace("\n", "\n  "),
        "> " + _md_table(["a", "b"], [["one", "two"]]).replace("\n", "\n> "),
    ]
    for columns in range(1, 6):
        for rows in range(7):
            for kind in ("plain", "any", "aligned")[(columns + rows) % 3 :][:1]:
                pool = plain if kind != "any" else _TABLE_CELLS
                aligns = [rng.choice(_TABLE_ALIGNS) for _ in range(columns)]
                out.append(
                    _md_table(
                        [rng.choice(pool) for _ in range(columns)],
                        [[rng.choice(pool) for _ in range(columns)] for _ in range(rows)],
                        aligns if kind == "aligned" else None,
                    )
                )
    for cell in _TABLE_CELLS:  # every kind of cell, in the header and the body
        for aligns in (["---", "---"], [":---:", "---:"]):
            out.append(_md_table([cell, "b"], [["1", cell], [cell, "two"]], aligns))
    sample = out[0]  # and as it streams in: an open table is drawn by the same path
    out += [sample[:end] for end in range(sample.index("\n| MA"), len(sample), 6)]
    return out


def _table_lines(source: str, dark: bool, width: int, ascii_only: bool = False) -> list[Any]:
    """``source`` as a reply's block draws it, ``width`` cells wide (on a terminal that has
    only ASCII: Rich draws the table's box in ASCII)."""
    from rich.console import Console

    console = Console(width=200, color_system="truecolor", force_terminal=True)
    options = console.options.update_width(width).update(height=None)
    if ascii_only:
        options.encoding = "ascii"
    return list(console.render_lines(render_markdown(source, dark).renderable, options))


def _rich_table_lines(source: str, dark: bool, width: int, ascii_only: bool = False) -> list[Any]:
    """``source`` drawn with every table drawn by Rich's ``Table``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("tui.widgets.streaming_markdown.table_segments", lambda *a: None)
        return _table_lines(source, dark, width, ascii_only)


def _counting_tables(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, for each table drawn from now on, whether it was drawn directly."""
    from tui.widgets import streaming_markdown as sm

    drawn: list[bool] = []
    direct = sm.table_segments

    def counted(*args: Any) -> Any:
        segments = direct(*args)
        drawn.append(segments is not None)
        return segments

    monkeypatch.setattr(sm, "table_segments", counted)
    return drawn


def test_tables_drawn_directly_are_drawn_as_rich_draws_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A table whose cells fit is drawn without Rich's ``Table`` (``table_segments``): exactly
    the lines Rich draws, segments and styles, for every shape and kind of cell, at every
    width and in both modes; a table that wraps, or a cell Rich must draw, takes Rich's path.
    Most of these tables are drawn directly (the count), so the check is not empty."""
    drawn = _counting_tables(monkeypatch)
    tables = _tables()
    for source in tables:
        for width in (20, 30, 48, 80, 120):
            for dark in (True, False):
                direct = _table_lines(source, dark, width)
                if drawn[-1]:  # (else Rich drew it: the same code)
                    want = _rich_table_lines(source, dark, width)
                    assert direct == want, (source, width, dark)
    cases = len(tables) * 10
    assert len(drawn) == cases
    for source in tables[:8]:
        want = _rich_table_lines(source, True, 48, ascii_only=True)
        assert _table_lines(source, True, 48, ascii_only=True) == want, source
        assert any("|" in segment.text for line in want for segment in line)
    assert drawn.count(True) >= cases // 2, (drawn.count(True), cases)
    assert drawn.count(False) >= cases // 10, (drawn.count(False), cases)


_WORDS = st.lists(
    st.one_of(
        st.sampled_from(["a", "key", "value", "MA00003", "total", "n/a", "x-y", "ok."]),
        st.integers(-(10**6), 10**9).map(str),
        st.floats(-1e4, 1e4, allow_nan=False).map(lambda x: f"{x:.2f}"),
    ),
    max_size=4,
).map(" ".join)


@st.composite
def _random_tables(draw: st.DrawFn) -> tuple[str, int]:
    """A table of 1 to 5 columns and 0 to 5 rows of words and numbers, any alignments, and a
    width to draw it at: any, or about the table's own (where it starts to wrap)."""
    columns = draw(st.integers(1, 5))
    rows = draw(st.integers(0, 5))
    cells = draw(st.lists(_WORDS, min_size=columns * (rows + 1), max_size=columns * (rows + 1)))
    aligns = draw(st.lists(st.sampled_from(_TABLE_ALIGNS), min_size=columns, max_size=columns))
    body = [cells[columns * (r + 1) : columns * (r + 2)] for r in range(rows)]
    natural = sum(max(map(len, cells[i::columns])) for i in range(columns)) + 2 * columns
    width = draw(st.one_of(st.integers(8, 140), st.integers(natural - 3, natural + 3)))
    return _md_table(cells[:columns], body, aligns), max(width, 1)


@settings(max_examples=120, deadline=None)
@given(table=_random_tables(), dark=st.booleans())
def test_random_tables_are_drawn_as_rich_draws_them(table: tuple[str, int], dark: bool) -> None:
    """Tables of words and numbers, drawn directly or by Rich: the same lines."""
    source, width = table
    assert _table_lines(source, dark, width) == _rich_table_lines(source, dark, width), table


def _fast_and_syntax(
    console: Any, options: Any, code: str, language: str, theme: str, padding: Any
) -> tuple[Any, Any, bool]:
    """``code`` drawn by ``FastCode`` and by Rich's ``Syntax`` as the app built it (with
    ``word_wrap`` when a line does not fit): each as the segments Rich's render yields and as
    lines, and whether ``FastCode`` drew it itself (not through ``Syntax``)."""
    from rich.padding import Padding
    from rich.syntax import Syntax

    from tui.widgets.streaming_markdown import FastCode, code_fits, lexer_for

    _, right, _, left = Padding.unpack(padding)
    code_width = options.max_width - left - right
    fits = code_fits(code, code_width)
    lexer = lexer_for(language)
    fast = FastCode(code, lexer, theme, padding)
    syntax = Syntax(code, lexer, theme=theme, word_wrap=not fits, padding=padding)
    drawn = (list(console.render(fast, options)), console.render_lines(fast, options, pad=True))
    want = (list(console.render(syntax, options)), console.render_lines(syntax, options, pad=True))
    return drawn, want, fits and fast._lines(code_width) is not None


_SYNTAX_FALLBACKS = {"python-wide"}  # not printable ASCII: drawn by ``Syntax``


@pytest.mark.parametrize("dark", [True, False])
def test_fast_code_draws_exactly_what_syntax_draws(dark: bool) -> None:
    """``FastCode`` draws code that fits from Pygments' tokens, without Rich's ``Text``: the
    same segments as ``Syntax``, text and style, in the same order, for every sample (blank,
    indented and tabbed lines, trailing blanks, tokens across lines, tokens the theme has no
    style for, an unknown language, no code at all), at the width of the longest line and
    wider, with both paddings the app uses. Code that does not fit, or that is not printable
    ASCII, is drawn by ``Syntax`` itself."""
    from rich.console import Console

    from tui.widgets.streaming_markdown import code_theme

    console = Console(width=200, color_system="truecolor", force_terminal=True)
    fast = slow = 0
    for name, code in _CODE_SAMPLES.items():
        language = name.split("-")[0]
        longest = max(len(line.expandtabs(4)) for line in code.split("\n"))
        for width in (12, longest + 1, longest + 2, longest + 3, 48, 100):
            options = console.options.update_width(width).update(height=None)
            for padding in (1, (0, 1)):
                drawn, want, by_fast = _fast_and_syntax(
                    console, options, code, language, code_theme(dark), padding
                )
                assert drawn == want, (name, width, padding)
                if width >= max(3, longest + 2):  # (a cell of code at least)
                    assert by_fast == (name not in _SYNTAX_FALLBACKS), (name, width)
                fast += by_fast
                slow += not by_fast
    assert fast >= 100 and slow >= 20, (fast, slow)


def test_fast_code_leaves_to_syntax_what_it_cannot_draw_exactly() -> None:
    """Control codes (Rich strips some, counts others as no cells), wide characters, a
    carriage return (Pygments makes it a line end), a theme on the terminal's background
    (``Syntax`` takes another path), a width without room for code: drawn by ``Syntax``,
    and so exactly as it draws them."""
    from rich.console import Console

    console = Console(width=200, color_system="truecolor", force_terminal=True)
    cases = [
        ("x = '\x1b[1m'  # escape\nbell = '\x07'", "monokai", 40),
        ("a = 1\r\nb = 2\r", "default", 40),
        ("s = 'é'", "monokai", 40),
        ("x = 1", "ansi_dark", 40),
        ("", "monokai", 2),
    ]
    for code, theme, width in cases:
        options = console.options.update_width(width).update(height=None)
        for padding in (1, (0, 1)):
            drawn, want, by_fast = _fast_and_syntax(
                console, options, code, "python", theme, padding
            )
            assert drawn == want and not by_fast, (code, theme, width)


@pytest.mark.parametrize("dark", [True, False])
def test_fences_draw_the_same_with_and_without_fast_code(dark: bool) -> None:
    """Through the markdown renderer, as replies are drawn: every sample as a fence, alone, in
    a list and in a quote, the same lines with ``FastCode`` as with ``Syntax`` only
    (``FastCode._lines`` off), and ``FastCode`` drew them."""
    from rich.console import Console

    from tui.widgets import streaming_markdown as sm

    console = Console(width=200, color_system="truecolor", force_terminal=True)
    drawn_fast = 0
    real_lines = sm.FastCode._lines

    def counted(self: Any, code_width: int) -> Any:
        nonlocal drawn_fast
        lines = real_lines(self, code_width)
        drawn_fast += lines is not None
        return lines

    for name, code in _CODE_SAMPLES.items():
        language = name.split("-")[0]
        fence = f"```{language}\n{code.rstrip()}\n```"
        quoted = "\n".join("> " + line for line in fence.split("\n"))
        listed = "- item\n\n" + "\n".join("  " + line for line in fence.split("\n"))
        for source in (fence, f"Text.\n\n{quoted}\n", listed):
            for width in (20, 48, 100):
                options = console.options.update_width(width).update(height=None)
                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(sm.FastCode, "_lines", counted)
                    fast = console.render_lines(
                        sm.render_markdown(source, dark).renderable, options
                    )
                    mp.setattr(sm.FastCode, "_lines", lambda self, code_width: None)
                    slow = console.render_lines(
                        sm.render_markdown(source, dark).renderable, options
                    )
                assert fast == slow, (name, source, width)
    assert drawn_fast >= 60, drawn_fast


_CODE_PIECES = st.one_of(
    st.characters(min_codepoint=32, max_codepoint=126),
    st.sampled_from(["\n", "\n", "\t", "    ", '"""', "'", "#", "\\", "def ", "x = ", "  \n"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(_CODE_PIECES, max_size=60),
    language=st.sampled_from(["python", "text"]),
    dark=st.booleans(),
    extra=st.integers(-2, 8),
    padding=st.sampled_from([1, (0, 1)]),
)
def test_fast_code_draws_random_code_exactly_as_syntax(
    pieces: list[str], language: str, dark: bool, extra: int, padding: Any
) -> None:
    """Random printable ASCII with line ends and tabs, as Python and as plain text: the same
    segments as ``Syntax``, drawn by ``FastCode`` whenever it fits."""
    from rich.console import Console

    from tui.widgets.streaming_markdown import code_theme

    code = "".join(pieces)
    console = Console(width=200, color_system="truecolor", force_terminal=True)
    longest = max(len(line) for line in code.expandtabs(4).split("\n"))
    width = max(3, longest + 2 + extra)
    options = console.options.update_width(width).update(height=None)
    drawn, want, by_fast = _fast_and_syntax(
        console, options, code, language, code_theme(dark), padding
    )
    assert drawn == want
    assert by_fast == (width >= longest + 2)


async def test_frame_cost_does_not_grow_with_the_reply() -> None:
    # 40 sections (~4,000 tokens) of mixed markdown: lines drawn per sync in the last quarter
    # are no more than in the first quarter (a re-render of the whole reply would be ~10×).
    text = _mixed(40)
    app = _Host()
    async with app.run_test(size=SIZE):
        view = app.query_one(StreamingMarkdown)
        quarter = len(text) // 4
        await _feed(view, text[:quarter])
        first_lines, first_syncs = view.rendered_lines, view.syncs
        await _feed(view, text[quarter : 3 * quarter])
        before_last = view.rendered_lines, view.syncs
        await _feed(view, text[3 * quarter :])
        last_lines = view.rendered_lines - before_last[0]
        last_syncs = view.syncs - before_last[1]
        per_sync_first = first_lines / first_syncs
        per_sync_last = last_lines / last_syncs
        assert per_sync_last <= 1.3 * per_sync_first, (per_sync_first, per_sync_last)


async def test_one_long_paragraph_costs_a_bounded_frame_and_shows_exactly() -> None:
    # A model that never starts a new paragraph: 3,000 words, one block.
    text = _prose(3000, 7)
    app = _Host()
    async with app.run_test(size=SIZE):
        view = app.query_one(StreamingMarkdown)
        syncs = await _feed(view, text, check_every=97)
        total_lines = len(_shown(view))
        assert total_lines > 150
        assert view._paragraph.frozen_count > 10
        # Each sync draws at most the open paragraph's unfrozen lines (plus the rare freeze
        # checks), not the whole paragraph: far under the ~total_lines/2 a whole re-render
        # would average.
        assert view.rendered_lines / syncs <= PARAGRAPH_FREEZE_LINES + 4
        view.finish()
        assert [s.rstrip() for s in _shown(view)][:total_lines] == [
            s.rstrip() for s in _whole(view, text)
        ]


async def test_unclosed_emphasis_in_a_long_paragraph_is_not_frozen() -> None:
    # `**` opened early and closed late: freezing the top lines would keep the literal `**`
    # after it closes. The view must match a whole render at every step instead.
    text = "start **" + " ".join(["bold"] * 500) + "** end " + _prose(300, 3)
    app = _Host()
    async with app.run_test(size=SIZE):
        view = app.query_one(StreamingMarkdown)
        await _feed(view, text, check_every=53)
        assert _shown(view) == _whole(view, text)


async def test_cjk_paragraph_without_spaces_freezes_at_characters() -> None:
    text = "这是一个很长的中文段落，没有空格。" * 150
    app = _Host()
    async with app.run_test(size=SIZE):
        view = app.query_one(StreamingMarkdown)
        await _feed(view, text, check_every=41)
        assert view._paragraph.frozen_count >= 1
        assert _shown(view) == _whole(view, text)


async def test_open_code_fence_highlights_only_new_lines() -> None:
    lines = [f"    value_{i} = compute({i})  # line {i}" for i in range(400)]
    text = "```python\ndef big():\n" + "\n".join(lines) + "\n```\n"
    app = _Host()
    async with app.run_test(size=SIZE):
        view = app.query_one(StreamingMarkdown)
        await _feed(view, text[:-5])  # the fence is still open
        fence = view._fence
        assert fence is not None
        # Every line is highlighted with the chunk it belongs to: at most one chunk's worth
        # of re-highlighting per line, never the whole fence again.
        assert fence.highlighted_lines <= FENCE_CHUNK_LINES * (len(lines) + 1)
        assert fence.highlighted_lines < len(lines) * len(lines) / 10
        await _feed(view, text[-5:])
        view.finish()
        assert view.rendered_blocks == 1


async def test_code_keeps_its_syntax_colours() -> None:
    # The widget's own colours go under each line, not over it: highlighted code keeps the
    # theme's colours and its background.
    app = _Host()
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(StreamingMarkdown)
        view.append("Intro.\n\n```python\nimport time\n```\n\nAfter.\n")
        view.finish()
        await pilot.pause()
        code = next(line for line in view._closed_lines if "import" in line.text)
        keyword = next(seg for seg in code if seg.text == "import")
        text = next(line for line in view._closed_lines if "Intro" in line.text)
        plain = next(seg for seg in text if "Intro" in seg.text)
        assert keyword.style is not None and plain.style is not None
        assert keyword.style.color != plain.style.color
        assert keyword.style.bgcolor != plain.style.bgcolor


def test_shared_parser_markdown_has_richs_attributes() -> None:
    # ``markdown_class()`` skips Rich's ``__init__`` to reuse one parser: if a Rich release adds an
    # attribute, this fails instead of the rendering.
    from rich.markdown import Markdown as RichMarkdown

    from tui.widgets.streaming_markdown import markdown_class

    assert set(vars(markdown_class()("x", "monokai"))) == set(vars(RichMarkdown("x")))


class _TwoHosts(App[None]):
    def compose(self) -> ComposeResult:
        yield StreamingMarkdown("", driven=True, id="skips")
        yield StreamingMarkdown("", driven=True, id="parses")


@pytest.mark.parametrize("seed", [5, 11, 23])
async def test_skipping_block_parses_shows_exactly_what_parsing_shows(seed: int) -> None:
    # Every block kind, fed in pieces of 1-12 characters to two views, one of which parses
    # block starts at every frame: after every piece they show the same lines. Most pieces
    # only lengthen a line whose block is settled, and those skip the parse.
    text = _mixed(3) + "> a quote that goes on for a while\n> and a second line\n\n1. one\n"
    text += "```typescript\nconst longer_name = 1;\n```\n\nlast words of the reply"
    app = _TwoHosts()
    async with app.run_test(size=SIZE):
        skips = app.query_one("#skips", StreamingMarkdown)
        parses = app.query_one("#parses", StreamingMarkdown)
        parses._same_blocks = lambda tail: False  # type: ignore[method-assign]
        rnd = random.Random(seed)
        i = syncs = 0
        while i < len(text):
            step = rnd.randint(1, 12)
            for view in (skips, parses):
                view.append(text[i : i + step])
                view.sync()
            i += step
            syncs += 1
            assert _shown(skips) == _shown(parses), text[:i]
        assert parses.block_parses >= syncs
        assert skips.block_parses < syncs * 0.7, (skips.block_parses, syncs)


async def test_a_fence_takes_its_language_once_the_info_string_is_whole() -> None:
    app = _Host()
    async with app.run_test(size=SIZE):
        view = app.query_one(StreamingMarkdown)
        for piece in ["Intro text here.\n\n```type", "script\nconst answer", " = 42;\n"]:
            view.append(piece)
            view.sync()
        assert view._fence is not None and view._fence.language == "typescript"


@pytest.mark.parametrize(
    ("lines_per_s", "busy", "most_blank", "fewest_lines_per_step"),
    [(5, False, 3, 4), (30, False, 7, 8), (5, True, 3, 4), (30, True, 15, 14)],
)
async def test_a_streaming_reply_reserves_what_its_rate_needs(
    monkeypatch: pytest.MonkeyPatch,
    lines_per_s: int,
    busy: bool,
    most_blank: int,
    fewest_lines_per_step: int,
) -> None:
    """Height steps (each a relayout of the screen) follow the rate the text grows at: slow
    prose keeps a band of at most 3 blank lines; fast code reserves more, steps less often,
    and never leaves more than GROW_MAX - 1 blank lines, or GROW_MAX_BUSY - 1 while the UI
    is busy (slow prose steps as it did)."""
    from tui.widgets import streaming_markdown

    clock = [100.0]
    monkeypatch.setattr(streaming_markdown, "_now", lambda: clock[0])
    app = _Host()
    async with app.run_test(size=SIZE):
        view = app.query_one(StreamingMarkdown)
        heights: list[int] = []
        frame_s = 0.04
        view.append("```python\n")
        due = 0.0
        written = 0
        for _frame in range(150):  # six seconds of code lines, drawn at 25 fps
            clock[0] += frame_s
            due += lines_per_s * frame_s
            while written < int(due):
                view.append(f"x_{written} = {written}\n")
                written += 1
            view.sync(busy)
            shown = _drawn(view)
            height = view._height()
            assert shown <= height <= shown + most_blank, (shown, height)
            heights.append(height)
        steps = len(set(heights))
        grown = heights[-1] - heights[0]
        assert grown / max(1, steps - 1) >= fewest_lines_per_step, (grown, steps)
        view.finish()
        assert view._height() == _drawn(view)


class _SideBySide(App[None]):
    def compose(self) -> ComposeResult:
        with Horizontal():
            yield StreamingMarkdown("", driven=True)
            yield StreamingMarkdown("", driven=True)


async def _two_streams(
    monkeypatch: pytest.MonkeyPatch, rates: tuple[int, int], along: bool
) -> tuple[int, list[int]]:
    """Two code replies side by side for five seconds at ``rates`` lines a second (the second
    three lines ahead, so their steps fall in other frames), synced at 25 fps as the race
    screen does, stepping along when ``along``: the frames with a layout, and each reply's
    steps of height. Neither ever shows more blank lines than a step of its own leaves."""
    from tui.widgets import streaming_markdown

    clock = [100.0]
    monkeypatch.setattr(streaming_markdown, "_now", lambda: clock[0])
    app = _SideBySide()
    async with app.run_test(size=SIZE) as pilot:
        views = list(app.query(StreamingMarkdown))
        await pilot.pause()
        for view in views:
            view.append("```python\n")
        written = [0, 0]
        due = [0.0, 3.0]
        layouts = 0
        steps = [0, 0]
        heights = [view._height() for view in views]
        for _frame in range(125):
            clock[0] += 0.04
            for k, view in enumerate(views):
                due[k] += rates[k] * 0.04
                while written[k] < int(due[k]):
                    view.append(f"x_{written[k]} = {written[k]}\n")
                    written[k] += 1
            stepped = [view.sync() for view in views]
            if along and any(stepped):
                for view, took in zip(views, stepped, strict=True):
                    if not took:
                        view.step_along()
            layouts += any(stepped)
            for k, view in enumerate(views):
                assert _drawn(view) <= view._height() <= _drawn(view) + GROW_MAX - 1
                steps[k] += view._height() != heights[k]
                heights[k] = view._height()
    return layouts, steps


async def test_replies_side_by_side_step_in_the_same_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When one reply takes a step of height (a layout of the screen), the other takes its
    next one in the same frame if it is less than half a step away: frames with a layout
    are fewer. A slow reply beside a fast one is not dragged along at every step."""
    alone, _ = await _two_streams(monkeypatch, (24, 27), along=False)
    together, _ = await _two_streams(monkeypatch, (24, 27), along=True)
    assert together <= 0.7 * alone, (together, alone)  # 18 against 32 here
    _, own = await _two_streams(monkeypatch, (30, 5), along=False)
    _, dragged = await _two_streams(monkeypatch, (30, 5), along=True)
    print("STEPS", alone, together, own, dragged)
    assert dragged[1] <= own[1] + 3, (dragged, own)


async def _code_reserving_lines(app: _Host, pilot: Any) -> StreamingMarkdown:
    """``app``'s view streaming code lines, a frame each: it reserves lines ahead."""
    view = app.query_one(StreamingMarkdown)
    view.append("```python\n")
    for i in range(9):
        view.append(f"x_{i} = {i}\n")
        view.sync()
        await pilot.pause()
    return view


async def test_the_last_text_keeps_the_reserved_lines_until_the_figures() -> None:
    """``finish(keep_height=True)`` (a reply's last text) draws it in the lines the reply
    already takes: no change of height, so no layout of the screen before the last token is
    shown. The plain ``finish`` that follows (the figures) gives the exact height back."""
    app = _Host()
    async with app.run_test(size=SIZE) as pilot:
        view = await _code_reserving_lines(app, pilot)
        reserved = view._height()
        drawn = _drawn(view)
        assert reserved > drawn + 2  # room for the last line and the blank one after the block
        view.append("```\n")
        view.finish(keep_height=True)
        await pilot.pause()
        shown = _drawn(view)
        assert shown < reserved
        assert view._height() == view.size.height == reserved  # the height it had
        assert _shown(view)[: shown - 1] == _whole(view, view.source.rstrip("\n"))
        view.finish()
        await pilot.pause()
        assert view._height() == view.size.height == shown  # the reserve is given back


async def test_draw_now_writes_a_last_text_at_once_unless_a_layout_is_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reply's last text, drawn in the lines it already takes, goes to the terminal within
    ``draw_now``: Textual writes it at the screen's next update tick, which a frame of every
    pane's text could come before. With a layout due (the plain ``finish`` gives the reserve
    back), it draws nothing: Textual's update lays the screen out first."""
    import re

    from tui.textual_private import draw_now

    written: list[str] = []
    display = App._display

    def displayed(self: App[Any], screen: Any, update: Any) -> None:
        if update is not None:
            written.append(
                re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", update.render_segments(self.console))
            )
        display(self, screen, update)

    monkeypatch.setattr(App, "_display", displayed)
    app = _Host()
    async with app.run_test(size=SIZE) as pilot:
        view = await _code_reserving_lines(app, pilot)
        written.clear()
        view.append("zebra = 9\n```\n")
        view.finish(keep_height=True)
        assert not written
        assert draw_now(app.screen, [view])
        assert len(written) == 1 and "zebra = 9" in written[0], written
        view.finish()  # the reserve given back: a layout is due
        assert not draw_now(app.screen, [view])
        assert len(written) == 1
        await pilot.pause()
        assert view._height() == view.size.height == _drawn(view)


async def test_a_last_text_longer_than_the_reserve_grows_the_reply() -> None:
    app = _Host()
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(StreamingMarkdown)
        view.append("Some prose to start with.\n\n")
        view.sync()
        await pilot.pause()
        reserved = view._height()
        view.append(_mixed(2))
        view.finish(keep_height=True)
        await pilot.pause()
        shown = _drawn(view)
        assert shown > reserved
        assert view._height() == view.size.height == shown
        view.finish()
        await pilot.pause()
        assert view.size.height == shown


def _table(rows: int) -> str:
    head = "| country | capital | population |\n|---|---|---|\n"
    return head + "".join(f"| Country {i} | City {i} | {i * 1000} |\n" for i in range(rows))


async def test_a_costly_open_block_is_drawn_at_most_a_quarter_of_the_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A table (or list) is drawn whole until it closes: a 300-row one took 140 ms a frame.
    On a clock where drawing costs 1 ms a line, the open block takes at most OPEN_DUTY of
    the time, a cheap one is drawn every frame, and the end is exact."""
    from tui.widgets import streaming_markdown as sm

    clock = [0.0]
    monkeypatch.setattr(sm, "OPEN_BUDGET_S", 0.008)
    monkeypatch.setattr(sm, "_now", lambda: clock[0])
    monkeypatch.setattr(sm, "_perf", lambda: clock[0])
    real = sm.StreamingMarkdown._render_open

    def costly(self: StreamingMarkdown, width: int, first: Any = False) -> None:
        real(self, width, first)
        clock[0] += 0.001 * len(self._open_lines)

    monkeypatch.setattr(sm.StreamingMarkdown, "_render_open", costly)
    app = _Host()
    async with app.run_test(size=SIZE):
        view = app.query_one(StreamingMarkdown)
        lines = _table(200).splitlines(keepends=True)
        drawing = 0.0
        behind: list[int] = []
        for i in range(0, len(lines), 2):
            view.append("".join(lines[i : i + 2]))
            before = clock[0]
            view.sync()
            drawing += clock[0] - before
            clock[0] += 0.05  # the next frame
            rows = sum("Country" in strip.text for strip in view._open_lines)
            behind.append(max(0, i - rows))
        assert drawing / clock[0] <= sm.OPEN_DUTY + 0.05, drawing / clock[0]
        assert behind[5] == 0  # small at first: drawn every frame
        assert max(behind) > 0  # large later: some frames wait
        view.finish()
        assert view.source == _table(200)
        shown = [line.rstrip() for line in _shown(view) if line.strip()]
        assert shown == [line.rstrip() for line in _whole(view, _table(200)) if line.strip()]


class _Pane(App[None]):
    """A reply streaming at the bottom of a list that follows it (as in a pane), and the same
    text fed to a view that draws every block (the reference)."""

    CSS = """
    MessageList { height: 1fr; overflow-y: scroll; }
    #refbox { height: 3; overflow-y: scroll; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        from textual.containers import VerticalScroll

        from tui.widgets.message_list import MessageList

        with MessageList():
            yield StreamingMarkdown("", driven=True, id="lazy")
        with VerticalScroll(id="refbox"):
            yield StreamingMarkdown("", driven=True, id="ref")


async def _pane_views(pilot: Any) -> tuple[StreamingMarkdown, StreamingMarkdown]:
    """A ``_Pane``'s two views, laid out: the one at the bottom of its list, and the reference,
    which draws every block."""
    app = pilot.app
    lazy = app.query_one("#lazy", StreamingMarkdown)
    ref = app.query_one("#ref", StreamingMarkdown)
    ref._lazy = lambda: False
    await pilot.pause()
    return lazy, ref


def _fast_text() -> str:
    """Prose, code, tables and lists, and a closing paragraph."""
    return _mixed(12) + "1. first\n2. second\n\n> a quote\n\nThe end of the reply.\n"


def _tokens(text: str) -> list[str]:
    import re

    return re.findall(r"\s*\S+|\s+", text)


def _on_screen(view: StreamingMarkdown) -> list[str]:
    """The view's rows the list shows now, as drawn."""
    from tui.widgets.message_list import MessageList

    lst = view.app.query_one(MessageList)
    viewport = lst.scrollable_content_region
    top = viewport.y - view.region.y
    drawn = view._closed_blocks.height + len(view._open_lines)  # not the lines reserved below
    rows = range(max(0, top), min(drawn, top + viewport.height))
    return [view.render_line(y).text for y in rows]


async def _stream(
    pilot: Any, views: list[StreamingMarkdown], text: str, tok_per_frame: int
) -> None:
    tokens = _tokens(text)
    for i in range(0, len(tokens), tok_per_frame):
        piece = "".join(tokens[i : i + tok_per_frame])
        for view in views:
            view.append(piece)
            view.sync()
        await pilot.pause()


async def test_fast_stream_sizes_unseen_blocks_and_scrolls_back_to_exactly_a_full_render(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 3,000 tok/s drawn at 20 frames a second: 150 tokens a frame, in a 12-row list. Blocks
    # that scroll past between frames are sized, not drawn; what is on screen is always what
    # a full render shows; after the end, the top of the reply, scrolled back to, is exact.
    # (Frames seconds apart on the reply's clock: its rate is a view's rows in more than
    # ROOM_FILL_S, so it scrolls row by row, not at its tail: the tail's own tests below.)
    _slow_clock(monkeypatch)
    text = _fast_text()
    app = _Pane()
    async with app.run_test(size=(70, 16)) as pilot:
        lazy, ref = await _pane_views(pilot)
        tokens = _tokens(text)
        for i in range(0, len(tokens), 150):
            piece = "".join(tokens[i : i + 150])
            for view in (lazy, ref):
                view.append(piece)
                view.sync()
            await pilot.pause()
            shown = _on_screen(lazy)
            assert shown and contiguous_in(shown, _shown(ref)), i
        drawn_while_streaming = lazy.rendered_blocks
        blocks = len(ref._blocks)
        lazy.finish()
        ref.finish()
        await pilot.pause()
        assert lazy.sized_blocks > blocks // 3
        assert drawn_while_streaming < blocks * 0.7, (drawn_while_streaming, blocks)
        from tui.widgets.message_list import MessageList

        lst = app.query_one(MessageList)
        lst.scroll_home(animate=False)
        await pilot.pause()
        await pilot.pause()
        assert lst.scroll_y == 0
        assert _on_screen(lazy) == _shown(ref)[: len(_on_screen(lazy))]
        assert _shown(lazy) == _shown(ref)
        assert lazy.source == ref.source == text


async def test_sized_blocks_are_drawn_after_the_end_only_once_nothing_streams() -> None:
    """After a reply ends, its sized blocks are drawn a step a frame, each step a layout of
    the screen (25-40 ms with four panes): while another reply on the screen still streams,
    the steps wait, and then they draw exactly what a full render gives."""
    text = _fast_text()
    app = _Pane()
    async with app.run_test(size=(70, 16)) as pilot:
        lazy, ref = await _pane_views(pilot)
        await _stream(pilot, [lazy, ref], text, 150)
        app.screen.streaming = True  # type: ignore[attr-defined]  # as a race screen says
        lazy.finish()
        ref.finish()
        pending = lazy.pending
        assert pending > 0
        await pilot.pause(0.4)  # eight frames
        assert lazy.pending == pending
        app.screen.streaming = False  # type: ignore[attr-defined]
        for _ in range(100):
            await pilot.pause(0.05)
            if not lazy.pending:
                break
        assert lazy.pending == 0
        assert _shown(lazy) == _shown(ref)


async def test_scrolling_up_while_streaming_keeps_rows_in_place_and_draws_them_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _slow_clock(monkeypatch)  # (not at its tail: see the test above)
    text = _fast_text()
    app = _Pane()
    async with app.run_test(size=(70, 16)) as pilot:
        from tui.widgets.message_list import MessageList

        lazy, ref = await _pane_views(pilot)
        half = len(text) // 2
        await _stream(pilot, [lazy, ref], text[:half], 150)
        assert lazy.pending > 0
        lst = app.query_one(MessageList)
        before = _on_screen(lazy)
        lst.scroll_up(animate=False)  # one row up: the rows seen move down by exactly one
        await pilot.pause()
        after = _on_screen(lazy)
        assert after[1:] == before[: len(after) - 1]
        for _ in range(6):  # page by page towards the top: always what a full render shows
            page = _on_screen(lazy)
            lst.scroll_page_up(animate=False)
            await pilot.pause()
            shown = _on_screen(lazy)
            # The new page, then the page before it: one run of a full render's lines.
            assert contiguous_in(shown + page, _shown(ref))
        await _stream(pilot, [lazy, ref], text[half:], 150)
        lazy.finish()
        ref.finish()
        await pilot.pause()
        assert _shown(lazy) == _shown(ref)


async def test_the_renderer_is_built_while_the_first_prompt_is_typed(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    # Its imports are kept out of start-up; without the preload the first reply's first code
    # block paid them (~90 ms) in the middle of streaming. (With an engine, they start once
    # it is up: ``test_the_renderer_is_built_once_the_engine_is_up_before_any_key``.)
    from tests.support.tui import make_app, mock_config, wait_until
    from tui.widgets.prompt_box import PromptBox
    from tui.widgets.streaming_markdown import lexer_for, markdown_class

    markdown_class.cache_clear()
    lexer_for.cache_clear()

    def built() -> bool:
        return markdown_class.cache_info().currsize == lexer_for.cache_info().currsize == 1

    app = make_app(
        mock_config(mock_server), isolated_home, models=["mock/mock-fast"], start_engine=False
    )
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.5)
        assert not built()  # not at start-up: it would cost the first frame
        app.screen.query_one(PromptBox).focus()
        await pilot.press("h")
        await wait_until(pilot, built, what="the renderer built")
        assert not app.screen.query(StreamingMarkdown)  # no reply drew it: the preload did


async def test_every_styled_line_is_the_line_the_view_holds() -> None:
    """A frame restyles only the lines from the open block down to the end of the text, old
    or new (the lines reserved below it stay blank). Checked where the text's lines shrink
    too: a fence opening or closing, a numbered list after a bullet list (the reply the mock
    server streams has all of them). After every piece, each line Textual's styles cache
    serves is the view's own line."""
    from textual._styles_cache import StylesCache
    from textual.geometry import Region

    from tests.support.mock_server import builtin_scenarios

    text = "".join(builtin_scenarios()["mock-markdown"]["tokens"])[:1400]
    app = _Host()
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(StreamingMarkdown)
        rnd = random.Random(3)
        i = shrank = 0
        while i < len(text):
            before = _drawn(view)
            step = rnd.randint(1, 6)
            view.append(text[i : i + step])
            i += step
            view.sync()
            shrank += _drawn(view) < before
            await pilot.pause()
            width, height = view.size
            styled = view.render_lines(Region(0, 0, width, height))  # cached for the next piece
            own = [view.render_line(y).text.ljust(width)[:width] for y in range(height)]
            assert [strip.text for strip in styled] == own, i
            # Styles too: what a fresh styles cache (Textual, from nothing) draws.
            assert styled == StylesCache().render_widget(view, Region(0, 0, width, height)), i
        assert shrank >= 2


async def test_a_step_along_and_the_end_keep_the_styled_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step along and the end of a reply change its height and no line of its text: they
    ask for a layout and keep Textual's styles cache (a plain refresh emptied it, a cost that
    grew with the reply), and every line the cache serves is still the view's own."""
    from textual.geometry import Region

    from tui.widgets import streaming_markdown

    clock = [100.0]
    monkeypatch.setattr(streaming_markdown, "_now", lambda: clock[0])
    app = _Host()
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(StreamingMarkdown)
        view.append(_prose(60) + "\n\n```python\n")
        view.sync()
        await pilot.pause()
        above = view._closed_blocks.height  # the paragraph's rows, which the end leaves as is
        assert above >= 3
        i = 0
        # Until a step leaves fewer than half a step's lines to go, so that it steps along.
        while not (0 < 2 * (view._reserved + 1 - _drawn(view)) < view._ahead) or i < 12:
            clock[0] += 0.04
            view.append(f"x_{i} = {i}\n")
            i += 1
            view.sync()
            await pilot.pause()

        def styled() -> list[str]:
            width, height = view.size
            return [s.text for s in view.render_lines(Region(0, 0, width, height))]

        def own() -> list[str]:
            width, height = view.size
            return [view.render_line(y).text.ljust(width)[:width] for y in range(height)]

        styled()
        cache = view._styles_cache
        kept = dict(cache._cache)
        height = view.size.height
        assert view.step_along()
        await pilot.pause()
        assert view.size.height > height
        assert all(cache._cache.get(y) is line for y, line in kept.items())
        assert styled() == own()
        view.append("```\n")
        view.finish()
        await pilot.pause()
        assert view.size.height == _drawn(view)
        assert all(cache._cache.get(y) is kept[y] for y in range(above))
        assert styled() == own()


# --- tail mode: a busy reply that fills its view is drawn at the bottom of its lines ----------


def _in_view(view: StreamingMarkdown) -> list[str]:
    """The view's rows the list shows now, as its ``render_lines`` serves them to the screen
    (in tail mode, straight from its lines)."""
    from textual.geometry import Region

    from tui.widgets.message_list import MessageList

    lst = view.app.query_one(MessageList)
    viewport = lst.scrollable_content_region
    top = max(0, viewport.y - view.region.y)
    bottom = min(view.size.height, viewport.y + viewport.height - view.region.y)
    strips = view.render_lines(Region(0, top, view.size.width, max(0, bottom - top)))
    return [strip.text for strip in strips]


def _blank_end(rows: list[str]) -> int:
    """How many blank rows end ``rows``."""
    return len(rows) - len(list(dropwhile(lambda r: not r.strip(), rows[::-1])))


def _slow_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reply's clock (``_now``) advances 5 s at each reading: frames far apart, so a
    reply's rate is a few rows a second, whatever it is fed."""
    from itertools import count

    monkeypatch.setattr("tui.widgets.streaming_markdown._now", count(1000.0, 5.0).__next__)


def _tailing(view: StreamingMarkdown) -> bool:
    return view.in_tail


async def _stream_busy(
    pilot: Any,
    lazy: StreamingMarkdown,
    ref: StreamingMarkdown,
    text: str,
    tok_per_frame: int,
    check: bool = True,
) -> int:
    """Stream ``text`` to both views as a busy screen does (``sync(busy=True)``); with
    ``check``, after every frame the rows in view are a run of a full render's lines, and
    in tail mode they end with the text's last row (no blank reserved row in view). Returns
    the frames that were in tail mode."""
    tails = 0
    tokens = _tokens(text)
    for i in range(0, len(tokens), tok_per_frame):
        piece = "".join(tokens[i : i + tok_per_frame])
        for view in (lazy, ref):
            view.append(piece)
            view.sync(busy=True)
        await pilot.pause()
        if not check:
            continue
        shown = _in_view(lazy)
        if not lazy.in_tail:  # the lines reserved below the text are blank
            while shown and not shown[-1].strip():
                shown.pop()
        assert shown and contiguous_in(shown, _shown(ref)), i
        if lazy.in_tail:
            tails += 1
            assert shown[-1] == _shown(ref)[-1], i  # the text's last row, at the bottom
    return tails


async def test_a_busy_reply_that_fills_its_view_is_drawn_at_its_tail() -> None:
    """At 3,000 tok/s in a busy screen, once the text fills the list's view the reply takes
    its lines many views at a time and draws the text at their bottom: every frame shows a
    full render's last rows, never a reserved blank one, and the reply's height steps a few
    times instead of every few frames. Its lines are served without Textual's styles cache,
    and are exactly what that cache serves. After the end, the whole reply is exact."""
    from textual._styles_cache import StylesCache
    from textual.geometry import Region

    from tui.widgets.message_list import MessageList

    text = _fast_text()
    app = _Pane()
    async with app.run_test(size=(70, 16)) as pilot:
        lazy, ref = await _pane_views(pilot)
        heights: set[int] = set()
        tails = 0
        tokens = _tokens(text)
        for i in range(0, len(tokens), 150):
            tails += await _stream_busy(pilot, lazy, ref, "".join(tokens[i : i + 150]), 150)
            heights.add(lazy.size.height)
            if lazy.in_tail:
                width, height = lazy.size
                crop = Region(0, height - 12, width, 12)
                served = lazy.render_lines(crop)
                assert served == StylesCache().render_widget(lazy, crop), i
        assert tails >= 5
        rows = app.query_one(MessageList).scrollable_content_region.height
        assert len(heights) <= 1 + len(_shown(ref)) // (3 * rows), heights
        lazy.finish(keep_height=True)
        ref.finish(keep_height=True)
        await pilot.pause()
        assert _in_view(lazy)[-1] == _shown(ref)[-1]  # the last text stays where it was
        lazy.finish()
        ref.finish()
        await pilot.pause()
        assert not lazy.in_tail
        assert lazy.size.height == lazy._text_lines  # no reserved line left
        assert _in_view(lazy)[-1] == _shown(ref)[-1]
        lst = app.query_one(MessageList)
        lst.scroll_home(animate=False)
        await pilot.pause()
        await pilot.pause()
        assert _in_view(lazy) == _shown(ref)[: len(_in_view(lazy))]
        assert _shown(lazy) == _shown(ref)
        assert lazy.source == ref.source == text


async def test_a_reply_that_will_fill_its_view_soon_takes_the_rows_left_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reply growing fast enough to fill the rest of its list's view within ``ROOM_FILL_S``
    takes those rows at a step (they show blank, as reserved rows do): one step, one layout
    of the screen, where it stepped every half second's worth of text before. The list does
    not scroll while the text fits, and the rows in view are the text, then blank rows.

    At 80 tok/s on the reply's clock (4 tokens a frame, 20 frames a second). On the wall's,
    the rate was the host's: on a fast one, two frames a millisecond apart made a rate so
    high that the reply took its tail at its first step, and the list scrolled."""
    from tui.widgets import streaming_markdown as sm
    from tui.widgets.message_list import MessageList

    clock = [1000.0]
    monkeypatch.setattr(sm, "_now", lambda: clock[0])

    class _RacePane(_Pane):  # a race's pane: its turns start at the top while they fit
        def compose(self) -> ComposeResult:
            from textual.containers import VerticalScroll

            with MessageList(top_aligned=True):
                yield StreamingMarkdown("", driven=True, id="lazy")
            with VerticalScroll(id="refbox"):
                yield StreamingMarkdown("", driven=True, id="ref")

    text = _fast_text()
    app = _RacePane()
    async with app.run_test(size=(70, 40)) as pilot:
        lazy, ref = await _pane_views(pilot)
        lst = app.query_one(MessageList)
        rows = lst.scrollable_content_region.height
        heights = []
        tokens = _tokens(text)
        i = 0
        while lazy._text_lines < rows - 1:
            clock[0] += 0.05
            await _stream_busy(pilot, lazy, ref, "".join(tokens[i : i + 4]), 4, check=False)
            i += 4
            if lazy.size.height not in heights:
                heights.append(lazy.size.height)
            assert lst.scroll_y == 0, i
            shown = _in_view(lazy)
            text_rows = shown[: lazy._text_lines]
            assert contiguous_in(text_rows, _shown(ref)) and text_rows[0] == _shown(ref)[0]
            assert not any(r.strip() for r in shown[lazy._text_lines :]), i
        assert rows in heights, (rows, heights)  # the rows left, taken at once
        assert len(heights) <= 3, heights


async def test_at_its_tail_the_text_jumps_and_frames_between_jumps_redraw_new_rows() -> None:
    """At its tail, a reply streaming a few rows a frame scrolls in jumps (``TAIL_JUMP``):
    the rows in view are a full render's, ending with the text's last row, then at most a
    jump's blank rows; a frame between two jumps redraws only the rows that changed, not the
    view (each frame moved every row in view before: four whole panes composed and written
    at every frame). After the end, the whole reply is exact."""
    from textual.geometry import Region

    from tui.widgets.message_list import MessageList
    from tui.widgets.streaming_markdown import TAIL_JUMP

    text = _fast_text() * 2
    app = _Pane()
    async with app.run_test(size=(70, 24)) as pilot:
        lazy, ref = await _pane_views(pilot)
        rows = app.query_one(MessageList).scrollable_content_region.height
        jump = round(rows * TAIL_JUMP)
        asked: list[Region] = []
        refresh = lazy.refresh

        def spy(*regions: Region, **kw: Any) -> Any:
            asked.extend(regions)
            return refresh(*regions, **kw)

        lazy.refresh = spy  # type: ignore[method-assign]
        tokens = _tokens(text)
        partial = whole = 0
        for i in range(0, len(tokens), 6):
            asked.clear()
            jumps, height = lazy.jumps, lazy._height()
            await _stream_busy(pilot, lazy, ref, "".join(tokens[i : i + 6]), 6, check=False)
            if not lazy.in_tail:
                continue
            shown, full = _in_view(lazy), _shown(ref)
            text_end = len(full) - _blank_end(full)  # (a block's blank line may end it)
            gap = _blank_end(shown) - _blank_end(full)
            assert 0 <= gap <= jump, (i, gap, jump)
            assert shown[len(shown) - gap - 1] == full[-1], i  # the text's last row
            assert shown[len(shown) - _blank_end(shown) - 1] == full[text_end - 1], i
            assert contiguous_in(shown[: len(shown) - gap], full), i
            if lazy.jumps == jumps and lazy._height() == height and asked:
                partial += 1
                assert sum(r.height for r in asked) < rows, (i, asked)
            else:
                whole += 1
        assert lazy.jumps >= 3 and partial > 2 * whole, (lazy.jumps, partial, whole)
        lazy.finish()
        ref.finish()
        await pilot.pause()
        assert _shown(lazy) == _shown(ref)
        assert _in_view(lazy)[-1] == _shown(ref)[-1]


async def test_scrolling_up_from_the_tail_keeps_the_rows_in_view() -> None:
    """The user scrolls up while a reply streams at its tail: the text goes back to the top
    of its lines and the list scrolls by as much, so the rows in view move by exactly the
    rows scrolled; every page up is a full render's; at the end the reply is exact."""
    from tui.widgets.message_list import MessageList

    text = _fast_text()
    app = _Pane()
    async with app.run_test(size=(70, 16)) as pilot:
        lazy, ref = await _pane_views(pilot)
        half = len(text) // 2
        await _stream_busy(pilot, lazy, ref, text[:half], 150)
        assert lazy.in_tail
        lst = app.query_one(MessageList)
        before = _in_view(lazy)
        lst.scroll_up(animate=False)  # one row up: the rows seen move down by exactly one
        await pilot.pause()
        await pilot.pause()
        assert not _tailing(lazy)  # (read again: mypy takes the property for a constant)
        after = _in_view(lazy)
        assert after[1:] == before[: len(after) - 1]
        for _ in range(4):
            page = _in_view(lazy)
            lst.scroll_page_up(animate=False)
            await pilot.pause()
            shown = _in_view(lazy)
            assert contiguous_in(shown + page, _shown(ref))
        await _stream_busy(pilot, lazy, ref, text[half:], 150, check=False)
        assert not _tailing(lazy)  # the list no longer follows it
        lazy.finish()
        ref.finish()
        await pilot.pause()
        assert _shown(lazy) == _shown(ref)
        lst.resume_follow()
        await pilot.pause()
        await pilot.pause()
        assert _in_view(lazy)[-1] == _shown(ref)[-1]


async def test_a_reply_that_does_not_fill_its_view_or_a_quiet_screen_takes_no_tail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tail mode needs a busy screen, or a reply that grows a view in ``ROOM_FILL_S`` or
    less, and text that fills the view: a short reply, or a slower one on a screen that keeps
    up (``sync()``), steps as before."""
    _slow_clock(monkeypatch)
    app = _Pane()
    async with app.run_test(size=(70, 16)) as pilot:
        lazy = app.query_one("#lazy", StreamingMarkdown)
        ref = app.query_one("#ref", StreamingMarkdown)
        await pilot.pause()
        await _stream_busy(pilot, lazy, ref, _prose(30), 5)
        assert not lazy.in_tail  # busy, but the text is shorter than the view
        await _stream(pilot, [lazy, ref], _fast_text(), 150)
        assert not lazy.in_tail  # long, but the screen keeps up


async def test_a_reply_growing_a_view_a_second_takes_its_tail_on_a_quiet_screen() -> None:
    """A reply that grows a view's rows in ``ROOM_FILL_S`` or less takes its tail once its text
    fills the view, before the frame pacer says the screen is busy (a race's first second:
    each step before it laid out every pane), and shows a full render's rows there."""
    app = _Pane()
    async with app.run_test(size=(70, 16)) as pilot:
        lazy, ref = await _pane_views(pilot)
        tokens = _tokens(_fast_text())
        tails = 0
        for i in range(0, len(tokens), 30):
            for view in (lazy, ref):
                view.append("".join(tokens[i : i + 30]))
                view.sync()  # not busy
            await pilot.pause()
            if lazy.in_tail:
                tails += 1
                shown = _in_view(lazy)
                assert contiguous_in(shown[: len(shown) - _blank_end(shown)], _shown(ref)), i
        assert tails >= 5


class _TopAlignedPane(App[None]):
    """A compare pane's list: its turns start at its top while they fit (``top_aligned``), a
    prompt above the reply, the bar's columns kept (drawn blank while the turns fit)."""

    CSS = """
    MessageList { height: 1fr; overflow-y: scroll; scrollbar-gutter: stable; }
    #prompt { height: 6; }
    #refbox { height: 3; overflow-y: scroll; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        from textual.containers import VerticalScroll
        from textual.widgets import Static

        from tui.textual_private import OneLayout
        from tui.widgets.message_list import MessageList

        class RefBox(OneLayout, VerticalScroll):
            """The reference's box: its size updates ask for no layout of their own (the
            test counts the layouts the pane's reply makes)."""

        with MessageList(top_aligned=True):
            yield Static("the prompt", id="prompt")
            yield StreamingMarkdown("", driven=True, id="lazy")
        with RefBox(id="refbox"):
            yield StreamingMarkdown("", driven=True, id="ref")


async def test_a_fast_reply_in_turns_that_fit_takes_its_tail_in_one_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a pane whose turns fit (a race's start), a busy reply takes its tail once its text
    fills the view less a jump, before it overflows: its first row goes to the view's top
    (the prompt scrolls out), blank rows below it, in one layout, the list following its end
    from that layout. Taken only after an overflow step, and anchored only by the layout
    after, a race's start made two more layouts of every pane, and one of them showed the
    blank rows above the text. No frame shows a blank row above the text."""
    from textual.screen import Screen

    from tui.widgets.message_list import MessageList

    layouts = [0]
    refresh_layout = Screen._refresh_layout

    def counted(screen: Screen[Any], *args: Any, **kwargs: Any) -> None:
        layouts[0] += 1
        refresh_layout(screen, *args, **kwargs)

    monkeypatch.setattr(Screen, "_refresh_layout", counted)
    app = _TopAlignedPane()
    async with app.run_test(size=(70, 30)) as pilot:
        lazy, ref = await _pane_views(pilot)
        lst = app.query_one(MessageList)
        tokens = _tokens(_fast_text())
        entered = tails = 0
        for i in range(0, len(tokens), 12):
            was_tail, before = lazy.in_tail, layouts[0]
            for view in (lazy, ref):
                view.append("".join(tokens[i : i + 12]))
                view.sync(busy=True)
            await pilot.pause()
            await pilot.pause()
            if not lazy.in_tail:
                continue
            tails += 1
            shown, text = _in_view(lazy), _shown(ref)
            top = lst.scrollable_content_region.y - lazy.region.y  # the view's row in view
            assert top >= lazy._shift(), i  # never a blank row reserved above the text
            assert contiguous_in(shown[: len(shown) - _blank_end(shown)], text), i
            if not was_tail:
                entered += 1
                rows = lst.scrollable_content_region.height
                assert len(text) < rows, (len(text), rows)  # before the text overflowed
                assert shown[: len(text)] == text, i  # from its first row, at the top
                assert not "".join(shown[len(text) :]).strip() and len(shown) == rows, i
                assert lst.scroll_y == lst.max_scroll_y > 0 and lst.follow
                assert layouts[0] - before == 1, layouts[0] - before
        assert entered == 1 and tails >= 5


async def test_a_fast_reply_at_its_tail_reserves_what_it_grows_in_tail_ahead_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At its tail, a reply growing many views a second reserves, at a step, the rows it grows
    in ``TAIL_AHEAD_S`` at its rate since the last step (more than ``TAIL_VIEWS`` views here),
    so that its steps (each a layout of the screen) are that far apart. What the view shows
    stays a full render's last rows, and the end is exact."""
    from tui.widgets import streaming_markdown as sm
    from tui.widgets.message_list import MessageList

    clock = [100.0]
    monkeypatch.setattr(sm, "_now", lambda: clock[0])
    text = _fast_text() * 4
    app = _Pane()
    async with app.run_test(size=(70, 16)) as pilot:
        lazy, ref = await _pane_views(pilot)
        tokens = _tokens(text)
        steps: list[tuple[float, int, int]] = []  # (time, text rows, rows taken) at tail steps
        for i in range(0, len(tokens), 150):  # 3,000 tok/s at 20 frames a second
            clock[0] += 0.05
            piece = "".join(tokens[i : i + 150])
            for view in (lazy, ref):
                view.append(piece)
                view.sync(busy=True)
            await pilot.pause()
            if lazy.in_tail and (not steps or lazy._reserved != steps[-1][2]):
                steps.append((clock[0], lazy._text_lines, lazy._reserved))
            if lazy.in_tail:
                assert _in_view(lazy)[-1] == _shown(ref)[-1], i
        assert len(steps) >= 2
        (t0, n0, _), (t1, n1, taken) = steps[0], steps[1]
        views = app.query_one(MessageList).scrollable_content_region.height * sm.TAIL_VIEWS
        rate = (n1 - n0) / (t1 - t0)
        ahead = min(round(rate * sm.TAIL_AHEAD_S), sm.TAIL_MAX_VIEWS * views // sm.TAIL_VIEWS)
        assert taken - (n1 - 1) >= ahead > views
        if lazy._text_lines <= taken:
            assert len(steps) == 2  # the rest of the reply fitted in what that step took
        lazy.finish()
        ref.finish()
        await pilot.pause()
        assert _shown(lazy) == _shown(ref)


async def test_views_per_s_follows_how_fast_the_text_moves_through_the_view(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the frame pacer reads (``views_per_s``): the text's rows a second over the list's
    view rows, a moving average over ``SCROLL_TAU_S``. At 3,000 tok/s the text moves more than
    ``FAST_VIEWS_PER_S`` views a second; at 100 tok/s, far fewer; and the average follows a
    change of rate in a few seconds."""
    from tui.frame_pacer import FAST_VIEWS_PER_S
    from tui.widgets import streaming_markdown as sm
    from tui.widgets.message_list import MessageList

    clock = [100.0]
    monkeypatch.setattr(sm, "_now", lambda: clock[0])
    app = _Pane()
    async with app.run_test(size=(70, 16)) as pilot:
        lazy, _ = await _pane_views(pilot)
        rows = app.query_one(MessageList).scrollable_content_region.height
        tokens = _tokens(_fast_text() * 8)
        assert len(tokens) >= 6300

        async def stream(per_frame: int, frames: int, start: int) -> tuple[float, float]:
            """Stream ``per_frame`` tokens a frame at 20 frames a second; the last second's
            true rate in views a second, and what the view says."""
            marks = []
            for k in range(frames):
                clock[0] += 0.05
                i = start + k * per_frame
                lazy.append("".join(tokens[i : i + per_frame]))
                lazy.sync(busy=True)
                marks.append(lazy._text_lines)
                await pilot.pause()
            return (marks[-1] - marks[-21]) / rows, lazy.views_per_s

        true_fast, said_fast = await stream(150, 40, 0)  # 3,000 tok/s for 2 s
        assert true_fast >= FAST_VIEWS_PER_S
        assert said_fast == pytest.approx(true_fast, rel=0.35)
        true_slow, said_slow = await stream(5, 60, 6000)  # then 100 tok/s for 3 s
        assert said_slow == pytest.approx(true_slow, abs=0.3), (true_slow, said_slow)
        assert said_slow < FAST_VIEWS_PER_S / 2


async def test_a_burst_at_the_tail_reserves_at_most_tail_max_views(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reply at its tail that gets a burst (thousands of rows in one frame a millisecond
    after the last step: a rate of millions of rows a second) reserves at most
    ``TAIL_MAX_VIEWS`` views ahead, and is still drawn exactly."""
    from tui.widgets import streaming_markdown as sm
    from tui.widgets.message_list import MessageList

    clock = [100.0]
    monkeypatch.setattr(sm, "_now", lambda: clock[0])
    app = _Pane()
    async with app.run_test(size=(70, 16)) as pilot:
        lazy, ref = await _pane_views(pilot)
        text = _fast_text()
        while not lazy.in_tail:
            clock[0] += 0.05
            for view in (lazy, ref):
                view.append(text)
                view.sync(busy=True)
            await pilot.pause()
        rows = app.query_one(MessageList).scrollable_content_region.height
        before = lazy._reserved
        while lazy._reserved == before:  # until the burst makes it step
            clock[0] += 0.001
            for view in (lazy, ref):
                view.append(text * 4)
                view.sync(busy=True)
            await pilot.pause()
        assert lazy._ahead == sm.TAIL_MAX_VIEWS * rows  # not its rate × TAIL_AHEAD_S
        assert _in_view(lazy)[-1] == _shown(ref)[-1]
        lazy.finish()
        ref.finish()
        await pilot.pause()
        assert _shown(lazy) == _shown(ref)


async def test_a_view_that_grows_past_the_text_leaves_the_tail() -> None:
    """The window grows taller than the text while a reply streams at its tail: the next
    frame puts the text back at the top of its lines, so the view shows it from its first
    row, not rows reserved above it."""
    app = _Pane()
    async with app.run_test(size=(70, 16)) as pilot:
        lazy, ref = await _pane_views(pilot)
        tokens = _tokens(_fast_text())
        i = 0
        while not lazy.in_tail:
            await _stream_busy(pilot, lazy, ref, "".join(tokens[i : i + 20]), 20, check=False)
            i += 20
        assert lazy._text_lines < 50
        await pilot.resize_terminal(70, 60)
        await pilot.pause()
        await _stream_busy(pilot, lazy, ref, "".join(tokens[i : i + 5]), 5, check=False)
        assert not _tailing(lazy)
        shown = _in_view(lazy)
        assert shown[0] == _shown(ref)[0]


async def test_an_animated_page_up_from_the_tail_goes_one_page_up() -> None:
    """A page up as a key does it (animated) from a reply's tail: the first step of the
    animation leaves tail mode and moves the rows; the animation goes on to the rows one page
    above, not to its old offset (which, the rows above the text gone, was the end)."""
    from tui.widgets.message_list import MessageList

    text = _fast_text()
    app = _Pane()
    async with app.run_test(size=(70, 16)) as pilot:
        lazy, ref = await _pane_views(pilot)
        await _stream_busy(pilot, lazy, ref, text[: len(text) // 2], 150)
        assert lazy.in_tail
        lst = app.query_one(MessageList)
        before = _in_view(lazy)
        lst.scroll_page_up()
        await wait_until(
            pilot,
            lambda: not lazy.in_tail and not app.animator.is_being_animated(lst, "scroll_y"),
            what="the scroll",
        )
        after = _in_view(lazy)
        assert lst.scroll_y < lst.max_scroll_y
        assert contiguous_in(after + before, _shown(ref))  # the page above, then the one seen


async def test_a_window_growing_taller_draws_what_comes_into_the_tails_view() -> None:
    """Before a taller window's layout, the race screen has each list draw the sized blocks
    that will come into view (``MessageList.reveal_ahead``): at a reply's tail its rows are
    counted from the text's end, and the rows in view do not move (the first version of tail
    mode recursed here without end)."""
    from tui.widgets.message_list import MessageList

    text = _fast_text()
    app = _Pane()
    async with app.run_test(size=(70, 16)) as pilot:
        lazy, ref = await _pane_views(pilot)
        await _stream_busy(pilot, lazy, ref, text[: len(text) // 2], 150)
        assert lazy.in_tail and lazy.pending
        lst = app.query_one(MessageList)
        pending = lazy.pending
        lst.reveal_ahead(lst.scrollable_content_region.height + 10)
        assert lazy.pending < pending  # the blocks the taller view will show, drawn
        await pilot.resize_terminal(70, 26)
        await pilot.pause()
        await pilot.pause()
        shown = _in_view(lazy)
        assert shown[-1] == _shown(ref)[-1]
        assert contiguous_in(shown, _shown(ref))
        assert lazy.late_draws == 0

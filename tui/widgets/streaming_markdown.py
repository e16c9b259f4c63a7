"""Markdown that streams in at bounded cost per append, however long the reply (DESIGN §7).

Textual's ``Markdown.append`` re-splits the whole source on every call, re-highlights an open
code fence in full and remounts open lists; and every ``Markdown`` block is about a dozen
widgets that each layout pass walks. Measured here: two panes at 100 tok/s took 55% of a core,
and opening 12 turns of a long conversation took 3.9 s. So the document is split into top-level
blocks, each drawn by Rich's markdown renderer inside one widget:

- closed blocks (every block but the last) are rendered once, as ``MarkdownBlock`` widgets
  grouped in chunks of ``CHUNK_BLOCKS``, and never touched again;
- the open (last) block is re-rendered as it grows, except an open code fence, which only
  highlights the lines completed since the last frame (``OpenFence``), so a 1,000-line fence
  costs the same per line as a 10-line one.

Appends are coalesced: ``append`` records text; the widget re-syncs at most ``fps`` times a
second. ``finish`` renders what is left. ``source`` is exactly what was fed.
"""

from __future__ import annotations

import re
from typing import ClassVar

from markdown_it import MarkdownIt
from markdown_it.token import Token
from rich.console import Console, ConsoleOptions, RenderResult
from rich.markdown import Markdown as RichMarkdown
from rich.segment import Segment
from rich.syntax import Syntax
from rich.text import Text
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

CHUNK_BLOCKS = 24
FENCE_CHUNK_LINES = 24
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


def _parser() -> MarkdownIt:
    return MarkdownIt("gfm-like")


def code_theme(dark: bool) -> str:
    """The Pygments theme for code, by the app theme's light or dark mode."""
    return "monokai" if dark else "default"


class Trimmed:
    """A renderable without the blank lines Rich puts before lists, quotes and tables, or
    around a code block, so that blocks drawn one by one are spaced like a whole document
    (the widgets' margins do the spacing)."""

    def __init__(self, renderable: RichMarkdown) -> None:
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


def render_markdown(source: str, dark: bool) -> Trimmed:
    """One piece of markdown as Rich draws it, with code coloured for the app's mode."""
    theme = code_theme(dark)
    return Trimmed(
        RichMarkdown(source, code_theme=theme, inline_code_theme=theme, hyperlinks=False)
    )


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


class MarkdownBlock(Static):
    """Markdown drawn once by Rich (redrawn only when the theme turns light or dark)."""

    DEFAULT_CSS = """
    MarkdownBlock { height: auto; padding: 0; margin: 0 0 1 0; }
    """

    def __init__(self, source: str, *, classes: str | None = None) -> None:
        self.source = source
        self._dark: bool | None = None
        super().__init__("", classes=classes)

    def on_mount(self) -> None:
        self.draw()
        self.watch(self.app, "theme", lambda _: self.draw(), init=False)

    def draw(self) -> None:
        dark = self.app.current_theme.dark
        self._dark = dark
        self.update(render_markdown(self.source.rstrip("\n"), dark))

    def set_source(self, source: str) -> None:
        """Replace the text (the open block as it grows)."""
        if source != self.source:
            self.source = source
            if self.is_mounted:
                self.draw()


class _Chunk(Vertical):
    """Up to ``CHUNK_BLOCKS`` closed blocks, so a long reply is a short list of containers."""

    DEFAULT_CSS = """
    _Chunk { height: auto; padding: 0; margin: 0; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.blocks = 0


class OpenFence(Vertical):
    """An open code fence: completed lines are highlighted once, in chunks of lines."""

    DEFAULT_CSS = """
    OpenFence {
        height: auto;
        margin: 0 0 1 0;
        padding: 1 1;
        & > Static { width: 1fr; height: auto; }
    }
    """

    def __init__(self, language: str) -> None:
        super().__init__(classes="-open-fence")
        self.language = language or "text"
        self._done = 0  # complete lines already rendered
        self._chunk_lines: list[str] = []
        self._chunk: Static | None = None
        self._partial = Static("", classes="-partial")
        self.highlight_calls = 0  # lines highlighted, for tests of the cost bound

    def _syntax(self, code: str) -> Syntax:
        self.highlight_calls += code.count("\n") + 1
        dark = self.app.current_theme.dark
        return Syntax(
            code, self.language, theme=code_theme(dark), word_wrap=True, background_color="default"
        )

    def show(self, fence_source: str) -> None:
        """Bring the fence up to date with its source (opener line included)."""
        lines = fence_source.split("\n")[1:]
        for i, line in enumerate(lines):
            if _FENCE_CLOSE.match(line):
                lines = [*lines[:i], ""]
                break
        complete, partial = lines[:-1], lines[-1] if lines else ""
        new = complete[self._done :]
        if new:
            self._done = len(complete)
            for line in new:
                if self._chunk is None or len(self._chunk_lines) >= FENCE_CHUNK_LINES:
                    if self._chunk is not None:
                        self._chunk.update(self._syntax("\n".join(self._chunk_lines)))
                    self._chunk_lines = []
                    self._chunk = Static("", classes="-lines")
                    placed = self._partial.parent is self
                    self.mount(self._chunk, before=self._partial if placed else None)
                self._chunk_lines.append(line)
            assert self._chunk is not None
            self._chunk.update(self._syntax("\n".join(self._chunk_lines)))
        if self._partial.parent is None:
            self.mount(self._partial)
        self._partial.update(Text(partial))
        self._partial.display = bool(partial)


class StreamingMarkdown(Widget):
    """Markdown fed piece by piece; ``source`` is exactly what was fed."""

    DEFAULT_CSS = """
    StreamingMarkdown {
        height: auto;
        layout: vertical;
    }
    """

    fps: ClassVar[float] = 30.0

    def __init__(
        self, source: str = "", *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._parts: list[str] = [source] if source else []
        self._closed_upto = 0  # characters of source rendered as closed blocks
        self._open_kind: str | None = None
        self._open_start = -1
        self._open: Widget | None = None
        self._chunks: list[_Chunk] = []
        self._scheduled = False
        self._finished = False
        self._synced_len = -1
        self.syncs = 0
        self._md = _parser()

    @property
    def source(self) -> str:
        """Everything fed so far, byte for byte."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def on_mount(self) -> None:
        if self._parts:
            self._sync(final=self._finished)

    def append(self, text: str) -> None:
        """Add text; it is rendered within 1/fps seconds."""
        if not text:
            return
        self._parts.append(text)
        if not self._scheduled and self.is_mounted:
            self._scheduled = True
            self.set_timer(1.0 / self.fps, self._scheduled_sync)

    def _scheduled_sync(self) -> None:
        self._scheduled = False
        if not self._finished:
            self._sync(final=False)

    def finish(self) -> None:
        """The stream is over: render the last block as a closed one."""
        self._finished = True
        if self.is_mounted:
            self._sync(final=True)

    def _sync(self, final: bool) -> None:
        source = self.source
        if not final and len(source) == self._synced_len:
            return
        self._synced_len = len(source)
        self.syncs += 1
        tail = source[self._closed_upto :]
        with self.app.batch_update():
            if final:
                self._closed_upto = len(source)
                self._drop_open()
                if tail.strip():
                    self._close(tail)
                return
            tokens = self._md.parse(tail)
            starts = block_starts(tokens)
            if len(starts) >= 2:
                lines = tail.splitlines(keepends=True)
                closed_text = "".join(lines[: starts[-1][0]])
                self._drop_open()
                self._close(closed_text)
                self._closed_upto += len(closed_text)
                tail = tail[len(closed_text) :]
                first: Token | None = starts[-1][1]
            else:
                first = starts[0][1] if starts else None
            self._show_open(tail, first)

    def _close(self, text: str) -> None:
        """Render closed blocks once, in the current chunk."""
        if not text.strip():
            return
        tokens = self._md.parse(text)
        lines = text.splitlines(keepends=True)
        bounds = [s for s, _ in block_starts(tokens)] or [0]
        bounds[0] = 0
        for start, end in zip(bounds, [*bounds[1:], len(lines)], strict=True):
            block = "".join(lines[start:end])
            if not block.strip():
                continue
            chunk = self._chunks[-1] if self._chunks else None
            if chunk is None or chunk.blocks >= CHUNK_BLOCKS:
                chunk = _Chunk()
                self._chunks.append(chunk)
                self.mount(chunk, before=self._open)
            chunk.mount(MarkdownBlock(block, classes="-closed"))
            chunk.blocks += 1

    def _drop_open(self) -> None:
        if self._open is not None:
            self._open.remove()
        self._open = None
        self._open_kind = None
        self._open_start = -1

    def _show_open(self, tail: str, first: Token | None) -> None:
        if first is None:
            self._drop_open()
            return
        kind = "fence" if first.type == "fence" else "block"
        if kind != self._open_kind or self._open_start != self._closed_upto:
            self._drop_open()
            widget: Widget
            if kind == "fence":
                widget = OpenFence((first.info or "").split(" ")[0])
            else:
                widget = MarkdownBlock(tail, classes="-open-block")
            self._open = widget
            self._open_kind = kind
            self._open_start = self._closed_upto
            self.mount(widget)
        w = self._open
        if isinstance(w, OpenFence):
            w.show(tail)
        elif isinstance(w, MarkdownBlock):
            w.set_source(tail)

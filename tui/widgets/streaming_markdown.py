"""Markdown that streams in at constant cost per append, however long the reply (DESIGN §7).

Textual's ``Markdown.append`` re-splits the whole source on every call, re-highlights an open
code fence in full and remounts open lists. Here the document is split into top-level blocks:

- closed blocks (every block but the last) are rendered once, appended to a ``Markdown`` chunk
  that holds at most ``CHUNK_BLOCKS`` of them, and never touched again;
- the open (last) block is rendered by a widget that does work in proportion to what changed:
  ``OpenFence`` highlights only the lines that completed since the last frame, ``OpenList``
  renders finished items once and re-renders only the item being written, and anything else
  (a paragraph, a table, a quote) goes through a small ``Markdown`` of its own.

Appends are coalesced: ``append`` only records text; the widget re-syncs at most ``fps`` times a
second. ``finish`` renders what is left, after which the whole reply is closed blocks.
"""

from __future__ import annotations

import re
from typing import ClassVar

from markdown_it import MarkdownIt
from markdown_it.token import Token
from textual.containers import Vertical
from textual.content import Content
from textual.widget import AwaitMount, Widget
from textual.widgets import Markdown, Static
from textual.widgets._markdown import MarkdownFence

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


class ClosedBlock(Markdown):
    """One closed top-level block, rendered once when mounted and never again."""

    DEFAULT_CSS = """
    ClosedBlock { padding: 0; margin: 0; }
    """


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
        margin: 1 0;
        padding: 1 2;
        background: black 10%;
        &:light { background: white 30%; }
        & > Static { width: auto; height: auto; }
        & > .-lang { color: $text-muted; text-style: italic; }
    }
    """

    def __init__(self, language: str) -> None:
        super().__init__(classes="-open-fence")
        self.language = language
        self._done = 0  # complete lines already rendered
        self._chunk_lines: list[str] = []
        self._chunk: Static | None = None
        self._partial = Static("", classes="-partial")
        self.highlight_calls = 0  # lines highlighted, for tests of the cost bound

    def _highlight(self, code: str) -> Content:
        self.highlight_calls += code.count("\n") + 1
        return MarkdownFence.highlight(
            code, self.language, ansi=self.app.native_ansi_color, dark=self.app.current_theme.dark
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
                        self._chunk.update(self._highlight("\n".join(self._chunk_lines)))
                    self._chunk_lines = []
                    self._chunk = Static("", classes="-lines")
                    placed = self._partial.parent is self
                    self.mount(self._chunk, before=self._partial if placed else None)
                self._chunk_lines.append(line)
            assert self._chunk is not None
            self._chunk.update(self._highlight("\n".join(self._chunk_lines)))
        if self._partial.parent is None:
            self.mount(self._partial)
        self._partial.update(Content(partial))
        self._partial.display = bool(partial)


class OpenList(Vertical):
    """An open list: each finished item is rendered once; only the last item re-renders."""

    DEFAULT_CSS = """
    OpenList {
        height: auto;
        margin: 0 0 1 0;
        & > Markdown { padding: 0; margin: 0; }
        & MarkdownBulletList, & MarkdownOrderedList { margin: 0; }
    }
    """

    def __init__(self) -> None:
        super().__init__(classes="-open-list")
        self._items: list[Markdown] = []
        self._item_sources: list[str] = []

    def show(self, list_source: str, tokens: list[Token]) -> None:
        """Bring the list up to date; ``tokens`` are the parse of ``list_source``."""
        lines = list_source.splitlines(keepends=True)
        starts = [
            t.map[0]
            for t in tokens
            if t.type == "list_item_open" and t.level == 1 and t.map is not None
        ]
        if not starts:
            starts = [0]
        sources = [
            "".join(lines[s:e]) for s, e in zip(starts, [*starts[1:], len(lines)], strict=True)
        ]
        for i, src in enumerate(sources):
            if i < len(self._items):
                if self._item_sources[i] != src:
                    self._items[i].update(src)
                    self._item_sources[i] = src
            else:
                md = Markdown(src)
                self._items.append(md)
                self._item_sources.append(src)
                self.mount(md)


class OpenBlock(Markdown):
    """Any other open block (paragraph, table, quote, heading), re-rendered as it grows.

    ``update`` rather than ``append``: Textual's append reads state its previous (unawaited)
    append may not have written yet, and can duplicate blocks when frames come quickly.
    """

    DEFAULT_CSS = """
    OpenBlock { padding: 0; margin: 0; }
    """

    def __init__(self, source: str) -> None:
        super().__init__(source, classes="-open-block")
        self.fed = source


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
        self.syncs += 1
        source = self.source
        tail = source[self._closed_upto :]
        if not tail and not final:
            return
        tokens = self._md.parse(tail)
        starts = block_starts(tokens)
        lines = tail.splitlines(keepends=True)
        with self.app.batch_update():
            if final:
                self._closed_upto = len(source)
                self._replace_open(self._close(tail if tail.strip() else ""))
                return
            if len(starts) >= 2:
                open_line = starts[-1][0]
                closed_text = "".join(lines[:open_line])
                self._replace_open(self._close(closed_text))
                self._closed_upto += len(closed_text)
                tail = tail[len(closed_text) :]
                first = starts[-1][1]
                tokens = self._md.parse(tail)
            else:
                first = starts[0][1] if starts else None
            self._show_open(tail, first, tokens)

    def _close(self, text: str) -> list[tuple[ClosedBlock, AwaitMount]]:
        """Mount closed blocks, hidden until their content is built (see ``_replace_open``)."""
        if not text:
            return []
        tokens = self._md.parse(text)
        starts = block_starts(tokens)
        lines = text.splitlines(keepends=True)
        bounds = [s for s, _ in starts] or [0]
        bounds[0] = 0
        mounted: list[tuple[ClosedBlock, AwaitMount]] = []
        for start, end in zip(bounds, [*bounds[1:], len(lines)], strict=True):
            block_source = "".join(lines[start:end])
            if not block_source.strip():
                continue
            chunk = self._chunks[-1] if self._chunks else None
            if chunk is None or chunk.blocks >= CHUNK_BLOCKS:
                chunk = _Chunk()
                self._chunks.append(chunk)
                self.mount(chunk, before=self._open)
            block = ClosedBlock(block_source)
            block.display = False
            mounted.append((block, chunk.mount(block)))
            chunk.blocks += 1
        return mounted

    def _replace_open(self, closed: list[tuple[ClosedBlock, AwaitMount]]) -> None:
        """Swap the open widget for the closed blocks that replace it, in one frame.

        A ``Markdown`` builds its blocks after it is mounted; showing it at once would leave
        the text blank for a frame: a flicker at every block boundary and at the end.
        """
        old = self._open
        self._open = None
        self._open_kind = None
        self._open_start = -1
        if not closed:
            if old is not None:
                old.remove()
            return

        async def swap() -> None:
            for _, awaitable in closed:
                await awaitable
            with self.app.batch_update():
                for block, _ in closed:
                    block.display = True
                if old is not None and old.is_attached:
                    await old.remove()

        self.run_worker(swap(), group="swap", exit_on_error=False)

    def _show_open(self, tail: str, first: Token | None, tokens: list[Token]) -> None:
        if first is None:
            kind = "blank"
        elif first.type == "fence":
            kind = "fence"
        elif first.type in ("bullet_list_open", "ordered_list_open"):
            kind = "list"
        else:
            kind = "block"
        if kind == "blank":
            self._replace_open([])
            return
        if kind != self._open_kind or self._open_start != self._closed_upto:
            self._replace_open([])
            widget: Widget
            if kind == "fence":
                assert first is not None
                widget = OpenFence((first.info or "").split(" ")[0])
            elif kind == "list":
                widget = OpenList()
            else:
                widget = OpenBlock(tail)
            self._open = widget
            self._open_kind = kind
            self._open_start = self._closed_upto
            self.mount(widget)
        w = self._open
        if isinstance(w, OpenFence):
            w.show(tail)
        elif isinstance(w, OpenList):
            w.show(tail, tokens)
        elif isinstance(w, OpenBlock) and w.fed != tail:
            w.update(tail)
            w.fed = tail

"""One pane of the compare screen: its model, its conversation, its live status bar."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from providers.inert import inert_label
from tui.session.race import PANE_LETTERS
from tui.widgets.message_list import MessageList
from tui.widgets.status_bar import StatusBar
from tui.widgets.uniform import UniformRows

PANE_GLYPHS = "◆●▲■"  # identity never rests on colour alone: a letter and a glyph too


class ComparePane(UniformRows, Vertical):
    """Pane ``index`` (A, B, C, D): header, messages, status bar."""

    # The message list keeps its scrollbar's columns while the turns fit: when they first
    # overflowed, the bar took two columns from the text, and every reply was drawn again at
    # the new width in the same layout (54 ms with four panes, the worst frame of a short
    # race at 4 × 500 tok/s). Its bar stays placed (``overflow-y: scroll``), drawn as blank
    # padding while the turns fit (``redrawn_anchor_scrollbar``): a bar that appears is placed
    # by a layout of its own, after the one that found the turns overflowing (16-21 ms with
    # four panes, at a race's start, while the first markers waited).
    DEFAULT_CSS = """
    ComparePane {
        width: 1fr;
        height: 1fr;
        border-left: tall $panel;
        & > .pane-header { height: 1; padding: 0 1; background: $panel; text-style: bold; }
        & > StatusBar { height: 1; }
        & > MessageList { scrollbar-gutter: stable; overflow-y: scroll; }
        &.-pane-0 { border-left: tall $pane-a; & > .pane-header { color: $pane-a; } }
        &.-pane-1 { border-left: tall $pane-b; & > .pane-header { color: $pane-b; } }
        &.-pane-2 { border-left: tall $pane-c; & > .pane-header { color: $pane-c; } }
        &.-pane-3 { border-left: tall $pane-d; & > .pane-header { color: $pane-d; } }
    }
    """

    def __init__(self, index: int, model: str, shown: str | None = None) -> None:
        super().__init__(classes=f"-pane-{index}", id=f"pane-{index}")
        self.index = index
        self.model = model
        self.shown = shown  # the name shown instead of the model's (a blind race's label)
        self.header = Static("", classes="pane-header", markup=False)
        self.messages = MessageList(classes="pane-messages", top_aligned=True)
        self.status = StatusBar()

    @property
    def letter(self) -> str:
        return PANE_LETTERS[self.index]

    @property
    def label(self) -> str:
        return f"{PANE_GLYPHS[self.index]} {self.letter}"

    def compose(self) -> ComposeResult:
        yield self.header
        yield self.messages
        yield self.status

    def on_mount(self) -> None:
        self.set_model(self.model, shown=self.shown)

    def set_model(self, model: str, note: str = "", shown: str | None = None) -> None:
        self.model = model
        self.shown = shown
        name = shown or model
        self.header.update(
            Content.assemble(
                f"{self.label}  ", inert_label(name), (f"  {note}", "italic") if note else ""
            )
        )
        self.status.show_idle(name)

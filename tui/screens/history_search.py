"""Ctrl+R: fuzzy search over every past prompt (all conversations), with a preview."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.fuzzy import Matcher
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from providers.inert import inert, inert_label
from tui.screens.dialog import Dialog, hint

MAX_SHOWN = 200
PREVIEW_CHARS = 1500


class HistorySearch(Dialog[tuple[str, bool] | None]):
    """Returns (prompt, send now): Enter puts it in the box, Ctrl+S sends it at once."""

    DEFAULT_CSS = """
    HistorySearch > Vertical { width: 100; height: 85%; padding: 0 1; }
    HistorySearch OptionList { height: 1fr; }
    HistorySearch #preview {
        height: 8; border-top: solid $panel; color: $text-muted; overflow-y: auto;
    }
    """
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close", show=False),
        Binding("ctrl+s", "send_now", "Send at once", show=False, priority=True),
        Binding("down", "move(1)", show=False),
        Binding("up", "move(-1)", show=False),
    ]

    def __init__(self, prompts: list[str]) -> None:
        super().__init__()
        self.prompts = prompts
        self.shown: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield hint(
                "Search past prompts · Enter puts it in the prompt · Ctrl+S sends it "
                "at once · Esc closes"
            )
            yield Input(placeholder="type to search…")
            yield OptionList()
            yield Static("", id="preview", markup=False)

    def on_mount(self) -> None:
        self._refresh("")
        self.query_one(Input).focus()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self._refresh(event.value)

    def _refresh(self, query: str) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        if query:
            matcher = Matcher(query)
            scored = [(matcher.match(p[:500]), p) for p in self.prompts]
            ranked = [p for s, p in sorted(scored, key=lambda x: -x[0]) if s > 0]
        else:
            ranked = list(self.prompts)
        self.shown = ranked[:MAX_SHOWN]
        for i, p in enumerate(self.shown):
            line = inert_label(" ".join(p.split()))
            label = line[:90] + ("…" if len(line) > 90 else "")
            options.add_option(Option(Content(label), id=str(i)))
        if self.shown:
            options.highlighted = 0
        self._preview()

    def _preview(self) -> None:
        options = self.query_one(OptionList)
        preview = self.query_one("#preview", Static)
        if options.highlighted is None or not self.shown:
            preview.update("No past prompts match." if self.prompts else "No prompts yet.")
            return
        text = self.shown[options.highlighted]
        preview.update(inert(text[:PREVIEW_CHARS]) + ("…" if len(text) > PREVIEW_CHARS else ""))

    @on(OptionList.OptionHighlighted)
    def _highlighted(self) -> None:
        self._preview()

    def _current(self) -> str | None:
        options = self.query_one(OptionList)
        if options.highlighted is None or not self.shown:
            return None
        return self.shown[options.highlighted]

    @on(Input.Submitted)
    def _fill(self) -> None:
        text = self._current()
        if text is not None:
            self.dismiss((text, False))

    @on(OptionList.OptionSelected)
    def _selected(self) -> None:
        self._fill()

    def action_send_now(self) -> None:
        text = self._current()
        if text is not None:
            self.dismiss((text, True))

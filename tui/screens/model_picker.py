"""A fuzzy model picker: endpoint, price and context length for every known model."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.fuzzy import Matcher
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option

from providers.inert import inert_label
from providers.model_ref import ModelRef
from tui.screens.dialog import Dialog, hint
from tui.session.catalog import ModelEntry


def highlight(matcher: Matcher, label: str) -> Content:
    """``label`` with the matched letters styled. ``Matcher.highlight`` parses its candidate as
    markup, and a model id is not markup: ``gpt-4o[/preview]`` raised MarkupError."""
    content = Content(label)
    score, offsets = matcher.fuzzy_search.match(matcher.query, label)
    if not score:
        return content
    for offset in offsets:
        if not label[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content


class ModelPicker(Dialog[str | None]):
    """Type to filter; Enter picks; Esc closes."""

    DEFAULT_CSS = """
    ModelPicker > Vertical { width: 96; height: 80%; padding: 0 1; }
    ModelPicker Input { margin: 0 0 1 0; }
    ModelPicker OptionList { height: 1fr; }
    """

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close", show=False),
        Binding("down", "cursor_down", show=False),
        Binding("up", "cursor_up", show=False),
    ]

    def __init__(
        self,
        entries: list[ModelEntry],
        current: str | None = None,
        title: str = "Pick a model",
        query: str = "",
    ) -> None:
        super().__init__()
        self.entries = entries
        self.current = current
        self.title_text = title
        self.initial_query = query

    def compose(self) -> ComposeResult:
        with Vertical():
            yield hint(
                Content.assemble(
                    (inert_label(self.title_text), "bold"),
                    "   type to filter · Enter picks · Esc closes",
                )
            )
            yield Input(value=self.initial_query, placeholder="model or endpoint…")
            yield OptionList()
            yield hint(
                "price = $ per 1M input / output tokens · ctx = context length · "
                "source: live (listed by the endpoint), config, price table"
            )

    def on_mount(self) -> None:
        self.refresh_options(self.initial_query)
        self.query_one(Input).focus()

    def set_entries(self, entries: list[ModelEntry]) -> None:
        """Replace the list (when live discovery answers)."""
        self.entries = entries
        if self.is_mounted:
            self.refresh_options(self.query_one(Input).value)

    def _row(self, e: ModelEntry, query: str, matcher: Matcher | None) -> Content:
        label = inert_label(e.ref)
        name = highlight(matcher, label) if matcher else Content(label)
        mark = "● " if e.ref == self.current else "  "
        if e.note:  # a local model: what it is, in the name column's spare room
            name = Content.assemble(name, "  ", (e.note, "dim"))
        return Content.assemble(
            mark,
            name.pad_right(max(0, 52 - len(label) - (len(e.note) + 2 if e.note else 0))),
            f" {e.price:>17}  ctx {e.context:>5}  {e.source}",
        )

    def refresh_options(self, query: str) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        matcher = Matcher(query) if query else None
        scored: list[tuple[float, ModelEntry]] = []
        for e in self.entries:
            score = matcher.match(e.ref) if matcher else 1.0
            if score > 0:
                scored.append((score, e))
        scored.sort(key=lambda x: -x[0])
        options.add_options([Option(self._row(e, query, matcher), id=e.ref) for _, e in scored])
        if (
            query
            and "/" in query
            and ModelRef.loose(query).endpoint
            and not any(e.ref == query for _, e in scored)
        ):
            options.add_option(
                Option(
                    Content.assemble("  use ", (inert_label(query), "bold"), " as typed"),
                    id=query,
                )
            )
        if options.option_count:
            options.highlighted = 0

    @on(Input.Changed)
    def _filter(self, event: Input.Changed) -> None:
        self.refresh_options(event.value)

    @on(Input.Submitted)
    def _submit(self) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is not None:
            opt = options.get_option_at_index(options.highlighted)
            self.dismiss(opt.id)

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cursor_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()

"""A tool call in a reply: its name and growing, pretty-printed arguments, then whether they fit."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from providers.events import ToolCall, ToolCallDelta
from providers.inert import inert, inert_label
from providers.tools import ToolCheck, pretty_arguments


class ToolCallView(Static):
    """One tool call, drawn as it streams (tokenrace never runs it)."""

    DEFAULT_CSS = """
    ToolCallView {
        height: auto;
        margin: 0 0 1 0;
        padding: 0 1;
        border-left: outer $secondary;
        & > .name { text-style: bold; }
    }
    ToolCallView.-invalid { border-left: outer $error; }
    """

    def __init__(self, call: ToolCall | None = None) -> None:
        super().__init__("", markup=False)
        self.call_id: str | None = call.id if call else None
        self.name_text = call.name if call else ""
        self.arguments = call.arguments if call else ""
        self.check: ToolCheck | None = None
        self.index = call.index if call else 0
        self.update(self.render_call())

    def add(self, ev: ToolCallDelta) -> None:
        """Take one fragment of the call and redraw."""
        self.index = ev.index
        if ev.id:
            self.call_id = ev.id
        if ev.name:
            self.name_text += ev.name
        self.arguments += ev.arguments
        self.update(self.render_call())

    def as_call(self) -> ToolCall:
        return ToolCall(self.index, self.call_id, self.name_text, self.arguments)

    def show_check(self, check: ToolCheck) -> None:
        """Say whether the arguments parse as JSON and fit the tool's schema."""
        self.check = check
        self.set_class(not check.valid, "-invalid")
        self.update(self.render_call())

    def render_call(self) -> Content:
        """Server text goes in as plain text: never parsed as markup, controls made inert."""
        parts: list[str | tuple[str, str] | Content] = [
            ("⚙ tool call ", "bold"),
            (inert_label(self.name_text or "…"), "bold"),
            ("  (not executed)", "dim"),
        ]
        if self.arguments:
            parts += ["\n", inert(pretty_arguments(self.arguments))]
        if self.check is not None:
            if self.check.valid:
                parts += ["\n", ("✓ arguments valid", "bold")]
            else:
                parts += ["\n", ("✗ ", "bold"), inert(self.check.message)]
        return Content.assemble(*parts)

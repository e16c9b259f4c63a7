"""An assistant turn: who wrote it, its reasoning (collapsible), the answer, its figures."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Collapsible, Static

from providers.events import ToolCall, ToolCallDelta
from providers.inert import inert, inert_label
from providers.metrics import RunMetrics
from providers.tools import ToolDef, check_call
from tui.format import STATUS_GLYPHS, metrics_text
from tui.textual_private import OneLayout
from tui.widgets.live_line import LiveLine
from tui.widgets.streaming_markdown import StreamingMarkdown
from tui.widgets.tool_call import ToolCallView
from tui.widgets.uniform import UniformRows

# Statuses with a look of their own (``AssistantMessage.DEFAULT_CSS``).
_CLASSED = frozenset({"cancelled", "interrupted", "error"})


class ReasoningBlock(Collapsible):
    """The model's visible reasoning, above the answer."""

    DEFAULT_CSS = """
    ReasoningBlock {
        border-top: none;
        padding: 0;
        margin: 0;
        background: transparent;
        color: $text-muted;
        & > Contents { padding: 0 0 0 2; }
    }
    """

    def __init__(self, text: str = "", collapsed: bool = False, finished: bool = False) -> None:
        self.body = StreamingMarkdown(
            text, classes="reasoning-body", finished=finished, driven=not finished
        )
        super().__init__(self.body, title="Reasoning", collapsed=collapsed)


class AssistantMessage(UniformRows, OneLayout, Vertical):
    """One reply; streams in through ``append_text`` / ``append_reasoning``."""

    DEFAULT_CSS = """
    AssistantMessage {
        height: auto;
        margin: 1 0 0 0;
        padding: 0 1;
        /* One line whatever the width: the status stays in sight, the model's name (also in
           a pane's own header) is what the ellipsis takes. */
        & > .header { color: $secondary; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
        & > .metrics { color: $text-muted; }
        & > .notices { color: $warning; }
        &.-cancelled > .metrics, &.-interrupted > .metrics { color: $warning; }
        &.-error > .header { color: $error; }
    }
    """

    def __init__(
        self,
        model: str,
        *,
        text: str = "",
        reasoning: str = "",
        status: str = "streaming",
        metrics: RunMetrics | None = None,
        finished: bool = False,
        pane_label: str = "",
        tool_calls: Sequence[ToolCall] = (),
    ) -> None:
        super().__init__(classes=f"-{status}" if status in _CLASSED else "")
        self.model = model
        self.pane_label = pane_label
        self.status = status
        self.header = Static(self._header_text(status), classes="header", markup=False)
        self.reasoning: ReasoningBlock | None = None
        if reasoning:
            self.reasoning = ReasoningBlock(reasoning, collapsed=finished, finished=finished)
        self.body = StreamingMarkdown(text, classes="body", finished=finished, driven=not finished)
        self.metrics_line = LiveLine(metrics_text(metrics) if metrics else "", classes="metrics")
        self.notices = Static("", classes="notices", markup=False)
        self.notices.display = False
        self._notice_lines: list[str] = []
        self.tool_views: dict[int, ToolCallView] = {c.index: ToolCallView(c) for c in tool_calls}

    def _header_text(self, status: str) -> Content:
        # No border down the side: a border is redrawn on every frame while the reply grows.
        label = f"{self.pane_label} " if self.pane_label else ""
        extra = "" if status in ("complete", "streaming") else f"{STATUS_GLYPHS.get(status)}  "
        return Content.assemble("▍ ", (label, "bold"), extra, (inert_label(self.model), "bold"))

    def compose(self) -> ComposeResult:
        yield self.header
        if self.reasoning is not None:
            yield self.reasoning
        yield self.body
        yield from self.tool_views.values()
        yield self.notices
        yield self.metrics_line

    def append_text(self, text: str) -> None:
        if self.reasoning is not None and not self.reasoning.collapsed and not self.body.source:
            self.reasoning.collapsed = True  # the answer started: fold the thinking away
        self.body.append(text)

    def append_reasoning(self, text: str) -> None:
        if self.reasoning is None:
            self.reasoning = ReasoningBlock()
            self.mount(self.reasoning, before=self.body)
        self.reasoning.body.append(text)

    def append_tool_calls(self, fragments: Sequence[ToolCallDelta]) -> None:
        """Grow the reply's tool calls (a view per call, mounted at its first fragment)."""
        for ev in fragments:
            view = self.tool_views.get(ev.index)
            if view is None:
                view = self.tool_views[ev.index] = ToolCallView()
                self.mount(view, before=self.notices)
            view.add(ev)

    def check_tool_calls(self, tools: Sequence[ToolDef]) -> None:
        """Mark each call valid or not against the tools offered (none offered: no mark)."""
        if tools:
            for view in self.tool_views.values():
                view.show_check(check_call(tools, view.as_call()))

    def add_notice(self, message: str) -> None:
        self._notice_lines.append(f"ⓘ {inert(message)}")
        self.notices.update("\n".join(self._notice_lines))
        self.notices.display = True

    def defer(self) -> None:
        """An older reply, out of sight when its conversation opens: drawn when scrolled to."""
        self.body.defer()  # (its reasoning opens folded: not laid out until unfolded)

    def sync(self, busy: bool = False) -> bool:
        """Draw the text that arrived since the last frame; True when the reply grew a step
        (the screen lays out again). ``busy``: bigger steps (``StreamingMarkdown.sync``)."""
        stepped = self.reasoning.body.sync(busy) if self.reasoning is not None else False
        return self.body.sync(busy) or stepped

    @property
    def views_per_s(self) -> float:
        """How fast the reply's text moves through the view (``StreamingMarkdown``)."""
        views = self.text_views()
        return max(view.views_per_s for view in views)

    def step_along(self) -> None:
        """Another reply grew a step in this frame: this one takes its next step with it if
        it is near (``StreamingMarkdown.step_along``)."""
        self.body.step_along()

    def show_live(self, line: str) -> None:
        self.metrics_line.show(line)

    def text_views(self) -> list[StreamingMarkdown]:
        """The reply's text and its reasoning's, if any."""
        if self.reasoning is None:
            return [self.body]
        return [self.reasoning.body, self.body]

    def finish_text(self) -> None:
        """The stream is over: draw the rest of the text (``finish`` shows the figures), in
        the lines it already takes and those reserved below it."""
        self.body.finish(keep_height=True)
        if self.reasoning is not None:
            self.reasoning.body.finish(keep_height=True)

    def finish(self, metrics: RunMetrics) -> None:
        """The reply is over: render what is left and show the final figures."""
        self.status = metrics.status
        if metrics.status in _CLASSED:
            # Only these statuses are styled: a class change restyles the whole reply (10 ms a
            # pane at the end of a fast race, before its last text reached the screen).
            self.add_class(f"-{metrics.status}")
        self.body.finish()
        if self.reasoning is not None:
            self.reasoning.body.finish()
        self.header.update(self._header_text(metrics.status))
        self.metrics_line.show(metrics_text(metrics))

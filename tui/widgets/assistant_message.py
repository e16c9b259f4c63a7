"""An assistant turn: who wrote it, its reasoning (collapsible), the answer, its figures."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Collapsible, Static

from providers.metrics import RunMetrics
from tui.format import STATUS_GLYPHS, metrics_text
from tui.widgets.compact_markdown import CompactMarkdown
from tui.widgets.streaming_markdown import StreamingMarkdown


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

    def __init__(self, text: str = "", collapsed: bool = False, compact: bool = False) -> None:
        self.body: StreamingMarkdown | CompactMarkdown = (
            CompactMarkdown(text, classes="reasoning-body")
            if compact
            else StreamingMarkdown(text, classes="reasoning-body")
        )
        super().__init__(self.body, title="Reasoning", collapsed=collapsed)


class AssistantMessage(Vertical):
    """One reply; streams in through ``append_text`` / ``append_reasoning``."""

    DEFAULT_CSS = """
    AssistantMessage {
        height: auto;
        margin: 1 0 0 0;
        padding: 0 1;
        border-left: thick $secondary;
        & > .header { color: $text-muted; }
        & > .metrics { color: $text-muted; }
        & > .notices { color: $warning; }
        &.-cancelled > .metrics, &.-interrupted > .metrics { color: $warning; }
        &.-error { border-left: thick $error; }
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
        compact: bool = False,
    ) -> None:
        super().__init__(classes=f"-{status}")
        self.model = model
        self.pane_label = pane_label
        self.status = status
        self.header = Static(self._header_text(status), classes="header", markup=False)
        self.reasoning: ReasoningBlock | None = None
        if reasoning:
            self.reasoning = ReasoningBlock(reasoning, collapsed=finished, compact=compact)
        self.body: StreamingMarkdown | CompactMarkdown = (
            CompactMarkdown(text, classes="body")
            if compact
            else StreamingMarkdown(text, classes="body")
        )
        self.metrics_line = Static(
            metrics_text(metrics) if metrics else "", classes="metrics", markup=False
        )
        self.notices = Static("", classes="notices", markup=False)
        self.notices.display = False
        self._finished_on_mount = finished
        self._notice_lines: list[str] = []

    def _header_text(self, status: str) -> Content:
        label = f"{self.pane_label} " if self.pane_label else ""
        extra = "" if status in ("complete", "streaming") else f"  {STATUS_GLYPHS.get(status)}"
        return Content.assemble((label, "bold"), (self.model, "bold"), extra)

    def compose(self) -> ComposeResult:
        yield self.header
        if self.reasoning is not None:
            yield self.reasoning
        yield self.body
        yield self.notices
        yield self.metrics_line

    def on_mount(self) -> None:
        if self._finished_on_mount:
            self.body.finish()
            if self.reasoning is not None:
                self.reasoning.body.finish()

    def append_text(self, text: str) -> None:
        if self.reasoning is not None and not self.reasoning.collapsed and not self.body.source:
            self.reasoning.collapsed = True  # the answer started: fold the thinking away
        self.body.append(text)

    def append_reasoning(self, text: str) -> None:
        if self.reasoning is None:
            self.reasoning = ReasoningBlock()
            self.mount(self.reasoning, before=self.body)
        self.reasoning.body.append(text)

    def add_notice(self, message: str) -> None:
        self._notice_lines.append(f"ⓘ {message}")
        self.notices.update("\n".join(self._notice_lines))
        self.notices.display = True

    def show_live(self, line: str) -> None:
        self.metrics_line.update(line)

    def compact(self) -> None:
        """Swap the streamed blocks for one compact widget (a finished reply, out of view)."""
        if isinstance(self.body, CompactMarkdown) or self.status == "streaming":
            return
        old = self.body
        self.body = CompactMarkdown(old.source, classes="body")
        self.mount(self.body, before=old)
        old.remove()
        if self.reasoning is not None and isinstance(self.reasoning.body, StreamingMarkdown):
            old_r = self.reasoning.body
            self.reasoning.body = CompactMarkdown(old_r.source, classes="reasoning-body")
            old_r.parent.mount(self.reasoning.body, before=old_r)  # type: ignore[union-attr]
            old_r.remove()

    def finish(self, metrics: RunMetrics) -> None:
        """The reply is over: render what is left and show the final figures."""
        self.status = metrics.status
        self.set_class(True, f"-{metrics.status}")
        self.remove_class("-streaming")
        self.body.finish()
        if self.reasoning is not None:
            self.reasoning.body.finish()
        self.header.update(self._header_text(metrics.status))
        self.metrics_line.update(metrics_text(metrics))

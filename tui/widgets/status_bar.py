"""Live figures of the reply being streamed: TTFT, tok/s, tokens, elapsed, cost, a sparkline."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.widget import Widget

from providers.inert import inert_label
from tui import format as fmt
from tui.session.conversation import LiveFigures
from tui.widgets.live_line import LiveLine

SPARK_POINTS = 16
BARS = "▁▂▃▄▅▆▇█"


class RateSparkline(Widget):
    """Decode rate per quarter second, one column each, newest on the right, on a scale
    from zero (Textual's ``Sparkline`` spans min..max and stretches the data over its width,
    so a steady rate with 1% jitter drew full-height bars, and a second looked like four)."""

    DEFAULT_CSS = """
    RateSparkline { width: 16; height: 1; color: $accent; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.data: list[float] = []

    def show(self, data: list[float]) -> None:
        if data != self.data:
            self.data = list(data)
            self.refresh()

    def render(self) -> str:
        width = self.size.width or SPARK_POINTS
        data = self.data[-width:]
        top = max(data, default=0.0)
        last = len(BARS) - 1
        bars = "".join(
            BARS[max(0, min(last, round(v / top * last)))] if top > 0 else BARS[0] for v in data
        )
        return " " * (width - len(data)) + bars


class StatusBar(Horizontal):
    """One line: model and live figures, then the decode-rate sparkline."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        background: $panel;
        padding: 0 1;
        & > .figures { width: 1fr; color: $foreground; }
        & > RateSparkline { width: 16; height: 1; }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.figures = LiveLine("", classes="figures")
        self.spark = RateSparkline()
        self.model = ""
        self.extra = ""

    def compose(self) -> ComposeResult:
        yield self.figures
        yield self.spark

    def show_idle(self, model: str, extra: str = "") -> None:
        self.model = model
        self.extra = extra
        text = Content.assemble(
            ("● ", "bold"),
            (inert_label(model or "no model"), "bold"),
            f"  {extra}" if extra else "",
        )
        self.figures.show(text)

    def show(self, f: LiveFigures, spark: list[float]) -> None:
        if f.retry_until_ns is not None:
            left = max(0.0, (f.retry_until_ns - time.perf_counter_ns()) / 1e9)
            self.figures.show(
                Content.assemble(
                    ("⟳ ", "bold"),
                    (inert_label(f.model), "bold"),
                    f"  retrying in {left:.1f} s — {inert_label(f.retry_message[:80])} — "
                    "Esc cancels",
                )
            )
            return
        status = "●" if f.status == "streaming" else f.status
        parts = [
            f"TTFT {fmt.ms(f.ttft_ms)}",
            fmt.tps(f.decode_tps),
            fmt.tokens(f.tokens, f.tokens_estimated),
            fmt.ms(f.elapsed_ms),
            fmt.usd(f.cost_usd, f.cost_estimated),
        ]
        self.figures.show(
            Content.assemble((inert_label(f.model), "bold"), f"  {status}  ", "  ".join(parts))
        )
        if spark:
            self.spark.show(spark[-SPARK_POINTS:])

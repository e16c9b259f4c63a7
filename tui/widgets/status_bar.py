"""Live figures of the reply being streamed: TTFT, tok/s, tokens, elapsed, cost, a sparkline."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content

from providers.inert import inert_label
from tui import format as fmt
from tui.session.conversation import LiveFigures
from tui.widgets.live_line import LiveLine

SPARK_POINTS = 16
MIN_SPARK = 4  # narrower than this, the sparkline says nothing: hidden
# When the figures do not fit, they go in this order (indexes into TTFT, tok/s, tokens,
# elapsed, cost): elapsed time first, TTFT last.
DROP_ORDER = (3, 4, 2, 1)
BARS = "▁▂▃▄▅▆▇█"


class RateSparkline:
    """Decode rate per quarter second, one column each, newest on the right, on a scale
    from zero (Textual's ``Sparkline`` spans min..max and stretches the data over its width,
    so a steady rate with 1% jitter drew full-height bars, and a second looked like four).

    Drawn as the end of the status line's text (``StatusBar``), not as a widget of its own:
    a widget's width that follows the figures is a layout of the whole screen each time it
    changes (issue 21: at a race's start, and each time a count grew a digit, 30-80 ms)."""

    def __init__(self) -> None:
        self.data: list[float] = []
        self.width = SPARK_POINTS  # columns it takes in the status line (0: not shown)

    def render(self, width: int | None = None) -> str:
        width = self.width if width is None else width
        data = self.data[-width:] if width > 0 else []
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
        & > .figures { width: 1fr; height: 1; color: $foreground; }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.figures = LiveLine("", classes="figures")
        self.spark = RateSparkline()
        self.model = ""
        self.extra = ""
        self.setting = ""  # a request setting worth seeing before sending: "thinking on"
        self._last: tuple[LiveFigures, list[float]] | None = None
        self.figures_text = ""  # the figures shown, without the sparkline

    def compose(self) -> ComposeResult:
        yield self.figures  # one line, the sparkline at its end: its height never changes

    def show_idle(self, model: str, extra: str = "") -> None:
        self._last = None
        self.model = model
        self.extra = extra
        text = Content.assemble(
            ("● ", "bold"),
            (inert_label(model or "no model"), "bold"),
            f"  {extra}" if extra else "",
            (f"  · {self.setting}", "italic") if self.setting else "",
        )
        self.figures_text = text.plain
        self.figures.show(text)

    def set_setting(self, text: str) -> None:
        """Show ``text`` (e.g. ``thinking 2,048``) after the model while idle."""
        if text != self.setting:
            self.setting = text
            if self._last is None:
                self.show_idle(self.model, self.extra)

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
        self._last = (f, spark)
        if spark:
            self.spark.data = list(spark[-SPARK_POINTS:])
        self.figures.show(self._fit(f.model, status, parts))

    def _fit(self, model: str, status: str, parts: list[str]) -> Content:
        """The figures that fit whole (never a value cut in half), the sparkline in what is
        left: the model's name goes first (a pane's header shows it), then the least
        telling figures from the end."""
        width = self.size.width
        candidates = [
            Content.assemble((inert_label(model), "bold"), f"  {status}  ", "  ".join(parts))
        ]
        shown = list(parts)
        candidates.append(Content(f"{status} " + "  ".join(shown)))
        for index in DROP_ORDER:
            shown[index] = ""
            candidates.append(Content(f"{status} " + "  ".join(p for p in shown if p)))
        chosen = candidates[-1]
        if width <= 0:
            chosen = candidates[0]
        else:
            for c in candidates:
                if c.cell_length <= width:
                    chosen = c
                    break
        self.figures_text = chosen.plain
        left = width - chosen.cell_length - 1 if width > 0 else SPARK_POINTS
        spark = min(SPARK_POINTS, left) if left >= MIN_SPARK else 0
        self.spark.width = spark
        if not spark:
            return chosen
        gap = " " * (width - chosen.cell_length - spark) if width > 0 else " "
        return Content.assemble(chosen, gap, (self.spark.render(), "$accent"))

    def on_resize(self) -> None:
        if self._last is not None:
            self.show(*self._last)

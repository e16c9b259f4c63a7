"""The session summary: per model, from the stored runs; and a monthly cost projection."""

from __future__ import annotations

from dataclasses import replace

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.widgets import Input, Label, Static

from providers.inert import inert_label
from tui import format as fmt
from tui.screens.dialog import Dialog, note
from tui.session import blind
from tui.session.model_summary import ModelSummary, cost_text
from tui.session.race import Projection, project, summarise

DEFAULT_INPUT_PER_MONTH = 50_000_000
DEFAULT_OUTPUT_PER_MONTH = 10_000_000


def summary_table(rows: list[ModelSummary]) -> Content:
    """The summary as aligned text: one line per model."""
    head = (
        f"{'model':<40} {'replies':>7} {'fail':>4} {'TTFT p50':>9} {'TTFT p95':>9} "
        f"{'tok/s p50':>9} {'in tok':>9} {'out tok':>9} {'cost':>11} {'wins':>4} "
        f"{'ties':>4}"
    )
    lines = [Content.styled(head, "bold")]
    for r in rows:
        cost = cost_text(r.cost_usd, r.cost_known)
        rate = f"{r.decode_p50_tps:.1f}" if r.decode_p50_tps is not None else "—"
        name = inert_label(r.model)[:40]
        lines.append(
            Content(
                f"{name:<40} {r.replies:>7} {r.failures:>4} {fmt.ms(r.ttft_p50_ms):>9} "
                f"{fmt.ms(r.ttft_p95_ms):>9} {rate:>9} {r.input_tokens:>9,} {r.output_tokens:>9,} "
                f"{cost:>11} {r.wins:>4} {r.ties:>4}"
            )
        )
    if not rows:
        lines.append(Content("No finished replies yet."))
    lines += split_lines(rows)
    return Content("\n").join(lines)


def split_lines(rows: list[ModelSummary]) -> list[Content]:
    """Per model: the cost split (input / cached / cache write / output) and the median prefill
    rate, an upper bound of the server's prefill speed (TTFT also holds queueing)."""
    out: list[Content] = []
    for r in rows:
        cost = ""
        if r.cost_split is not None:
            inp, cached, write, output = r.cost_split
            parts = [f"in {fmt.usd(inp)}", f"cached {fmt.usd(cached)} ({r.cached_tokens:,} tok)"]
            if write:
                parts.append(f"cache write {fmt.usd(write)}")
            cost = " + ".join([*parts, f"out {fmt.usd(output)}"])
        prefill = ""
        if r.prefill_p50_tps is not None:
            prefill = f"prefill p50 ≤{fmt.tps(r.prefill_p50_tps)} (upper bound)"
        if cost or prefill:
            text = " · ".join(b for b in (cost, prefill) if b)
            out.append(Content(f"{inert_label(r.model)[:40]:<40} {text}"))
    if out:
        out.insert(0, Content.styled("cost split, prefill rate", "bold"))
    return out


def projection_table(rows: list[Projection], inp: int, out: int) -> Content:
    lines = [Content.styled(f"A month of {inp:,} input + {out:,} output tokens:", "bold")]
    best = min((p.monthly_usd for p in rows if p.monthly_usd is not None), default=None)
    for p in rows:
        if p.monthly_usd is None:
            lines.append(Content(f"  {inert_label(p.model):<40} {'—':>14}  ({p.basis})"))
            continue
        mark = (
            "  ◀ cheapest" if best is not None and p.monthly_usd == best and len(rows) > 1 else ""
        )
        ratio = f"  ×{p.monthly_usd / best:.2f}" if best and len(rows) > 1 else ""
        lines.append(
            Content.assemble(
                f"  {inert_label(p.model):<40} ",
                (f"{fmt.usd(p.monthly_usd):>14}", "bold"),
                f"{ratio}  ({p.basis}){mark}",
            )
        )
    return Content("\n").join(lines)


def parse_count(text: str) -> int | None:
    """``50M`` / ``2.5k`` / ``1,000,000`` → tokens."""
    t = text.strip().lower().replace(",", "").replace("_", "")
    mult = 1
    if t.endswith("k"):
        mult, t = 1_000, t[:-1]
    elif t.endswith("m"):
        mult, t = 1_000_000, t[:-1]
    elif t.endswith("b"):
        mult, t = 1_000_000_000, t[:-1]
    try:
        value = float(t) * mult
    except ValueError:
        return None
    return int(value) if value >= 0 else None


class SummaryScreen(Dialog[None]):
    """Per-model figures of this conversation and what a month of traffic would cost."""

    DEFAULT_CSS = """
    SummaryScreen > VerticalScroll { width: 95%; height: 90%; padding: 1 2; }
    SummaryScreen Horizontal { height: auto; margin: 1 0; }
    SummaryScreen Input { width: 24; }
    SummaryScreen Label { padding: 1 1 0 2; }
    """
    BINDINGS = [Binding("escape,f6", "dismiss", "Close", show=False)]
    # The scroll container would take focus first, and typed digits went nowhere.
    AUTO_FOCUS = "#in-per-month"

    def __init__(self, conv_id: int | None = None, models: list[str] | None = None) -> None:
        super().__init__()
        self.conv_id = conv_id
        self.models = models or []
        self.rows: list[ModelSummary] = []

    @property
    def _workload(self) -> tuple[str, str]:
        """The monthly token counts last typed in this session (F6 keeps them)."""
        return self.tapp.summary_workload or (
            f"{DEFAULT_INPUT_PER_MONTH:,}",
            f"{DEFAULT_OUTPUT_PER_MONTH:,}",
        )

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("", id="summary")
            with Horizontal():
                yield Label("input tokens / month")
                yield Input(self._workload[0], id="in-per-month")
                yield Label("output tokens / month")
                yield Input(self._workload[1], id="out-per-month")
            yield Static("", id="projection")
            yield note(
                "From the runs stored for this conversation; cancelled replies are left out. "
                "Prices: built-in table or config (tokenrace models shows them). Esc closes."
            )

    def on_mount(self) -> None:
        runs, verdicts = self.stored(self.conv_id)
        self.rows = summarise(runs, verdicts)
        race = self.tapp.blind_race()
        if race is not None and race.hides_figures():
            self.query_one("#summary", Static).update(Content(blind.FIGURES_HIDDEN))
        elif race is not None:
            # Named by label and sorted by it: the real names' order would say who is who.
            shown = [replace(r, model=race.name(r.model)) for r in self.rows]
            self.query_one("#summary", Static).update(
                summary_table(sorted(shown, key=lambda r: r.model))
            )
        else:
            self.query_one("#summary", Static).update(summary_table(self.rows))
        self._project()

    @on(Input.Changed)
    def _project(self) -> None:
        inp = parse_count(self.query_one("#in-per-month", Input).value)
        out = parse_count(self.query_one("#out-per-month", Input).value)
        target = self.query_one("#projection", Static)
        if inp is None or out is None:
            target.update("Type token counts like 50M, 2.5k or 1,000,000.")
            return
        self.tapp.summary_workload = (
            self.query_one("#in-per-month", Input).value,
            self.query_one("#out-per-month", Input).value,
        )
        models = list(dict.fromkeys([*(r.model for r in self.rows), *self.models]))
        projected = project(models, inp, out, self.tapp.config, self.rows)
        race = self.tapp.blind_race()
        if race is not None and race.hides_figures():
            target.update(Content(blind.FIGURES_HIDDEN))
            return
        if race is not None:
            projected = sorted(
                (replace(p, model=race.name(p.model)) for p in projected), key=lambda p: p.model
            )
        target.update(projection_table(projected, inp, out))

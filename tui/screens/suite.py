"""Run a replay suite from the TUI: the per-model table fills in live."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input, ProgressBar, Static

from providers.events import Event
from providers.inert import inert_label
from providers.request import ChatRequest
from tui import format as fmt
from tui.screens.dialog import Dialog, models_hint, run_table
from tui.session.model_summary import cost_text
from tui.session.replay import (
    RunResult,
    SuiteError,
    load_suite,
    run_suite,
    summarize,
)

if TYPE_CHECKING:
    pass

COLUMNS = (
    "model",
    "replies",
    "fail",
    "JSON ok",
    "TTFT p50",
    "TTFT p95",
    "tok/s p50",
    "in tok",
    "out tok",
    "cost",
)


class SuiteScreen(Dialog[None]):
    """Type a suite path (JSONL) and Enter; Esc cancels the run or closes."""

    DEFAULT_CSS = """
    SuiteScreen > Vertical { width: 95%; height: 80%; padding: 0 1; }
    SuiteScreen DataTable { height: 1fr; }
    """
    BINDINGS = [Binding("escape", "close", "Close", show=False)]

    def __init__(self, models: list[str], path: str = "", runs: int = 1) -> None:
        super().__init__()
        self.models = models
        self.initial_path = path
        self.runs = runs
        self.results: list[RunResult] = []
        self.running = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield models_hint(
                "Replay suite",
                self.models,
                'a JSONL file, one {"prompt": …} per line · Enter runs · Esc closes',
            )
            yield Input(self.initial_path, placeholder="path/to/suite.jsonl", id="path")
            yield from run_table(COLUMNS)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for m in self.models:
            # A str cell would be parsed as markup: a model id is shown as it is.
            table.add_row(Text(inert_label(m)), *["—"] * (len(COLUMNS) - 1), key=m)
        if self.initial_path:
            self._start(self.initial_path)

    @on(Input.Submitted, "#path")
    def _submitted(self, event: Input.Submitted) -> None:
        if not self.running:
            self._start(event.value)

    def _start(self, path_text: str) -> None:
        try:
            items = load_suite(Path(path_text).expanduser(), self.tapp.config.roles)
        except SuiteError as exc:
            self.query_one("#status", Static).update(str(exc))
            return
        self.running = True
        self.results = []
        total = len(items) * len(self.models) * self.runs
        self.query_one(ProgressBar).update(total=total, progress=0)
        self.query_one("#status", Static).update(f"running {total} requests…")
        self.run_worker(self._run(items), group="suite", exit_on_error=False)

    async def _run(self, items: list) -> None:  # type: ignore[type-arg]
        engine = self.tapp.engine

        async def stream(request: ChatRequest, t_submit: int) -> list[Event]:
            handle = await engine.submit(request, t_submit)
            while await handle.next_batch() is not None:
                pass
            return handle.events

        def on_result(result: RunResult, done: int, total: int) -> None:
            self.results.append(result)
            self.query_one(ProgressBar).update(progress=done)
            self._refresh_table()
            self.tapp.run_completed_metrics(result.model, result.metrics)

        try:
            await run_suite(
                items, self.models, stream, self.tapp.config, runs=self.runs, on_result=on_result
            )
        finally:
            self.running = False
        failed = sum(1 for r in self.results if r.status not in ("complete", "length"))
        self.query_one("#status", Static).update(
            f"done: {len(self.results)} runs, {failed} failed · Esc closes"
        )

    def _refresh_table(self) -> None:
        table = self.query_one(DataTable)
        for s in summarize(self.results, self.models):
            d = s.to_json()
            values = [
                str(s.replies),
                str(s.failures),
                str(s.json),
                fmt.ms(d["ttft_p50_ms"]),
                fmt.ms(d["ttft_p95_ms"]),
                f"{d['decode_p50_tps']:.1f}" if d["decode_p50_tps"] is not None else "—",
                f"{s.input_tokens:,}",
                f"{s.output_tokens:,}",
                cost_text(s.cost_usd, s.cost_known),
            ]
            for col, value in zip(COLUMNS[1:], values, strict=True):
                # The columns were sized for "—": widen them, or "$0.000147" showed as "$0.0".
                table.update_cell(s.model, col, value, update_width=True)

    def action_close(self) -> None:
        if self.running:
            self.workers.cancel_group(self, "suite")
            self.tapp.engine.cancel_all()
            self.running = False
            self.query_one("#status", Static).update("cancelled · Esc closes")
            return
        self.dismiss()

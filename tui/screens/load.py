"""A load sweep from the app: the live table of ``tokenrace load``, step by step.

The requests run in a child engine process (``--procs 1``), never on the UI's event loop, so
rendering the table cannot delay a stamp; each step still carries that process's own health.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, ProgressBar, Static

from providers.inert import inert_label
from tui.screens.dialog import Dialog, models_hint, run_table
from tui.session.load import (
    LoadError,
    Sample,
    Slo,
    StepPlan,
    StepResult,
    level_text,
    parse_levels,
    rows_of,
    run_sweep,
)
from tui.session.replay import SuiteError, SuiteItem, load_suite

if TYPE_CHECKING:
    from tui.session.load_shards import ProcessPool

SLO = Slo(ttft_ms=500, itl_ms=50)  # the command's default target
COLUMNS = ("step", "model", "req", "fail", "TTFT p50", "p99", "ITL p99", "tok/s", "good", "client")


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


class LoadScreen(Dialog[None]):
    """Suite path, streams per step, requests per step; Enter runs; Esc stops, then closes."""

    DEFAULT_CSS = """
    LoadScreen > Vertical { width: 95%; height: 85%; padding: 0 1; }
    LoadScreen Horizontal { height: auto; }
    LoadScreen Input { width: 1fr; }
    LoadScreen DataTable { height: 1fr; }
    """
    BINDINGS = [Binding("escape", "close", "Stop / close", show=False)]

    def __init__(self, models: list[str], path: str = "") -> None:
        super().__init__()
        self.models = models
        self.initial_path = path
        self.results: list[StepResult] = []
        self.done = 0
        self.pool: ProcessPool | None = None
        self.stop = asyncio.Event()
        self.running = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield models_hint(
                "Load sweep", self.models, "no retries · Enter runs · Esc stops, then closes"
            )
            with Horizontal():
                yield Input(self.initial_path, placeholder="suite.jsonl", id="path")
                yield Input("1,2,4", placeholder="streams per step: 1,2,4", id="levels")
                yield Input("10", placeholder="requests per step", id="requests")
            yield from run_table(COLUMNS)

    @on(Input.Submitted)
    def _submitted(self, _event: Input.Submitted) -> None:
        if not self.running:
            self._start()

    def _start(self) -> None:
        status = self.query_one("#status", Static)
        try:
            items = load_suite(Path(self.query_one("#path", Input).value).expanduser())
            levels = parse_levels(self.query_one("#levels", Input).value, whole=True)
            requests = int(self.query_one("#requests", Input).value)
            if requests < 1:
                raise LoadError("requests per step must be at least 1")
        except (SuiteError, LoadError, ValueError) as exc:
            status.update(str(exc))
            return
        plans = [StepPlan(i, "concurrency", lv, requests, None) for i, lv in enumerate(levels)]
        self.running = True
        self.stop = asyncio.Event()
        self.results, self.done = [], 0
        self.query_one(DataTable).clear()
        self.query_one(ProgressBar).update(
            total=len(plans) * requests * len(self.models), progress=0
        )
        status.update("starting an engine process…")
        self.run_worker(self._run(items, plans), group="load", exit_on_error=False)

    async def _run(self, items: list[SuiteItem], plans: list[StepPlan]) -> None:
        from tui.session.load_shards import ProcessPool

        status = self.query_one("#status", Static)
        self.pool = ProcessPool(self.tapp.config, items, self.models, 1)

        def on_sample(_s: Sample) -> None:
            self.done += 1
            self.query_one(ProgressBar).update(progress=self.done)

        def on_step(result: StepResult) -> None:
            self.results.append(result)
            table = self.query_one(DataTable)
            for row in rows_of(result, self.models, SLO):
                flag = Text("LIMITED", style="bold red") if row.client_limited else Text("ok")
                table.add_row(
                    level_text(row.mode, row.level),
                    Text(inert_label(row.model)),  # a str cell would be parsed as markup
                    str(row.requests),
                    str(sum(row.failures.values())),
                    _ms(row.ttft[0]),
                    _ms(row.ttft[2]),
                    _ms(row.itl[2]),
                    _ms(row.output_tps),
                    str(row.good),
                    flag,
                )

        try:
            await self.pool.start()
            status.update("running…")
            await run_sweep(self.pool, plans, on_sample=on_sample, on_step=on_step, stop=self.stop)
        finally:
            await self.pool.aclose()
            self.pool = None
            self.running = False
        limited = sum(1 for r in self.results if r.client_limited)
        status.update(
            f"done: {self.done} requests, {len(self.results)} steps"
            + (f", {limited} client-limited (stamping delay p99 over 10 ms)" if limited else "")
            + " · Esc closes"
        )

    def action_close(self) -> None:
        if self.running:
            self.stop.set()  # stops sending at once; the finished steps stay in the table
            return
        self.dismiss(None)

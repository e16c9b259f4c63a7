"""A/B compare: models in split panes racing on the same prompt (up to four).

One prompt box sends to every pane; the requests leave together (the engine holds them at a
start gate until every connection is ready), stream side by side, and a strip compares each
pane with pane A, live. Each pane keeps its own history and can change model at any time.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

from providers.events import Cancelled, StreamError
from providers.inert import inert_label
from providers.metrics import RunMetrics
from providers.prices import model_info
from providers.remote import StreamHandle
from providers.request import ChatRequest
from providers.tokens import estimate_prompt_tokens
from tui import format as fmt
from tui.compositor import CroppingCompositor
from tui.frame_pacer import FramePacer
from tui.screens.chat import FIGURES_EVERY, FRAME_HZ
from tui.session import commands
from tui.session.catalog import PICKER_REDISCOVER_S, resolve
from tui.session.conversation import Conversation, LiveRun
from tui.session.race import PANE_LETTERS, Delta, RaceLog, compare, finishing_order
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.compare_pane import ComparePane
from tui.widgets.error_panel import ErrorPanel
from tui.widgets.live_line import LiveLine
from tui.widgets.message_list import MessageList
from tui.widgets.prompt_box import PromptBox
from tui.widgets.user_message import UserMessage

if TYPE_CHECKING:
    from providers.capabilities import ChatParams
    from tui.app import TokenraceApp

EMPTY_METRICS = RunMetrics(
    status="streaming",
    ttft_ms=None,
    ttfo_ms=None,
    decode_tps=None,
    e2e_ms=None,
    client_overhead_ms=None,
    connect_ms=None,
    output_tokens=None,
    output_tokens_estimated=True,
    input_tokens=None,
    cached_tokens=None,
    reasoning_tokens=None,
    itl_p50_ms=None,
    itl_p95_ms=None,
    itl_max_ms=None,
    stalls=0,
    retries=0,
    retry_wait_ms=0.0,
    cost_usd=None,
    cost_reported=False,
    overall_tps=None,
    token_events=0,
    finish_reason=None,
)
MAX_PANES = 4
MIN_PANE_WIDTH = 30
CANCEL_GRACE_S = 1.0


def _signed_ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{'+' if v >= 0 else '−'}{fmt.ms(abs(v))}"


def describe(d: Delta) -> Content:
    """``TTFT +212 ms ▲ slower · tok/s ×1.85 ▲ faster · cost ×0.25 ▼ cheaper`` with colours."""
    if d.failed is not None:
        side, status = d.failed
        who = "A's reply" if side == "A" else "this reply"
        return Content.assemble((f"✗ {who} {status}", "$bad"), ": not compared")
    parts: list[Content] = []
    if d.ttft_ms is not None:
        better = d.ttft_ms < 0
        parts.append(
            Content.assemble(
                "TTFT ",
                (
                    f"{_signed_ms(d.ttft_ms)} {'▼ sooner' if better else '▲ later'}",
                    "$good" if better else "$bad",
                ),
            )
        )
    else:
        parts.append(Content("TTFT —"))
    if d.tps_ratio is not None:
        better = d.tps_ratio >= 1
        parts.append(
            Content.assemble(
                "tok/s ",
                (
                    f"×{d.tps_ratio:.2f} {'▲ faster' if better else '▼ slower'}",
                    "$good" if better else "$bad",
                ),
            )
        )
    else:
        parts.append(Content("tok/s —"))
    if d.cost_ratio is not None:
        better = d.cost_ratio <= 1
        parts.append(
            Content.assemble(
                "cost ",
                (
                    f"×{d.cost_ratio:.2f} {'▼ cheaper' if better else '▲ dearer'}",
                    "$good" if better else "$bad",
                ),
            )
        )
    else:
        parts.append(Content("cost —"))
    return Content(" · ").join(parts)


class CompareScreen(Screen[None]):
    """Panes side by side, one prompt, a live comparison strip."""

    AUTO_FOCUS = "PromptBox"
    BINDINGS = [
        *(
            Binding(
                f"alt+{n + 1}",
                f"cancel_pane({n})",
                f"Cancel pane {letter}",
                show=False,
                id=f"cancel_pane_{letter.lower()}",
            )
            for n, letter in enumerate("ABCD")
        ),
        Binding(
            "f10",
            "cancel_one",
            "Cancel one pane",
            show=False,
            priority=True,
            tooltip="Cancel one pane's reply (press its letter)",
            id="cancel_one_pane",
        ),
        Binding(
            "f7",
            "toggle_sync",
            "Sync",
            show=True,
            priority=True,
            tooltip="Synced scrolling on or off",
            id="sync_scroll",
        ),
        Binding(
            "f8",
            "diff",
            "Diff",
            show=True,
            priority=True,
            tooltip="Diff pane A's latest answer with another pane's",
            id="diff",
        ),
        Binding(
            "f9",
            "verdict",
            "Verdict",
            show=True,
            priority=True,
            tooltip="Verdict: which pane answered best (or a tie)",
            id="verdict",
        ),
        Binding("pageup", "scroll_panes(-1)", "Scroll the panes up", show=False, priority=True),
        Binding("pagedown", "scroll_panes(1)", "Scroll the panes down", show=False, priority=True),
    ]

    def __init__(self, models: list[str], conversation: Conversation | None = None) -> None:
        super().__init__()
        self._compositor = CroppingCompositor()
        self.models = list(models[:MAX_PANES])
        # ``/temperature B 1``: a pane's own temperature, to race configurations of one model.
        self.pane_temperature: dict[int, float | None] = {}
        self.conv = conversation or Conversation(mode="compare")
        self.conv.mode = "compare"
        self.runs: dict[int, LiveRun] = {}
        self.handles: dict[int, StreamHandle] = {}
        self.widgets: dict[int, AssistantMessage] = {}
        self.finish_ns: dict[int, int | None] = {}
        self.race_id: str | None = None
        self.race_log = RaceLog()
        self.synced = True
        self._syncing = False
        self._history_pos = -1
        self.verdicts: list[tuple[str, str]] = []  # (race id, winning model or "tie")
        self.restored: dict[int, RunMetrics] = {}  # the last race's figures, when reopened
        self._ticks = 0

    @property
    def tapp(self) -> TokenraceApp:
        from tui.app import TokenraceApp

        assert isinstance(self.app, TokenraceApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield Static("", id="topbar", markup=False)
        with Horizontal(id="panes"):
            for i, m in enumerate(self.models):
                yield ComparePane(i, m)
        yield LiveLine("", id="strip")
        yield PromptBox(id="prompt")
        yield Static("", id="prompt-info", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.synced = self.tapp.state.synced_scroll
        for pane in self.panes:
            self.watch(pane.messages, "scroll_y", self._pane_scrolled, init=False)
            self.tapp.warm(pane.model)
            for turn in self.conv.turns(pane.index):
                self._show_turn(pane, turn)
        self._restore_races()
        self._update_topbar()
        self._update_strip()
        # The frame clock runs only while something streams: an idle screen costs nothing.
        self._frame_timer = self.set_interval(1 / FRAME_HZ, self._tick, pause=True)
        self._pacer = FramePacer()
        self._check_width()
        self.tapp.state.last_models = list(self.models)
        self.tapp._save_state()

    def _restore_races(self) -> None:
        """A reopened race: the session's deltas, the last race's figures and finishing
        order, and the verdicts, from what the store kept."""
        races: dict[str, dict[int, RunMetrics]] = {}
        for index in range(len(self.models)):
            for turn in self.conv.turns(index):
                if turn.role == "assistant" and turn.race_id and turn.metrics is not None:
                    races.setdefault(turn.race_id, {})[index] = turn.metrics
        for race in races.values():  # in the order the races ran (dicts keep it)
            self.race_log.add(race)
        if races:
            self.race_id, last = list(races.items())[-1]
            self.restored = last
            for index, m in last.items():
                # Every pane of a race shares its submit time: overhead + e2e orders them.
                done = m.status in ("complete", "length") and m.e2e_ms is not None
                offset = (m.client_overhead_ms or 0.0) + (m.e2e_ms or 0.0)
                self.finish_ns[index] = int(offset * 1e6) if done else None
        self.verdicts = list(self.conv.verdicts)

    @property
    def panes(self) -> list[ComparePane]:
        return list(self.query(ComparePane))

    def pane(self, index: int) -> ComparePane:
        return self.query_one(f"#pane-{index}", ComparePane)

    def _show_turn(self, pane: ComparePane, turn: Any) -> None:
        if turn.role == "user":
            pane.messages.mount(UserMessage(turn.content))
        else:
            pane.messages.mount(
                AssistantMessage(
                    turn.model or "?",
                    text=turn.content,
                    reasoning=turn.reasoning,
                    status=turn.status,
                    metrics=turn.metrics,
                    finished=True,
                )
            )
            if turn.error and turn.status in ("error", "interrupted"):
                pane.messages.mount(ErrorPanel(turn.model or "?", turn.status, turn.error))

    def _check_width(self) -> None:
        if self.size.width and self.size.width / max(1, len(self.models)) < MIN_PANE_WIDTH:
            self.notify(
                f"{len(self.models)} panes need about {MIN_PANE_WIDTH * len(self.models)}"
                " columns; widen the terminal for readable panes.",
                severity="warning",
            )

    def on_resize(self) -> None:
        self._check_width()

    def _update_topbar(self) -> None:
        s = self.conv.settings
        bits = [f"{len(self.models)} panes", "synced scroll" if self.synced else "free scroll"]
        if s.system:
            bits.append("system ✓")
        if s.temperature is not None:
            bits.append(f"T={s.temperature:g}")
        if s.max_tokens is not None:
            bits.append(f"max {s.max_tokens}")
        if s.json_mode:
            bits.append("JSON")
        self.query_one("#topbar", Static).update(
            Content.assemble(
                ("tokenrace compare", "bold"),
                " · ",
                inert_label(self.conv.title or "new race"),
                " · ",
                " · ".join(bits),
            )
        )

    @property
    def streaming(self) -> bool:
        return any(not r.done for r in self.runs.values())

    # --- prompt --------------------------------------------------------------------------

    @on(PromptBox.Submitted)
    def _submitted(self, event: PromptBox.Submitted) -> None:
        t_submit = time.perf_counter_ns()
        text = event.text
        if not text.strip():
            return
        try:
            cmd = commands.parse(text)
        except commands.CommandError as exc:
            self.notify(str(exc), severity="warning")
            return
        if cmd is not None:
            event.prompt.clear_prompt()
            self.run_command(cmd)
            return
        if self.streaming:
            self.notify("Panes are still streaming: Esc cancels them.", severity="warning")
            return
        event.prompt.clear_prompt()
        self._history_pos = -1
        self.send(text, t_submit)

    @on(PromptBox.HistoryRequested)
    def _history(self, event: PromptBox.HistoryRequested) -> None:
        prompts = self.tapp.prompt_history()
        if not prompts:
            return
        pos = max(-1, min(len(prompts) - 1, self._history_pos - event.direction))
        self._history_pos = pos
        event.prompt.set_prompt("" if pos == -1 else prompts[pos], recalled=pos != -1)
        event.prompt.move_cursor(event.prompt.document.end)

    def run_command(self, cmd: commands.Command) -> None:
        s = self.conv.settings
        try:
            if cmd.name == "/model":
                letter, _, name = cmd.arg.partition(" ")
                if letter.upper() not in PANE_LETTERS[: len(self.models)] or not name:
                    self.notify(
                        "In compare mode: /model PANE NAME, e.g. /model B "
                        "openai/gpt-4o-mini (F2 picks with a list)",
                        severity="warning",
                    )
                    return
                ref, why = resolve(name, self.tapp.catalog, self.tapp.config)
                if ref is None:
                    self.notify(why, severity="warning")
                    return
                self.set_pane_model(PANE_LETTERS.index(letter.upper()), ref)
                return
            if cmd.name == "/system":
                s.system = cmd.arg or None
            elif cmd.name == "/temperature":
                letter, _, value = cmd.arg.partition(" ")
                if letter.upper() in PANE_LETTERS[: len(self.models)] and len(letter) == 1:
                    index = PANE_LETTERS.index(letter.upper())
                    temperature = commands.parse_temperature(value.strip())
                    self.pane_temperature[index] = temperature
                    shown = "the default" if temperature is None else f"{temperature:g}"
                    self.notify(f"Pane {letter.upper()}: temperature {shown} from the next prompt.")
                    self.pane(index).set_model(self.models[index], self._pane_note(index))
                    return
                s.temperature = commands.parse_temperature(cmd.arg)
                self.pane_temperature.clear()
                for pane in self.panes:
                    pane.set_model(pane.model, self._pane_note(pane.index))
            elif cmd.name == "/max-tokens":
                s.max_tokens = commands.parse_max_tokens(cmd.arg)
            elif cmd.name == "/json":
                s.json_mode = commands.parse_on_off(cmd.arg)
            elif cmd.name == "/clear":
                self.tapp.switch_screen(CompareScreen(self.models))
                return
            elif cmd.name == "/help":
                self.tapp.action_show_help()
                return
            elif cmd.name == "/suite":
                path, _, runs = cmd.arg.partition(" ")
                n = commands.parse_positive(runs.strip(), "/suite RUNS")
                self.tapp.open_suite(path, n or 1)
                return
        except commands.CommandError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.notify(f"{cmd.name} applies to every pane from the next prompt.")
        self._update_topbar()

    def _pane_note(self, index: int) -> str:
        """What differs in this pane's requests: its own temperature."""
        if index not in self.pane_temperature:
            return ""
        t = self.pane_temperature[index]
        return "T default" if t is None else f"T={t:g}"

    def _pane_params(self, index: int) -> ChatParams:
        params = self.conv.settings.params()
        if index in self.pane_temperature:
            params = replace(params, temperature=self.pane_temperature[index])
        return params

    def _pane_settings(self, index: int) -> dict[str, Any]:
        """The settings stored with a pane's reply (its own temperature included)."""
        settings = self.conv.settings.to_dict()
        if index in self.pane_temperature:
            settings["temperature"] = self.pane_temperature[index]
        return settings

    def set_pane_model(self, index: int, model: str) -> None:
        """Pane ``index`` continues its own conversation with ``model``."""
        self.models[index] = model
        self.pane(index).set_model(model, self._pane_note(index))
        self.tapp.warm(model)
        self.tapp.state.last_models = list(self.models)
        self.tapp._save_state()
        self.notify(f"Pane {PANE_LETTERS[index]}: {model}")

    def pick_model(self) -> None:
        """F2 in compare mode: choose the pane, then the model."""
        from tui.screens.model_picker import ModelPicker
        from tui.screens.pane_chooser import PaneChooser

        def pane_chosen(index: int | None) -> None:
            if index is None:
                return

            def picked(ref: str | None) -> None:
                if ref:
                    self.set_pane_model(index, ref)

            self.tapp.start_discovery(again_after_s=PICKER_REDISCOVER_S)
            self.app.push_screen(
                ModelPicker(
                    self.tapp.catalog,
                    self.models[index],
                    title=f"Model for pane {PANE_LETTERS[index]}",
                ),
                picked,
            )

        self.app.push_screen(
            PaneChooser(self.models, "Change the model of which pane?"), pane_chosen
        )

    # --- racing --------------------------------------------------------------------------

    def send(self, text: str, t_submit_ns: int | None = None) -> None:
        """Send ``text`` to every pane; the requests leave together."""
        t_submit = t_submit_ns or time.perf_counter_ns()
        panes = tuple(range(len(self.models)))
        self.conv.add_user(text, self.tapp.store, panes=panes)
        self.tapp.remember_conversation(self.conv.id)
        self.tapp.history_added(text)
        for pane in self.panes:
            pane.messages.mount(UserMessage(text))
        self._race(t_submit)
        self._update_topbar()

    def _race(self, t_submit: int, only: tuple[int, ...] | None = None) -> None:
        self.race_id = uuid.uuid4().hex
        self.finish_ns = {}
        self.restored = {}
        requests: list[ChatRequest] = []
        chosen = [p for p in self.panes if only is None or p.index in only]
        for pane in chosen:
            request = ChatRequest(
                model=pane.model,
                messages=self.conv.request_messages(pane.index),
                params=self._pane_params(pane.index),
            )
            info = model_info(pane.model, self.tapp.config)
            run = LiveRun(
                pane.model,
                t_submit,
                info.price,
                estimate_prompt_tokens(request.messages),
                self.tapp.config.stall_s,
                pane=pane.index,
            )
            widget = AssistantMessage(pane.model, pane_label=pane.label)
            pane.messages.mount(widget)
            pane.messages.resume_follow()
            self.runs[pane.index] = run
            self.widgets[pane.index] = widget
            self.finish_ns[pane.index] = None
            requests.append(request)
        self._frame_timer.resume()
        self.run_worker(
            self._start_all(chosen, requests, t_submit), group="race", exit_on_error=False
        )

    async def _start_all(
        self, panes: list[ComparePane], requests: list[ChatRequest], t_submit: int
    ) -> None:
        try:
            handles = await self.tapp.engine.submit_many(requests, t_submit)
        except Exception as exc:
            for pane in panes:
                self._fail_locally(pane, f"the engine process could not start: {exc}")
            return
        for pane, handle in zip(panes, handles, strict=True):
            self.handles[pane.index] = handle
            self.run_worker(
                self._consume(pane, handle), group=f"pane-{pane.index}", exit_on_error=False
            )

    async def _consume(self, pane: ComparePane, handle: StreamHandle) -> None:
        run = self.runs[pane.index]
        widget = self.widgets[pane.index]
        store = self.tapp.store
        params = self._pane_settings(pane.index)
        while (batch := await handle.next_batch()) is not None:
            delta = run.feed(batch)
            if delta.reasoning:
                widget.append_reasoning(delta.reasoning)
            if delta.text:
                widget.append_text(delta.text)
            for note in delta.notices:
                widget.add_notice(note)
            if delta.text or delta.reasoning:
                pane.messages.content_grew()
            # The first token, then every second (DESIGN §6).
            run.maybe_checkpoint(store, self.conv, params, race_id=self.race_id)
            if run.done:
                break
        self._finish(pane)

    def _fail_locally(self, pane: ComparePane, message: str) -> None:
        run = self.runs[pane.index]
        run.feed([StreamError(t_ns=time.perf_counter_ns(), kind="internal", message=message)])
        self._finish(pane)

    def _finish(self, pane: ComparePane) -> None:
        run = self.runs[pane.index]
        widget = self.widgets[pane.index]
        if run.shown_final:
            return
        run.shown_final = True
        if not run.done:
            run.feed([Cancelled(t_ns=time.perf_counter_ns())])
        m = run.final()
        widget.finish(m)
        turn = run.turn()
        self.conv.turns(pane.index).append(turn)
        run.checkpoint(
            self.tapp.store, self.conv, self._pane_settings(pane.index), race_id=self.race_id
        )
        self.tapp.run_completed(run, m)
        if m.status in ("complete", "length"):
            self.finish_ns[pane.index] = run.t_last or time.perf_counter_ns()
        if turn.error and turn.status in ("error", "interrupted"):
            kind = next(
                (e.kind for e in reversed(run.events) if isinstance(e, StreamError)), "error"
            )
            pane.messages.mount(ErrorPanel(run.model, kind, turn.error))
        pane.messages.content_grew()
        pane.status.show(run.live(time.perf_counter_ns()), run.spark_rates())
        self.handles.pop(pane.index, None)
        if not self.streaming:
            self.race_log.add({i: r.final() for i, r in self.runs.items()})
            self._frame_timer.pause()
        self._update_strip()

    def _tick(self) -> None:
        if not self.runs:
            return
        if not self._pacer.frame():  # fewer frames while drawing keeps the UI busy
            return
        for index, run in self.runs.items():
            widget = self.widgets.get(index)
            if widget is not None and not run.shown_final:
                widget.sync()  # every pane's new text in the same frame
                # Text that came just before a pause is saved without waiting for a batch.
                run.maybe_checkpoint(
                    self.tapp.store, self.conv, self._pane_settings(index), race_id=self.race_id
                )
        self._ticks += 1
        if self._ticks % FIGURES_EVERY:
            return
        now = self.tapp.clock()
        for index, run in self.runs.items():
            if run.done:
                continue
            try:
                pane = self.pane(index)
            except Exception:
                continue
            f = run.live(now)
            pane.status.show(f, run.spark_rates())
            widget = self.widgets.get(index)
            if widget is not None:
                if f.retry_until_ns is not None:
                    left = max(0.0, (f.retry_until_ns - now) / 1e9)
                    widget.show_live(f"⟳ retrying in {left:.1f} s — Esc cancels")
                else:
                    ep = self.tapp.config.endpoints.get(run.endpoint)
                    widget.show_live(run.live_label(now, ep.timeouts if ep else None))
        self._update_strip()

    def _metrics_now(self, index: int) -> RunMetrics | None:
        """Final figures of a finished reply; running figures (cheap) while it streams."""
        run = self.runs.get(index)
        if run is None:
            return self.restored.get(index)
        if run.done:
            return run.final()
        f = run.live(self.tapp.clock())
        return replace(
            EMPTY_METRICS,
            status="streaming",
            ttft_ms=f.ttft_ms,
            decode_tps=f.decode_tps,
            cost_usd=f.cost_usd,
        )

    def _update_strip(self) -> None:
        """The comparison with pane A: this prompt, the session, and who finished first."""
        strip = self.query_one("#strip", LiveLine)
        if len(self.models) < 2:
            strip.show("Add a second model to race: F2 → pane B, or /model B NAME")
            return
        rows: list[Content] = []
        base = self._metrics_now(0)
        for pane in self.panes[1:]:
            this = describe(compare(base, self._metrics_now(pane.index)))
            n = self.race_log.count(pane.index)
            session = describe(self.race_log.session_delta(pane.index)) if n else Content("—")
            rows.append(
                Content.assemble(
                    (f"{pane.label} vs A ", "bold"),
                    "this prompt: ",
                    this,
                    "   session",
                    f" ({n})" if n else "",
                    ": ",
                    session,
                )
            )
        if self.finish_ns and not self.streaming:
            order = finishing_order(self.finish_ns)
            names = []
            for rank, idx in enumerate(order, start=1):
                done = self.finish_ns.get(idx) is not None
                names.append(
                    f"{rank}. {PANE_LETTERS[idx]}"
                    if done
                    else f"{PANE_LETTERS[idx]} did not finish"
                )
            verdict = next((w for r, w in reversed(self.verdicts) if r == self.race_id), None)
            if verdict is not None:
                best = "tie" if verdict == "tie" else self._verdict_pane(verdict)
                names.append(f"   verdict: {best}")
            rows.append(Content.assemble(("finishing order ", "bold"), "  ".join(names)))
        elif self.streaming:
            finished = [i for i, t in self.finish_ns.items() if t is not None]
            rows.append(
                Content.assemble(
                    ("racing… ", "bold"),
                    (
                        "finished: "
                        + ", ".join(
                            PANE_LETTERS[i]
                            for i in sorted(finished, key=lambda i: self.finish_ns[i] or 0)
                        )
                    )
                    if finished
                    else "",
                )
            )
        strip.show(Content("\n").join(rows) if rows else "")

    # --- cancel, retry -------------------------------------------------------------------

    def _cancel(self, index: int) -> bool:
        run = self.runs.get(index)
        if run is None or run.done:
            return False
        handle = self.handles.get(index)
        if handle is not None:
            self.tapp.engine.cancel(handle)

        def fallback() -> None:
            if not run.done and not run.shown_final:
                self.workers.cancel_group(self, f"pane-{index}")
                self._finish(self.pane(index))

        self.set_timer(CANCEL_GRACE_S, fallback)
        return True

    def interrupt_replies(self, message: str) -> None:
        """The app is being stopped (SIGTERM, SIGHUP): end every pane's reply as interrupted."""
        for index, run in list(self.runs.items()):
            if run.shown_final:
                continue
            run.interrupt(message)
            self.workers.cancel_group(self, f"pane-{index}")
            self._finish(self.pane(index))

    def cancel_all(self) -> bool:
        """Esc: cancel every pane's stream at once."""
        return any([self._cancel(i) for i in list(self.runs)])

    def action_cancel_pane(self, index: int) -> None:
        if index >= len(self.models):
            return
        if not self._cancel(index):
            self.notify(f"Pane {PANE_LETTERS[index]} is not streaming.")

    def action_cancel_one(self) -> None:
        """F10: cancel the pane whose letter is pressed next (Alt+1 … Alt+4 without Alt)."""
        from tui.screens.pane_chooser import PaneChooser

        if not any(not run.done for run in self.runs.values()):
            self.notify("No pane is streaming.")
            return

        def chosen(index: int | None) -> None:
            if index is not None:
                self.action_cancel_pane(index)

        self.app.push_screen(PaneChooser(self.models, "Cancel which pane's reply?"), chosen)

    def retry(self) -> None:
        """F5: run the last prompt again on every pane."""
        if self.streaming:
            self.notify("Panes are still streaming: Esc cancels them.", severity="warning")
            return
        if not any(t.role == "user" for t in self.conv.turns(0)):
            self.notify("Nothing to retry yet.")
            return
        for pane in self.panes:
            turns = self.conv.turns(pane.index)
            while turns and turns[-1].role == "assistant":
                turns.pop()
        self._race(time.perf_counter_ns())

    # --- scrolling, diff, verdict --------------------------------------------------------

    def action_toggle_sync(self) -> None:
        self.synced = not self.synced
        self.tapp.state.synced_scroll = self.synced
        self.tapp._save_state()
        self.notify("Synced scrolling on." if self.synced else "Panes scroll on their own.")
        self._update_topbar()

    def action_scroll_panes(self, direction: int) -> None:
        targets = self.panes if self.synced else [self._focused_pane()]
        for pane in targets:
            if direction < 0:
                pane.messages.scroll_page_up()
            else:
                pane.messages.scroll_page_down()

    def _focused_pane(self) -> ComparePane:
        focused = self.focused
        node = focused
        while node is not None:
            if isinstance(node, ComparePane):
                return node
            node = node.parent  # type: ignore[assignment]
        return self.panes[0]

    def _pane_scrolled(self, _value: float) -> None:
        if not self.synced or self._syncing:
            return
        source = next(
            (p for p in self.panes if p.messages.has_focus_within or p.messages.is_mouse_over), None
        )
        if source is None:
            return
        self._syncing = True
        try:
            src = source.messages
            frac = src.scroll_y / src.max_scroll_y if src.max_scroll_y else 1.0
            for pane in self.panes:
                if pane is not source:
                    m: MessageList = pane.messages
                    m.scroll_to(y=frac * m.max_scroll_y, animate=False)
        finally:
            self._syncing = False

    def latest_answers(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for pane in self.panes:
            turn = next(
                (t for t in reversed(self.conv.turns(pane.index)) if t.role == "assistant"), None
            )
            if turn is not None:
                out[pane.index] = turn.content
        return out

    def action_diff(self) -> None:
        from tui.screens.diff_view import DiffView

        answers = self.latest_answers()
        if len(answers) < 2:
            self.notify("Two answers are needed for a diff: send a prompt first.")
            return
        self.app.push_screen(DiffView(answers, self.models))

    def _verdict_pane(self, model: str) -> str:
        """``B best`` for a winning model (its pane's letter), or the model's name."""
        if model in self.models:
            return f"{PANE_LETTERS[self.models.index(model)]} best"
        return f"{model} best"

    def action_verdict(self) -> None:
        from tui.screens.pane_chooser import PaneChooser

        if self.race_id is None or self.streaming:
            self.notify("Give a verdict after a race has finished.")
            return
        race_id = self.race_id

        def chosen(index: int | None) -> None:
            if index is None:
                return
            winner = "tie" if index == -1 else self.models[index]
            if self.tapp.store is not None:
                self.tapp.store.save_verdict(self.conv.id, race_id, winner, self.models)
            self.verdicts.append((race_id, winner))
            self._update_strip()
            self.notify(
                "Verdict: tie."
                if winner == "tie"
                else f"Verdict: pane {PANE_LETTERS[index]} ({winner}) was best."
            )

        self.app.push_screen(
            PaneChooser(self.models, "Which pane answered best?", allow_tie=True), chosen
        )

    def on_screen_resume(self) -> None:
        self.query_one(PromptBox).focus()

    def fill_prompt(self, text: str, send_now: bool = False) -> None:
        """Put ``text`` in the prompt, or send it to every pane at once."""
        prompt = self.query_one(PromptBox)
        if send_now and not self.streaming:
            self.send(text)
            return
        prompt.set_prompt(text)
        prompt.move_cursor(prompt.document.end)
        prompt.focus()

    def last_reply_text(self) -> str | None:
        answers = self.latest_answers()
        return answers.get(self._focused_pane().index) or answers.get(0)

    def replay_last(self, times: int = 1) -> None:
        """Send the last prompt again to every pane (``times`` rounds, one after another)."""
        from tui.screens.shared import replay_prompt

        replay_prompt(self, times)

    def export(self) -> None:
        from tui.screens.shared import export_conversation

        export_conversation(self)

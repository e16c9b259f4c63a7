"""A/B compare: models in split panes racing on the same prompt (up to four).

One prompt box sends to every pane; the requests leave together (the engine holds them at a
start gate until every connection is ready), stream side by side, and a strip compares each
pane with pane A, live. Each pane keeps its own history and can change model at any time.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Footer, Static

from providers.capabilities import ChatParams
from providers.inert import inert_label
from providers.metrics import RunMetrics
from tui import format as fmt
from tui.screens.pane_reply import PaneReply
from tui.screens.race_screen import RaceScreen
from tui.session import blind, request_settings
from tui.session.catalog import PICKER_REDISCOVER_S, resolve
from tui.session.conversation import Conversation
from tui.session.race import PANE_LETTERS, Delta, RaceLog, compare, finishing_order, split_row
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.compare_pane import ComparePane
from tui.widgets.error_panel import ErrorPanel
from tui.widgets.live_line import LiveLine
from tui.widgets.message_list import MessageList
from tui.widgets.prompt_box import PromptBox
from tui.widgets.status_bar import StatusBar

MAX_PANES = 4
MIN_PANE_WIDTH = 30


def _signed_ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{'+' if v >= 0 else '−'}{fmt.ms(abs(v))}"


def _judged(name: str, figure: tuple[str, bool] | None) -> Content:
    """``tok/s ×1.85 ▲ faster`` coloured good or bad (the glyph says it without colour)."""
    if figure is None:
        return Content(f"{name} —")
    shown, better = figure
    return Content.assemble(f"{name} ", (shown, "$good" if better else "$bad"))


def describe(d: Delta) -> Content:
    """``TTFT +212 ms ▲ slower · tok/s ×1.85 ▲ faster · cost ×0.25 ▼ cheaper`` with colours."""
    if d.failed is not None:
        side, status = d.failed
        who = "A's reply" if side == "A" else "this reply"
        return Content.assemble((f"✗ {who} {status}", "$bad"), ": not compared")
    ttft = tps = cost = None
    if d.ttft_ms is not None:
        ttft = (
            f"{_signed_ms(d.ttft_ms)} {'▼ sooner' if d.ttft_ms < 0 else '▲ later'}",
            d.ttft_ms < 0,
        )
    if d.tps_ratio is not None:
        faster = d.tps_ratio >= 1
        tps = (f"×{d.tps_ratio:.2f} {'▲ faster' if faster else '▼ slower'}", faster)
    if d.cost_ratio is not None:
        cheaper = d.cost_ratio <= 1
        cost = (f"×{d.cost_ratio:.2f} {'▼ cheaper' if cheaper else '▲ dearer'}", cheaper)
    parts = [_judged("TTFT", ttft), _judged("tok/s", tps), _judged("cost", cost)]
    return Content(" · ").join(parts)


class CompareScreen(RaceScreen):
    """Panes side by side, one prompt, a live comparison strip."""

    BUSY = "Panes are still streaming: Esc cancels them."
    RACE = True
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
        Binding(
            "alt+h,shift+f9",
            "blind_race",
            "Blind race",
            show=False,
            tooltip="Blind race: the same models, shuffled, named A, B… until the verdict",
            id="blind_race",
        ),
        Binding("pageup", "scroll_panes(-1)", "Scroll the panes up", show=False, priority=True),
        Binding("pagedown", "scroll_panes(1)", "Scroll the panes down", show=False, priority=True),
    ]

    def __init__(self, models: list[str], conversation: Conversation | None = None) -> None:
        super().__init__(conversation or Conversation(mode="compare"))
        self.conv.mode = "compare"
        self.models = list(models[:MAX_PANES])
        # ``/temperature B 1``: a pane's own temperature, to race configurations of one model.
        self.pane_temperature: dict[int, float | None] = {}
        self.pane_thinking: dict[int, tuple[bool | None, int | None]] = {}  # /thinking B …
        self.finish_ns: dict[int, int | None] = {}
        self.race_log = RaceLog()
        self.synced = True
        self._syncing = False
        self.verdicts: list[tuple[str, str]] = []  # (race id, winning model or "tie")
        self.restored: dict[int, RunMetrics] = {}  # the last race's figures, when reopened

    def compose(self) -> ComposeResult:
        yield Static("", id="topbar", markup=False)
        with Horizontal(id="panes"):
            for i, m in enumerate(self.models):
                yield ComparePane(i, m, self.shown(m, i))
        yield LiveLine("", id="strip")
        yield PromptBox(id="prompt")
        yield Static("", id="prompt-info", markup=False)
        yield Footer()

    def prepare(self) -> None:
        self.synced = self.tapp.state.synced_scroll
        for pane in self.panes:
            self.watch(pane.messages, "scroll_y", self._pane_scrolled, init=False)
        self._restore_races()
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

    def _check_width(self) -> None:
        if self.size.width and self.size.width / max(1, len(self.models)) < MIN_PANE_WIDTH:
            self.notify(
                f"{len(self.models)} panes need about {MIN_PANE_WIDTH * len(self.models)}"
                " columns; widen the terminal for readable panes.",
                severity="warning",
            )

    def on_resize(self) -> None:
        self._check_width()
        self._update_strip()  # its rows are split to the width

    # --- what a race of several panes says ---------------------------------------------------

    def pane_models(self) -> list[str | None]:
        return list(self.models)

    def messages_of(self, pane: int) -> MessageList:
        return self.pane(pane).messages

    def status_of(self, pane: int) -> StatusBar:
        return self.pane(pane).status

    def pane_label(self, pane: int) -> str:
        return self.pane(pane).label

    def focused_pane(self) -> int:
        return self._focused_pane().index

    def topbar(self, settings_bits: list[str]) -> Content:
        bits = [f"{len(self.models)} panes", "synced scroll" if self.synced else "free scroll"]
        return Content.assemble(
            ("tokenrace compare", "bold"),
            " · ",
            inert_label(self.conv.title or "new race"),
            " · ",
            " · ".join(bits + settings_bits + blind.topbar_bits(self.conv.blind)),
        )

    def switch_model(self, query: str, pane: int | None) -> None:
        if blind.hiding(self.conv.blind):
            self.notify(blind.LOCKED, severity="warning")
            return
        ref, why = resolve(query, self.tapp.catalog, self.tapp.config)
        if ref is None:
            self.notify(why, severity="warning")
            return
        self.set_pane_model(pane or 0, ref)

    def new_conversation(self) -> None:
        self.tapp.switch_screen(CompareScreen(self.models))

    def set_pane_temperature(self, pane: int | None, temperature: float | None) -> None:
        if pane is None:
            self.pane_temperature.clear()
        else:
            self.pane_temperature[pane] = temperature
        self.show_pane_settings()

    def set_pane_thinking(
        self, pane: int | None, thinking: bool | None, budget: int | None
    ) -> None:
        if pane is None:
            self.pane_thinking.clear()
        else:
            self.pane_thinking[pane] = (thinking, budget)
        self.show_pane_settings()

    def show_pane_settings(self) -> None:
        for p in self.panes:
            p.set_model(p.model, self._pane_note(p.index), self.shown(p.model, p.index))

    def _pane_note(self, index: int) -> str:
        """What differs in this pane's requests: its own temperature, and thinking."""
        s = self.conv.settings
        on, budget = self.pane_thinking.get(index, (s.thinking, s.thinking_budget))
        thinks = request_settings.endpoint_thinks(self.tapp.config, self.models[index])
        label = request_settings.thinking_label(on, budget, thinks)
        if index not in self.pane_temperature:
            return label
        t = self.pane_temperature[index]
        return ("T default" if t is None else f"T={t:g}") + (f" · {label}" if label else "")

    def pane_params(self, pane: int) -> ChatParams:
        params = self.conv.settings.params()
        if pane in self.pane_temperature:
            params = replace(params, temperature=self.pane_temperature[pane])
        if pane in self.pane_thinking:
            on, budget = self.pane_thinking[pane]
            params = replace(params, thinking=on, thinking_budget=budget)
        return params

    def pane_settings(self, pane: int) -> dict[str, Any]:
        """The settings stored with a pane's reply (its own temperature included)."""
        settings = self.conv.settings.to_dict()
        if pane in self.pane_temperature:
            settings["temperature"] = self.pane_temperature[pane]
        return settings

    def set_pane_model(self, index: int, model: str) -> None:
        """Pane ``index`` continues its own conversation with ``model``."""
        self.models[index] = model
        self.pane(index).set_model(model, self._pane_note(index), self.shown(model, index))
        self.tapp.warm(model)
        self.tapp.state.last_models = list(self.models)
        self.tapp._save_state()
        self._update_estimate()
        self.notify(f"Pane {PANE_LETTERS[index]}: {model}")

    def pick_model(self) -> None:
        """F2 in compare mode: choose the pane, then the model."""
        from tui.screens.model_picker import ModelPicker
        from tui.screens.pane_chooser import PaneChooser

        if blind.hiding(self.conv.blind):
            self.notify(blind.LOCKED, severity="warning")
            return

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
            PaneChooser(self.shown_models, "Change the model of which pane?"), pane_chosen
        )

    # --- the race and its comparison strip -----------------------------------------------

    def race(self, t_submit: int) -> None:
        self.finish_ns = dict.fromkeys(range(len(self.models)))
        self.restored = {}
        super().race(t_submit)
        # The strip's rows for a race (its ``racing…`` row) now, in the layout the new replies
        # make: at the first figures they were a layout of every pane of their own, in the
        # first frames of a race, the busiest (issue 21).
        self._update_strip()

    def reply_finished(self, reply: PaneReply) -> None:
        run = reply.run
        if run.status in ("complete", "length"):
            self.finish_ns[reply.pane] = run.t_last or time.perf_counter_ns()
        if not self.streaming:
            self.race_log.add({i: r.final() for i, r in self.runs.items()})
        super().reply_finished(reply)

    def race_changed(self) -> None:
        self._update_strip()

    def metrics_now(self, pane: int) -> RunMetrics | None:
        if pane not in self.replies:
            return self.restored.get(pane)
        return super().metrics_now(pane)

    def _update_strip(self) -> None:
        """The comparison with pane A: this prompt, the session, and who finished first."""
        strip = self.query_one("#strip", LiveLine)
        if len(self.models) < 2:
            strip.show("Add a second model to race: F2 → pane B, or /model B NAME")
            return
        if self.conv.blind is not None and self.conv.blind.hides_figures():
            strip.show(blind.FIGURES_HIDDEN + " F9 gives the verdict and reveals the models.")
            return
        rows: list[Content] = []
        base = self.metrics_now(0)
        # The strip spans the screen; its own region is the old one in ``on_resize``.
        width = self.size.width - strip.styles.gutter.width
        for pane in self.panes[1:]:
            this = describe(compare(base, self.metrics_now(pane.index)))
            n = self.race_log.count(pane.index)
            session = describe(self.race_log.session_delta(pane.index)) if n else Content("—")
            lead = f"{pane.label} vs A "
            head = Content.assemble((lead, "bold"), "this prompt: ", this)
            tail = Content.assemble("session", f" ({n})" if n else "", ": ", session)
            if head.cell_length + 3 + tail.cell_length <= width:
                rows.append(Content.assemble(head, "   ", tail))
            else:  # two rows, the session's under this prompt's, rather than a wrap mid-figure
                rows += [head, Content.assemble(" " * len(lead), tail)]
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
            split = split_row([(p.letter, self.metrics_now(p.index)) for p in self.panes])
            if split:
                rows.append(Content.assemble(("cost split ", "bold"), split))
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

    # --- cancel one pane -----------------------------------------------------------------

    def action_cancel_pane(self, index: int) -> None:
        if index >= len(self.models):
            return
        if not self.cancel_pane(index):
            self.notify(f"Pane {PANE_LETTERS[index]} is not streaming.")

    def action_cancel_one(self) -> None:
        """F10: cancel the pane whose letter is pressed next (Alt+1 … Alt+4 without Alt)."""
        from tui.screens.pane_chooser import PaneChooser

        if not self.streaming:
            self.notify("No pane is streaming.")
            return

        def chosen(index: int | None) -> None:
            if index is not None:
                self.action_cancel_pane(index)

        self.app.push_screen(PaneChooser(self.shown_models, "Cancel which pane's reply?"), chosen)

    # --- scrolling, diff, verdict --------------------------------------------------------

    def action_toggle_sync(self) -> None:
        self.synced = not self.synced
        self.tapp.state.synced_scroll = self.synced
        self.tapp._save_state()
        self.notify("Synced scrolling on." if self.synced else "Panes scroll on their own.")
        self._update_topbar()

    def action_scroll_panes(self, direction: int) -> None:
        # At once, not animated: an animation leaves the end only at its first step, and a
        # layout before that step (a pane's height step, in a busy race) found the list still
        # at its end and anchored it again: in tmux, PageUp in a 4 × 500 tok/s race was lost
        # in 2 runs of 3, the panes following on (Pilot's key came between, never lost).
        targets = self.panes if self.synced else [self._focused_pane()]
        for pane in targets:
            if direction < 0:
                if pane.messages.scroll_y <= 0 and self.load_earlier(pane.index):
                    continue
                pane.messages.scroll_page_up(animate=False)
            else:
                pane.messages.scroll_page_down(animate=False)

    def _focused_pane(self) -> ComparePane:
        node = self.focused
        while node is not None:
            if isinstance(node, ComparePane):
                return node
            parent = node.parent
            node = parent if isinstance(parent, Widget) else None
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

    def action_diff(self) -> None:
        from tui.screens.diff_view import DiffView

        answers = self.latest_answers()
        if len(answers) < 2:
            self.notify("Two answers are needed for a diff: send a prompt first.")
            return
        self.app.push_screen(DiffView(answers, self.shown_models))

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
            was_blind = blind.hiding(self.conv.blind)
            if self.tapp.store is not None:
                self.tapp.store.save_verdict(
                    self.conv.id, race_id, winner, self.models, blind=was_blind
                )
            self.verdicts.append((race_id, winner))
            if self.conv.reveal(self.tapp.store):
                self._show_names()
            self._update_strip()
            self.notify(
                "Verdict: tie."
                if winner == "tie"
                else f"Verdict: pane {PANE_LETTERS[index]} ({winner}) was best."
            )
            if was_blind and self.conv.blind is not None:
                self.notify(f"Revealed: {blind.reveal_text(self.conv.blind)}", timeout=15)

        self.app.push_screen(
            PaneChooser(self.shown_models, "Which pane answered best?", allow_tie=True), chosen
        )

    @property
    def shown_models(self) -> list[str]:
        return blind.shown_models(self.conv.blind, self.models)

    def _show_names(self) -> None:
        """The verdict revealed a blind race: every label becomes its model's name again."""
        for pane in self.panes:
            pane.set_model(pane.model, self._pane_note(pane.index), None)
            turns = [t for t in self.conv.turns(pane.index) if t.role == "assistant"]
            for widget, turn in zip(pane.query(AssistantMessage), turns, strict=False):
                widget.model = turn.model or pane.model
                widget.header.update(widget._header_text(widget.status))
                if turn.metrics is not None:
                    widget.metrics_line.show(fmt.metrics_text(turn.metrics))
            for panel in pane.query(ErrorPanel):
                panel.reveal()
            run = self.runs.get(pane.index)
            if run is not None and run.done:
                pane.status.show(run.live(time.perf_counter_ns()), run.spark_rates())
        self._update_topbar()

    def action_blind_race(self) -> None:
        """Alt+H: race the same models blind, shuffled, in a new conversation."""
        from tui.screens.blind_options import BlindOptions

        if self.streaming:
            self.notify(self.BUSY, severity="warning")
            return
        if len(self.models) < 2:
            self.notify("A blind race needs two models or more.", severity="warning")
            return

        def chosen(race: blind.BlindRace | None) -> None:
            if race is None:
                return
            race.models = blind.shuffled(self.models)
            conv = Conversation(mode="compare", settings=self.conv.settings, blind=race)
            self.tapp.switch_screen(CompareScreen(race.models, conv))

        self.app.push_screen(BlindOptions(), chosen)

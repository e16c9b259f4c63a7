"""The chat screen: one model, a streamed conversation, live figures, saved as it goes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static, TextArea

from providers.events import Cancelled, StreamError
from providers.inert import inert_label
from providers.prices import format_context, model_info
from providers.remote import StreamHandle
from providers.request import ChatRequest
from providers.tokens import estimate_prompt_tokens, estimate_tokens
from tui import format as fmt
from tui.compositor import CroppingCompositor
from tui.frame_pacer import FramePacer
from tui.session import commands
from tui.session.catalog import resolve
from tui.session.conversation import Conversation, LiveRun, Turn
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.error_panel import ErrorPanel
from tui.widgets.message_list import MessageList
from tui.widgets.prompt_box import PromptBox
from tui.widgets.status_bar import StatusBar
from tui.widgets.user_message import UserMessage

if TYPE_CHECKING:
    from tui.app import TokenraceApp

# New text is drawn at most this often, one redraw for everything. 20 Hz: 4-5 tokens a frame
# at 100 tok/s; at 25 Hz the UI took 11% more CPU (bench/README.md, CPU rows) for frames 10 ms
# sooner (render lag p95 62 -> 73-80 ms at 200 tok/s).
FRAME_HZ = 20
FIGURES_EVERY = 3  # live figures every third frame: about 7 times a second
HISTORY_WINDOW = 30  # turns rendered when a conversation opens; older ones load on demand
CANCEL_GRACE_S = 1.0


class ChatScreen(Screen[None]):
    """A conversation with one model at a time; the model can change between turns."""

    AUTO_FOCUS = "PromptBox"
    BINDINGS = [
        Binding(
            "pageup", "scroll_messages(-1)", "Scroll the conversation up", show=False, priority=True
        ),
        Binding(
            "pagedown",
            "scroll_messages(1)",
            "Scroll the conversation down",
            show=False,
            priority=True,
        ),
    ]

    def __init__(self, model: str | None, conversation: Conversation | None = None) -> None:
        super().__init__()
        self._compositor = CroppingCompositor()
        self.model = model
        self.conv = conversation or Conversation()
        self.run: LiveRun | None = None
        self.handle: StreamHandle | None = None
        self.reply: AssistantMessage | None = None
        self._history_pos = -1
        self._draft = ""
        self._estimate_timer: object | None = None
        self._hidden = 0  # older turns not mounted yet
        self._ticks = 0

    @property
    def tapp(self) -> TokenraceApp:
        from tui.app import TokenraceApp

        assert isinstance(self.app, TokenraceApp)
        return self.app

    # --- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="topbar", markup=False)
        with MessageList(id="messages"):
            yield Static("", id="earlier", markup=False)
        yield Static("↓ new text below — Ctrl+End follows the stream", id="new-below", markup=False)
        yield StatusBar(id="status")
        yield PromptBox(id="prompt")
        yield Static("", id="prompt-info", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#new-below").display = False
        self.watch(self.query_one(MessageList), "new_below", self._show_new_below)
        self._render_history()
        self._update_topbar()
        self.query_one(StatusBar).show_idle(self.model or "choosing a model…")
        # The frame clock runs only while something streams: an idle screen costs nothing.
        self._frame_timer = self.set_interval(1 / FRAME_HZ, self._tick, pause=True)
        self._pacer = FramePacer()
        self._update_estimate()
        if self.model:
            self.tapp.warm(self.model)

    def _render_history(self) -> None:
        messages = self.query_one(MessageList)
        turns = self.conv.turns(0)
        self._hidden = max(0, len(turns) - HISTORY_WINDOW)
        widgets = self._turn_widgets(turns[self._hidden :])
        if widgets:
            messages.mount_all(widgets)
        self._update_earlier()

    def _turn_widgets(self, turns: list[Turn]) -> list[Widget]:
        widgets: list[Widget] = []
        for t in turns:
            if t.role == "user":
                widgets.append(UserMessage(t.content))
            else:
                widgets.append(
                    AssistantMessage(
                        t.model or "?",
                        text=t.content,
                        reasoning=t.reasoning,
                        status=t.status,
                        metrics=t.metrics,
                        finished=True,
                    )
                )
                if t.error and t.status in ("error", "interrupted"):
                    widgets.append(ErrorPanel(t.model or "?", t.status, t.error))
        return widgets

    def _update_earlier(self) -> None:
        earlier = self.query_one("#earlier", Static)
        earlier.display = self._hidden > 0
        if self._hidden:
            earlier.update(
                f"▲ {self._hidden} earlier messages — PageUp at the top (or Ctrl+Home) shows more"
            )

    def load_earlier(self) -> bool:
        """Mount the next window of older turns above the first one shown."""
        if not self._hidden:
            return False
        messages = self.query_one(MessageList)
        start = max(0, self._hidden - HISTORY_WINDOW)
        widgets = self._turn_widgets(self.conv.turns(0)[start : self._hidden])
        self._hidden = start
        first = next((c for c in messages.children if c.id != "earlier"), None)
        if widgets:
            messages.mount_all(widgets, before=first)
        self._update_earlier()
        return True

    def _update_topbar(self) -> None:
        s = self.conv.settings
        bits = []
        if s.system:
            bits.append("system ✓")
        if s.temperature is not None:
            bits.append(f"T={s.temperature:g}")
        if s.max_tokens is not None:
            bits.append(f"max {s.max_tokens}")
        if s.json_mode:
            bits.append("JSON")
        title = inert_label(self.conv.title or "new conversation")
        model = inert_label(self.model or "no model")
        self.query_one("#topbar", Static).update(
            Content.assemble(
                ("tokenrace", "bold"),
                " · ",
                title,
                " · ",
                (model, "bold"),
                ("  " + " ".join(bits)) if bits else "",
            )
        )

    @property
    def streaming(self) -> bool:
        return self.run is not None and not self.run.done

    def _show_new_below(self, value: bool) -> None:
        self.query_one("#new-below").display = value

    # --- model ---------------------------------------------------------------------------

    def set_model(self, model: str) -> None:
        """Continue the conversation with ``model`` from the next prompt on."""
        self.model = model
        self.tapp.remember_model(model)
        self._update_topbar()
        if not self.streaming:
            self.query_one(StatusBar).show_idle(model)
        self._update_estimate()
        self.tapp.warm(model)

    def engine_status(self, text: str) -> None:
        """The local model's server starting or ready: shown on the idle status bar."""
        model, _, news = text.partition(": ")
        if news and model.split(" ", 1)[0] == self.model and not self.streaming:
            self.query_one(StatusBar).show_idle(self.model, news)

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
            self.notify("A reply is still streaming: Esc cancels it.", severity="warning")
            return
        if not self.model:
            self.notify("No model yet: F2 picks one.", severity="warning")
            return
        event.prompt.clear_prompt()
        self._history_pos = -1
        self.send(text, t_submit)

    def run_command(self, cmd: commands.Command) -> None:
        s = self.conv.settings
        try:
            if cmd.name == "/model":
                ref, why = resolve(cmd.arg, self.tapp.catalog, self.tapp.config)
                if ref is None:
                    self.notify(why, severity="warning")
                    self.tapp.action_pick_model(query=cmd.arg)
                    return
                self.set_model(ref)
                self.notify(f"Model: {ref}. The conversation continues with it.")
                return
            if cmd.name == "/system":
                s.system = cmd.arg or None
                self.notify("System prompt set." if cmd.arg else "System prompt cleared.")
            elif cmd.name == "/temperature":
                s.temperature = commands.parse_temperature(cmd.arg)
                self.notify(
                    f"Temperature: {s.temperature if s.temperature is not None else 'default'}"
                )
            elif cmd.name == "/max-tokens":
                s.max_tokens = commands.parse_max_tokens(cmd.arg)
                self.notify(f"Max tokens: {s.max_tokens or 'no cap'}")
            elif cmd.name == "/json":
                s.json_mode = commands.parse_on_off(cmd.arg)
                self.notify(f"JSON mode {'on' if s.json_mode else 'off'}.")
            elif cmd.name == "/clear":
                self.tapp.action_new_chat()
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
        if self.conv.saved and self.tapp.store is not None:
            self.tapp.store.update_conversation(self.conv.id, settings=s.to_dict())
        self._update_topbar()
        self._update_estimate()

    @on(TextArea.Changed, "#prompt")
    def _prompt_changed(self) -> None:
        if self._estimate_timer is None:
            self._estimate_timer = self.set_timer(0.15, self._update_estimate_now)

    def _update_estimate_now(self) -> None:
        self._estimate_timer = None
        self._update_estimate()

    def _update_estimate(self) -> None:
        """Estimated tokens and cost of the prompt before it is sent, and a context warning."""
        info = self.query_one("#prompt-info", Static)
        prompt = self.query_one(PromptBox)
        text = prompt.text
        if text.startswith("/"):
            info.update(self._completion_hint(text))
            return
        full = prompt.full_text
        history = [*self.conv.request_messages(), {"role": "user", "content": full}]
        tokens = estimate_prompt_tokens(history)
        if not self.model:
            info.update(f"≈{tokens:,} tok")
            return
        mi = model_info(self.model, self.tapp.config)
        parts = [f"next request ≈{tokens:,} tok in"]
        if mi.price is not None:
            cost = mi.price.cost(tokens, 0)
            parts.append(f"{'≈' if cost else ''}{fmt.usd(cost)} before output")
        if mi.context is not None:
            parts.append(f"context {format_context(mi.context)} ({100 * tokens / mi.context:.0f}%)")
            if tokens > mi.context:
                info.update(
                    Content.assemble(
                        ("⚠ exceeds the model's context window: ", "bold"), " · ".join(parts)
                    )
                )
                return
        if full and estimate_tokens(full) > 2000:
            parts.insert(1, f"prompt ≈{estimate_tokens(full):,} tok")
        info.update(" · ".join(parts))

    def _completion_hint(self, text: str) -> str:
        if " " not in text:
            matches = commands.completions(text)
            if not matches:
                return f"unknown command {text}"
            return "  ".join(f"{m} — {commands.COMMANDS[m]}" for m in matches[:3]) + (
                "   (Tab completes)" if len(matches) == 1 else ""
            )
        name, _, arg = text.partition(" ")
        if name == "/model":
            found = [e.ref for e in self.tapp.catalog if arg.lower() in e.ref.lower()][:6]
            return "  ".join(found) + ("   (Tab completes)" if found else "   no match")
        return commands.COMMANDS.get(name, "")

    @on(PromptBox.CompletionRequested)
    def _complete(self, event: PromptBox.CompletionRequested) -> None:
        text = event.prompt.text
        if " " not in text:
            matches = commands.completions(text)
            if matches:
                event.prompt.set_prompt(matches[0] + " ")
                event.prompt.move_cursor(event.prompt.document.end)
            return
        name, _, arg = text.partition(" ")
        if name == "/model":
            found = [e.ref for e in self.tapp.catalog if arg.lower() in e.ref.lower()]
            if found:
                event.prompt.set_prompt(f"/model {found[0]}")
                event.prompt.move_cursor(event.prompt.document.end)

    @on(PromptBox.HistoryRequested)
    def _history(self, event: PromptBox.HistoryRequested) -> None:
        prompts = self.tapp.prompt_history()
        if not prompts:
            return
        if self._history_pos == -1:
            self._draft = event.prompt.text
        pos = self._history_pos - event.direction  # up = older = larger index
        if pos < -1:
            return
        if pos >= len(prompts):
            pos = len(prompts) - 1
        self._history_pos = pos
        if pos == -1:
            event.prompt.set_prompt(self._draft)
        else:
            event.prompt.set_prompt(prompts[pos], recalled=True)
        event.prompt.move_cursor(event.prompt.document.end)

    # --- streaming -----------------------------------------------------------------------

    def send(self, text: str, t_submit_ns: int | None = None) -> None:
        """Send ``text`` as the next user turn to the current model."""
        t_submit = t_submit_ns or time.perf_counter_ns()
        assert self.model is not None
        store = self.tapp.store
        self.conv.add_user(text, store)
        self.tapp.remember_conversation(self.conv.id)
        self.tapp.history_added(text)
        messages = self.query_one(MessageList)
        messages.mount(UserMessage(text))
        self._start(t_submit)
        self._update_topbar()

    def _start(self, t_submit: int) -> None:
        assert self.model is not None
        request = ChatRequest(
            model=self.model,
            messages=self.conv.request_messages(),
            params=self.conv.settings.params(),
        )
        info = model_info(self.model, self.tapp.config)
        run = LiveRun(
            self.model,
            t_submit,
            info.price,
            estimate_prompt_tokens(request.messages),
            self.tapp.config.stall_s,
        )
        self.run = run
        self.reply = AssistantMessage(self.model)
        messages = self.query_one(MessageList)
        messages.mount(self.reply)
        messages.resume_follow()
        self._frame_timer.resume()
        self._stream(run, self.reply, request)

    @work(group="stream", exit_on_error=False)
    async def _stream(self, run: LiveRun, widget: AssistantMessage, request: ChatRequest) -> None:
        store = self.tapp.store
        params = self.conv.settings.to_dict()
        messages = self.query_one(MessageList)
        try:
            handle = await self.tapp.engine.submit(request, run.t_submit_ns)
        except Exception as exc:  # the engine could not start: say so, keep the app
            self._fail_locally(run, widget, f"the engine process could not start: {exc}")
            return
        self.handle = handle
        while (batch := await handle.next_batch()) is not None:
            delta = run.feed(batch)
            if delta.reasoning:
                widget.append_reasoning(delta.reasoning)
            if delta.text:
                widget.append_text(delta.text)
            for note in delta.notices:
                widget.add_notice(note)
            if delta.text or delta.reasoning:
                messages.content_grew()
            run.maybe_checkpoint(store, self.conv, params)  # the first token, then every second
            if run.done:
                break
        self._finish(run, widget)

    def _fail_locally(self, run: LiveRun, widget: AssistantMessage, message: str) -> None:
        run.feed([StreamError(t_ns=time.perf_counter_ns(), kind="internal", message=message)])
        self._finish(run, widget)

    def _finish(self, run: LiveRun, widget: AssistantMessage) -> None:
        if run.shown_final:
            return
        run.shown_final = True
        if not run.done:
            run.feed([Cancelled(t_ns=time.perf_counter_ns())])
        m = run.final()
        widget.finish(m)
        turn = run.turn()
        self.conv.turns(0).append(turn)
        run.checkpoint(self.tapp.store, self.conv, self.conv.settings.to_dict())
        self.tapp.run_completed(run, m)
        messages = self.query_one(MessageList)
        if turn.error and turn.status in ("error", "interrupted"):
            err_kind = next(
                (e.kind for e in reversed(run.events) if isinstance(e, StreamError)), "error"
            )
            messages.mount(ErrorPanel(run.model, str(err_kind), turn.error))
        messages.content_grew()
        self.query_one(StatusBar).show(run.live(time.perf_counter_ns()), run.spark_rates())
        self.handle = None
        self._frame_timer.pause()
        self._update_estimate()

    def _tick(self) -> None:
        run = self.run
        if run is None or run.done:
            return
        if not self._pacer.frame():  # fewer frames while drawing keeps the UI busy
            return
        if self.reply is not None:
            self.reply.sync()
        # Text that came just before a pause is saved without waiting for the next batch.
        run.maybe_checkpoint(self.tapp.store, self.conv, self.conv.settings.to_dict())
        self._ticks += 1
        if self._ticks % FIGURES_EVERY:
            return  # figures change slower than text
        f = run.live(self.tapp.clock())
        self.query_one(StatusBar).show(f, run.spark_rates())
        if self.reply is None:
            return
        if f.retry_until_ns is None:
            ep = self.tapp.config.endpoints.get(run.endpoint)
            self.reply.show_live(run.live_label(self.tapp.clock(), ep.timeouts if ep else None))
        else:
            left = max(0.0, (f.retry_until_ns - self.tapp.clock()) / 1e9)
            self.reply.show_live(f"⟳ retrying in {left:.1f} s — Esc cancels")

    def interrupt_replies(self, message: str) -> None:
        """The app is being stopped (SIGTERM, SIGHUP): end the reply as interrupted, saved."""
        run, widget = self.run, self.reply
        if run is None or widget is None or run.shown_final:
            return
        run.interrupt(message)
        self.workers.cancel_group(self, "stream")
        self._finish(run, widget)

    def cancel(self) -> bool:
        """Cancel the reply being streamed; True if there was one."""
        if not self.streaming or self.run is None:
            return False
        run, widget = self.run, self.reply
        if self.handle is not None:
            self.tapp.engine.cancel(self.handle)

        def fallback() -> None:
            # The engine did not confirm (it may have died): finish here, keeping the text.
            if not run.done and widget is not None:
                self.workers.cancel_group(self, "stream")
                self._finish(run, widget)

        self.set_timer(CANCEL_GRACE_S, fallback)
        return True

    def retry(self) -> None:
        """Send the last prompt again (after an error, a cancel or just to compare)."""
        if self.streaming:
            self.notify("A reply is still streaming: Esc cancels it.", severity="warning")
            return
        turns = self.conv.turns(0)
        if not any(t.role == "user" for t in turns):
            self.notify("Nothing to retry yet.")
            return
        if not self.model:
            return
        while turns and turns[-1].role == "assistant":
            turns.pop()  # the retried reply stays on screen and in the store, not in history
        self._start(time.perf_counter_ns())

    def last_reply(self) -> Turn | None:
        return next((t for t in reversed(self.conv.turns(0)) if t.role == "assistant"), None)

    def on_screen_resume(self) -> None:
        self.query_one(PromptBox).focus()

    def fill_prompt(self, text: str, send_now: bool = False) -> None:
        """Put ``text`` in the prompt (from the history search), or send it at once."""
        prompt = self.query_one(PromptBox)
        if send_now:
            if self.streaming or not self.model:
                prompt.set_prompt(text)
                self.notify("Not sent: a reply is streaming or no model is set.")
                return
            self.send(text)
            return
        prompt.set_prompt(text)
        prompt.move_cursor(prompt.document.end)
        prompt.focus()

    def replay_last(self, times: int = 1) -> None:
        """Run the last prompt again ``times`` times on the current model."""
        from tui.screens.shared import replay_prompt

        replay_prompt(self, times)

    def export(self) -> None:
        from tui.screens.shared import export_conversation

        export_conversation(self)

    def action_load_earlier(self) -> None:
        if not self.load_earlier():
            self.notify("This is the start of the conversation.")

    def action_follow(self) -> None:
        self.query_one(MessageList).resume_follow()

    def action_scroll_messages(self, direction: int) -> None:
        messages = self.query_one(MessageList)
        if direction < 0:
            if messages.scroll_y <= 0 and self.load_earlier():
                return
            messages.scroll_page_up()
        else:
            messages.scroll_page_down()

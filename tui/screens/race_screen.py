"""What the chat and compare screens share: panes racing on one prompt (chat is one pane).

The base owns the prompt (submit, slash commands, Tab completion, history, the estimate line),
the top bar's settings, each pane's history window, starting a race, the frame clock, cancel,
retry, replay, export and ``fill_prompt``. Each reply's own life is a ``PaneReply``.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, assert_never

from textual import on
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.css.query import NoMatches
from textual.geometry import Size
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Static, TextArea

from providers.attachments import Image
from providers.capabilities import ChatParams
from providers.metrics import RunMetrics
from providers.prices import format_context, model_info
from providers.request import ChatRequest
from providers.tokens import estimate_prompt_tokens, estimate_tokens
from tui import format as fmt
from tui.frame_pacer import FAST_VIEWS_PER_S, STEP_BUSY, FrameClock, FramePacer
from tui.screens.pane_reply import PaneReply
from tui.session import blind, request_settings
from tui.session.attachments import complete_image_command, image_command, refused_before_sending
from tui.session.conversation import Conversation, LiveRun, Turn
from tui.session.race import PANE_LETTERS, summarise
from tui.textual_private import private_override, use_cropping_compositor
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.error_panel import ErrorPanel
from tui.widgets.message_list import MessageList
from tui.widgets.prompt_box import PromptBox
from tui.widgets.status_bar import StatusBar
from tui.widgets.streaming_markdown import estimate_rows
from tui.widgets.user_message import UserMessage

if TYPE_CHECKING:
    from textual.geometry import Size

    from tui.app import TokenraceApp
    from tui.session import commands

# New text is drawn at most this often, one redraw for everything. 20 Hz: 4-5 tokens a frame
# at 100 tok/s; at 25 Hz the UI took 11% more CPU (bench/README.md, CPU rows) for frames 10 ms
# sooner (render lag p95 62 -> 73-80 ms at 200 tok/s).
FRAME_HZ = 20
# Turns of the event loop a frame lets pass before it draws: the pipe's bytes read, their
# frames parsed, each pane's batch fed (``_tick``).
CATCH_UP_TURNS = 4
FIGURES_EVERY = 3  # live figures every third frame: about 7 times a second
HISTORY_WINDOW = 30  # turns rendered per pane when a conversation opens; older ones on demand
# ... of which only HISTORY_MIN when those are already HISTORY_SCREENS screens of text or more
# (by an estimate from their sources): 30 long replies were 30 widgets to mount and lay out, and
# 30 texts to cut into blocks, for text many screens above the end (a 500-message conversation
# of 3,200-character replies opened in 769-880 ms with 30, 687-716 with 12, same session).
HISTORY_MIN = 10
HISTORY_SCREENS = 4
# Replies with more than this many screens of text below them open deferred (``defer_unseen``):
# the estimate is near for prose, and drawn markdown is seldom shorter than its source.
UNSEEN_SCREENS = 2


def _pane_width(screen: Size, panes: int) -> int:
    """About the columns a pane's text takes (its padding and scrollbar off)."""
    return max(10, screen.width // max(1, panes) - 4)


def _turn_rows(text: str, width: int, reply: bool) -> int:
    """About the rows a turn takes, from its text: a reply's header, figures and gap, or a
    prompt's header and gap, included."""
    return estimate_rows(text, width) + (3 if reply else 2)


def history_window(turns: list[Turn], screen: Size, panes: int) -> int:
    """How many of a pane's last ``turns`` to draw when its conversation opens: at most
    ``HISTORY_WINDOW``, and past ``HISTORY_MIN`` only while those drawn come to fewer than
    ``HISTORY_SCREENS`` screens of text."""
    width, rows, count = _pane_width(screen, panes), 0, 0
    limit = HISTORY_SCREENS * screen.height
    for turn in reversed(turns):
        if count >= HISTORY_WINDOW or (count >= HISTORY_MIN and rows >= limit):
            break
        rows += _turn_rows(turn.content, width, reply=turn.role != "user")
        count += 1
    return count


def defer_unseen(widgets: list[Widget], screen: Size, panes: int) -> None:
    """Defer the replies among ``widgets`` (a pane's turns, oldest first, about to open at
    their end) that are surely out of sight: those with more than ``UNSEEN_SCREENS`` screens
    of text below them, by an estimate from their sources. They are drawn when scrolled to."""
    width = _pane_width(screen, panes)
    limit = UNSEEN_SCREENS * screen.height
    below = 0
    for widget in reversed(widgets):
        if below >= limit and isinstance(widget, AssistantMessage):
            widget.defer()
        elif isinstance(widget, AssistantMessage):
            below += _turn_rows(widget.body.source, width, reply=True)
        elif isinstance(widget, UserMessage):
            below += _turn_rows(widget.text, width, reply=False)
        else:
            below += 2


class RaceScreen(Screen[None]):
    """A conversation whose panes (one in chat) answer the same prompt, each its own model."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # What the line above the oldest turn shown offers (``_update_earlier``).
        Binding("ctrl+home", "load_earlier", "Show earlier messages", show=False, priority=True)
    ]

    AUTO_FOCUS = "PromptBox"
    BUSY: ClassVar[str] = "A reply is still streaming: Esc cancels it."
    # Compare: every reply of one prompt shares a race id (stored, for the session's deltas).
    RACE: ClassVar[bool] = False

    def __init__(self, conversation: Conversation) -> None:
        super().__init__()
        use_cropping_compositor(self)
        self.conv = conversation
        self.replies: dict[int, PaneReply] = {}
        self._laid_out_at: Size | None = None  # the size of the last layout (``_screen_resized``)
        self.last_text_waiting: set[int] = set()  # panes whose last text waits for its frame
        self.race_id: str | None = None
        self._history_pos = -1
        self._draft = ""
        self._estimate_timer: Timer | None = None
        self._frame_timer: Timer | None = None
        self._hidden: dict[int, int] = {}  # per pane: older turns not mounted yet
        self._ticks = 0

    @property
    def tapp(self) -> TokenraceApp:
        from tui.app import TokenraceApp

        assert isinstance(self.app, TokenraceApp)
        return self.app

    # --- what each screen says -----------------------------------------------------------

    def pane_models(self) -> list[str | None]:
        """Each pane's model (None while chat has none yet)."""
        raise NotImplementedError

    def messages_of(self, pane: int) -> MessageList:
        raise NotImplementedError

    def status_of(self, pane: int) -> StatusBar:
        raise NotImplementedError

    def pane_label(self, pane: int) -> str:
        """The pane's letter and glyph on its replies ("" in chat)."""
        return ""

    def topbar(self, settings_bits: list[str]) -> Content:
        raise NotImplementedError

    def switch_model(self, query: str, pane: int | None) -> None:
        """``/model``: resolve ``query`` and continue with it (in ``pane``)."""
        raise NotImplementedError

    def new_conversation(self) -> None:
        raise NotImplementedError

    def pane_params(self, pane: int) -> ChatParams:
        return self.conv.settings.params()

    def pane_settings(self, pane: int) -> dict[str, Any]:
        """The settings stored with a pane's reply."""
        return self.conv.settings.to_dict()

    def prepare(self) -> None:
        """Screen-specific set-up at mount, before the history is drawn."""

    def race_changed(self) -> None:
        """A reply started, moved on or finished: screens with a comparison redraw it."""

    def set_pane_temperature(self, pane: int | None, temperature: float | None) -> None:
        """``/temperature B X`` (compare only)."""

    def set_pane_thinking(
        self, pane: int | None, thinking: bool | None, budget: int | None
    ) -> None:
        """``/thinking B on`` (compare only)."""

    def show_pane_settings(self) -> None:
        """The request settings that differ by pane, on the panes (chat: its status bar)."""
        s = self.conv.settings
        model = self.pane_models()[0]
        thinks = request_settings.endpoint_thinks(self.tapp.config, model)
        self.status_of(0).set_setting(
            request_settings.thinking_label(s.thinking, s.thinking_budget, thinks)
        )

    def focused_pane(self) -> int:
        return 0

    def shown(self, model: str | None, pane: int | None = None) -> str:
        """The name to show for a pane's model: its label while a blind race hides it."""
        return blind.shown(self.conv.blind, model, pane)

    # --- layout --------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.prepare()
        for index in range(len(self.pane_models())):
            self._render_history(index)
        self._update_topbar()
        # The frame clock runs only while something streams: an idle screen costs nothing.
        self._frame_timer = FrameClock(self, 1 / FRAME_HZ, callback=self._tick, pause=True)
        self._frame_timer._start()
        self._timers.add(self._frame_timer)  # (as ``set_interval`` keeps it: stopped with us)
        self._pacer = FramePacer()
        self._update_estimate()
        for model in self.pane_models():
            if model:
                self.tapp.warm(model)
        self.race_changed()

    def _render_history(self, pane: int) -> None:
        turns = self.conv.turns(pane)
        shown = history_window(turns, self.app.size, len(self.pane_models()))
        self._hidden[pane] = len(turns) - shown
        widgets = self._turn_widgets(turns[self._hidden[pane] :], pane)
        defer_unseen(widgets, self.app.size, len(self.pane_models()))
        messages = self.messages_of(pane)
        if self._hidden[pane] and not messages.query(".earlier"):
            # Mounted only when turns are left out: every other pane's layout stays as it was.
            widgets.insert(0, Static("", classes="earlier", markup=False))
        if widgets:
            messages.mount_all(widgets)
        self._update_earlier(pane)

    def _turn_widgets(self, turns: list[Turn], pane: int) -> list[Widget]:
        widgets: list[Widget] = []
        race = self.conv.blind
        for t in turns:
            if t.role == "user":
                widgets.append(UserMessage(t.content, t.images))
                continue
            widgets.append(
                AssistantMessage(
                    self.shown(t.model, pane),
                    pane_label=self.pane_label(pane),  # as the reply had while it streamed
                    text=t.content,
                    reasoning=t.reasoning,
                    status=t.status,
                    metrics=blind.metrics(race, t.metrics) if t.metrics else None,
                    finished=True,
                    tool_calls=t.tool_calls,
                )
            )
            if t.error and t.status in ("error", "interrupted"):
                widgets.append(self.error_panel(t.model, pane, t.status, t.error))
        return widgets

    def error_panel(self, model: str | None, pane: int, kind: str, error: str) -> ErrorPanel:
        """A failed reply's panel, under the pane's blind label while the race is hidden."""
        race = self.conv.blind
        hidden = (model or "", error) if race is not None and race.hiding else None
        return ErrorPanel(self.shown(model, pane), kind, blind.scrub(race, error), hidden=hidden)

    def _update_earlier(self, pane: int) -> None:
        """The line above the oldest turn shown that says how many are not drawn yet."""
        hidden = self._hidden.get(pane, 0)
        found = self.messages_of(pane).query(".earlier")
        text = f"▲ {hidden} earlier messages — PageUp at the top (or Ctrl+Home) shows more"
        if found:
            earlier = found.first(Static)
            earlier.display = hidden > 0
            earlier.update(text if hidden else "")

    def action_load_earlier(self) -> None:
        """Ctrl+Home: the next window of older turns, in every pane that has some."""
        loaded = [self.load_earlier(pane) for pane in range(len(self.pane_models()))]
        if not any(loaded):
            self.notify("This is the start of the conversation.")

    def load_earlier(self, pane: int = 0) -> bool:
        """Mount the next window of older turns above the first one shown."""
        hidden = self._hidden.get(pane, 0)
        if not hidden:
            return False
        messages = self.messages_of(pane)
        start = max(0, hidden - HISTORY_WINDOW)
        widgets = self._turn_widgets(self.conv.turns(pane)[start:hidden], pane)
        self._hidden[pane] = start
        first = next((c for c in messages.children if not c.has_class("earlier")), None)
        if widgets:
            messages.mount_all(widgets, before=first)
        self._update_earlier(pane)
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
        if s.schema is not None:
            bits.append("schema")
        if s.role is not None:
            bits.append(f"role {s.role}")
        bits += request_settings.settings_bits(s)
        self.query_one("#topbar", Static).update(self.topbar(bits))
        self.show_pane_settings()

    @property
    def runs(self) -> dict[int, LiveRun]:
        """The latest reply's run of each pane."""
        return {i: r.run for i, r in self.replies.items()}

    @property
    def streaming(self) -> bool:
        # Until each reply is finished here (its turn kept and saved), not only over on the
        # wire: a reply's last text is drawn before its figures and save (``PaneReply``).
        return any(not r.run.shown_final for r in self.replies.values())

    @private_override(Screen)
    def _screen_resized(self, size: Size) -> None:
        # Before the layout at the new size: what a taller window brings into sight is drawn
        # first (older replies of a long conversation are only sized, ``defer``).
        old, self._laid_out_at = self._laid_out_at, size  # (``self.size`` is the new one)
        if old is not None and old.height and old.width and self.is_attached:
            grown = size.height - old.height
            if grown > 0:
                for lst in self.query(MessageList):
                    lst.reveal_ahead(lst.scrollable_content_region.height + grown)
        super()._screen_resized(size)

    def on_screen_resume(self) -> None:
        self.query_one(PromptBox).focus()
        self.tapp.prompt_ready()

    # --- prompt --------------------------------------------------------------------------

    @on(PromptBox.Submitted)
    def _submitted(self, event: PromptBox.Submitted) -> None:
        t_submit = time.perf_counter_ns()
        from tui.session import commands, file_refs  # not at start-up (``_preload``)

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
            self.notify(self.BUSY, severity="warning")
            return
        if not self._has_models():
            return
        try:
            expanded = file_refs.expand(text)
        except file_refs.FileRefError as exc:
            self.notify(f"Not sent: {exc}", severity="warning", markup=False)
            return
        if expanded.files:
            names = ", ".join(f.name for f in expanded.files)
            self.notify(f"With {len(expanded.files)} file(s) in the prompt: {names}", timeout=4)
        typed, text = text, expanded.text
        # Every pane must take the images, or none is sent: the race stays fair.
        images = event.prompt.images.images
        for index, model in enumerate(self.pane_models()):
            history = self.conv.request_messages(index)
            if why := refused_before_sending(self.tapp.config, model or "", history, images):
                where = f" (pane {self.pane_label(index)})" if len(self.pane_models()) > 1 else ""
                self.notify(f"Not sent{where}: {why}", severity="warning", markup=False)
                return
        event.prompt.clear_prompt()
        self._history_pos = -1
        self.send(text, t_submit, event.prompt.take_images(), typed=typed)

    def _has_models(self) -> bool:
        if all(self.pane_models()):
            return True
        self.notify("No model yet: F2 picks one.", severity="warning")
        return False

    def run_command(self, cmd: commands.Command) -> None:
        """Apply what a slash command says: its settings, its notice, its effect."""
        from tui.session import commands

        try:
            out = commands.run(self.conv.settings, cmd, len(self.pane_models()))
        except commands.CommandError as exc:
            self.notify(str(exc), severity="warning")
            return
        if out.settings is not None:
            self.conv.settings = out.settings
            if self.conv.saved and self.tapp.store is not None:
                self.tapp.store.update_conversation(self.conv.id, settings=out.settings.to_dict())
            self._update_topbar()
            self._update_estimate()
        if out.notice:
            self.notify(out.notice)
        match out.effect:
            case commands.SwitchModel(query, pane):
                self.switch_model(query, pane)
            case commands.SetPaneTemperature(pane, temperature):
                self.set_pane_temperature(pane, temperature)
            case commands.SetPaneThinking(pane, thinking, budget):
                self.set_pane_thinking(pane, thinking, budget)
            case commands.NewConversation():
                self.new_conversation()
            case commands.ShowHelp():
                self.tapp.action_show_help()
            case commands.RunSuite(path, runs):
                self.tapp.open_suite(path, runs)
            case commands.UseRole(name):
                self.use_role(name)
            case commands.AttachImage(arg):
                prompt = self.query_one(PromptBox)
                message, ok = image_command(prompt.images, arg)
                prompt.show_images()
                self.notify(message, severity="information" if ok else "warning", markup=False)
            case None:
                pass
            case _:  # mypy: a new Effect needs its case here
                assert_never(out.effect)

    def use_role(self, name: str | None) -> None:
        """``/role NAME``: the role's settings over the conversation's (``/role off``: its name
        comes off; what it set stays, visible in the top bar, until changed)."""
        from tui.session import commands
        from tui.session.roles import RoleError, find_role

        try:
            role = None if name is None else find_role(self.tapp.config.roles, name)
            settings = commands.role_settings(self.conv.settings, role)
        except RoleError as exc:
            self.notify(str(exc), severity="warning", markup=False)
            return
        self.conv.settings = settings
        if self.conv.saved and self.tapp.store is not None:
            self.tapp.store.update_conversation(self.conv.id, settings=settings.to_dict())
        self._update_topbar()
        self._update_estimate()
        self.notify("Role off." if role is None else f"Role {role.name} on from the next prompt.")

    @on(TextArea.Changed, "#prompt")
    def _prompt_changed(self) -> None:
        self.tapp.preload_renderer()  # ready by the time the reply comes
        if self._estimate_timer is None:
            self._estimate_timer = self.set_timer(0.15, self._update_estimate_now)

    def _update_estimate_now(self) -> None:
        self._estimate_timer = None
        self._update_estimate()

    def _update_estimate(self) -> None:
        """Estimated tokens and cost of the next request before it is sent, and a context
        warning, for each pane's model."""
        # One row high (app.tcss): its text is redrawn, never laid out. Each update was a layout
        # of the whole screen, and one came in the first frames of every race (issue 21).
        info = self.query_one("#prompt-info", Static)
        prompt = self.query_one(PromptBox)
        if prompt.text.startswith("/"):
            info.update(self._completion_hint(prompt.text), layout=False)
            return
        full = prompt.full_text
        models = self.pane_models()
        panes: list[Content] = []
        too_long = False
        most = 0  # the panes' histories differ: the line says the largest request
        for index, model in enumerate(models):
            history = [*self.conv.request_messages(index), {"role": "user", "content": full}]
            tokens = estimate_prompt_tokens(history)
            most = max(most, tokens)
            if not model:
                info.update(f"≈{tokens:,} tok", layout=False)
                return
            parts, over = self._estimate_parts(model, tokens, full)
            too_long = too_long or over
            label = f"{PANE_LETTERS[index]}: " if len(models) > 1 else ""
            if parts:  # nothing known of this model's price or context: nothing to say
                panes.append(Content(label + " · ".join(parts)))
        line = Content(" · ").join(panes)
        if len(models) > 1:
            head = f"next request ≈{most:,} tok in"
            line = Content.assemble(head + " · ", line) if panes else Content(head)
        if too_long:
            line = Content.assemble(("⚠ exceeds the model's context window: ", "bold"), line)
        info.update(line, layout=False)

    def _estimate_parts(self, model: str, tokens: int, full: str) -> tuple[list[str], bool]:
        """What the next request costs on ``model`` before output, and whether it fits."""
        mi = model_info(model, self.tapp.config)
        one = len(self.pane_models()) == 1
        parts = [f"next request ≈{tokens:,} tok in"] if one else []
        if mi.price is not None:
            cost = mi.price.cost(tokens, 0)
            parts.append(f"{'≈' if cost else ''}{fmt.usd(cost)} before output")
        if mi.context is not None:
            parts.append(f"context {format_context(mi.context)} ({100 * tokens / mi.context:.0f}%)")
            if tokens > mi.context:
                return parts, True
        if one and full and estimate_tokens(full) > 2000:
            parts.insert(1, f"prompt ≈{estimate_tokens(full):,} tok")
        return parts, False

    def _model_matches(self, text: str) -> tuple[str, list[str]]:
        """For ``/model [PANE] PART``: the completed prefix, and catalog models matching PART."""
        from tui.session import commands

        _, _, arg = text.partition(" ")
        pane, query = commands.pane_and_rest(arg, len(self.pane_models()))
        prefix = "/model " if pane is None else f"/model {PANE_LETTERS[pane]} "
        found = [e.ref for e in self.tapp.catalog if query.lower() in e.ref.lower()]
        return prefix, found

    def _completion_hint(self, text: str) -> str:
        from tui.session import commands

        if " " not in text:
            matches = commands.completions(text)
            if not matches:
                return f"unknown command {text}"
            return "  ".join(f"{m} — {commands.COMMANDS[m].help}" for m in matches[:3]) + (
                "   (Tab completes)" if len(matches) == 1 else ""
            )
        name = text.partition(" ")[0]
        if name == "/model":
            found = self._model_matches(text)[1][:6]
            return "  ".join(found) + ("   (Tab completes)" if found else "   no match")
        spec = commands.COMMANDS.get(name)
        return spec.help if spec is not None else ""

    @on(PromptBox.CompletionRequested)
    def _complete(self, event: PromptBox.CompletionRequested) -> None:
        from tui.session import commands
        from tui.session.roles import complete_role

        text = event.prompt.text
        if " " not in text:
            matches = commands.completions(text)
            if matches:
                event.prompt.set_prompt(matches[0] + " ")
                event.prompt.move_cursor(event.prompt.document.end)
            return
        if not text.startswith("/"):
            self._complete_file(event.prompt)
            return
        if text.startswith("/role "):
            names = complete_role(self.tapp.config.roles, text.removeprefix("/role ").strip())
            if names:
                event.prompt.set_prompt(f"/role {names[0]}")
                event.prompt.move_cursor(event.prompt.document.end)
            return
        if text.partition(" ")[0] == "/image" and (completed := complete_image_command(text)):
            event.prompt.set_prompt(completed)
            event.prompt.move_cursor(event.prompt.document.end)
        if text.partition(" ")[0] == "/model":
            prefix, found = self._model_matches(text)
            if found:
                event.prompt.set_prompt(prefix + found[0])
                event.prompt.move_cursor(event.prompt.document.end)

    def _complete_file(self, prompt: PromptBox) -> None:
        """Tab on an ``@file`` word: the one match, or the matches' common start (and a list)."""
        from tui.session import file_refs

        word, start = prompt.at_word()
        found = file_refs.complete(word)
        if not found:
            self.notify(f"No file matches {word}", timeout=2, markup=False)
            return
        # Character by character on purpose: "@src/m" completes to "@src/mo" for mod/model.
        choice = found[0] if len(found) == 1 else os.path.commonprefix(found)  # noqa: RUF071
        if len(found) > 1:  # a toast: the estimate line is redrawn as the prompt changes
            more = f"  (+{len(found) - 8} more)" if len(found) > 8 else ""
            self.notify("  ".join(found[:8]) + more, timeout=4, markup=False)
        if len(choice) > len(word):
            prompt.replace(choice, start, prompt.cursor_location)

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
        pos = min(pos, len(prompts) - 1)
        self._history_pos = pos
        if pos == -1:
            event.prompt.set_prompt(self._draft)
        else:
            event.prompt.set_prompt(prompts[pos], recalled=True)
        event.prompt.move_cursor(event.prompt.document.end)

    def fill_prompt(self, text: str, send_now: bool = False) -> None:
        """Put ``text`` in the prompt (from the history search), or send it at once."""
        prompt = self.query_one(PromptBox)
        if send_now:
            if not self.streaming and all(self.pane_models()):
                self.send(text)
                return
            self.notify("Not sent: a reply is streaming or no model is set.")
        prompt.set_prompt(text)
        prompt.move_cursor(prompt.document.end)
        prompt.focus()

    # --- racing --------------------------------------------------------------------------

    def send(
        self,
        text: str,
        t_submit_ns: int | None = None,
        images: tuple[Image, ...] = (),
        typed: str | None = None,
    ) -> None:
        """Send ``text`` (with ``images``) as the next user turn to every pane; the requests
        leave together. ``typed``: the prompt as written, when its ``@file`` words made
        ``text`` longer (it names the conversation and is what Up recalls)."""
        t_submit = t_submit_ns or time.perf_counter_ns()
        panes = tuple(range(len(self.pane_models())))
        self.conv.add_user(text, self.tapp.store, panes=panes, images=images, typed=typed)
        self.tapp.remember_conversation(self.conv.id)
        self.tapp.history_added(text if typed is None else typed)
        for index in panes:
            self.messages_of(index).mount(UserMessage(text, images))
        self.race(t_submit)
        self._update_topbar()

    def race(self, t_submit: int) -> None:
        """Start every pane's reply to the conversation as it stands."""
        self.tapp.preload_renderer()  # a replay or retry types nothing
        self.race_id = uuid.uuid4().hex if self.RACE else None
        requests: list[ChatRequest] = []
        started: list[PaneReply] = []
        config = self.tapp.config
        for index, model in enumerate(self.pane_models()):
            assert model is not None
            request = ChatRequest(
                model=model,
                messages=self.conv.request_messages(index),
                params=self.pane_params(index),
            )
            price = model_info(model, config).price
            estimate = estimate_prompt_tokens(request.messages)
            run = LiveRun(model, t_submit, price, estimate, config.stall_s, pane=index)
            widget = AssistantMessage(self.shown(model, index), pane_label=self.pane_label(index))
            messages = self.messages_of(index)
            messages.mount(widget)
            messages.resume_follow()
            reply = PaneReply(self, index, run, widget, self.pane_settings(index), self.race_id)
            self.replies[index] = reply
            started.append(reply)
            requests.append(request)
        if self._frame_timer is not None:
            self._frame_timer.resume()
        self.run_worker(
            self._submit(started, requests, t_submit), group="race", exit_on_error=False
        )

    async def _submit(
        self, replies: list[PaneReply], requests: list[ChatRequest], t_submit: int
    ) -> None:
        try:
            handles = await self.tapp.engine.submit_many(requests, t_submit)
        except Exception as exc:  # the engine could not start: say so, keep the app
            for reply in replies:
                reply.fail_locally(f"the engine process could not start: {exc}")
            return
        for reply, handle in zip(replies, handles, strict=True):
            if reply.run.shown_final:  # cancelled (and given up on) before it was submitted
                self.tapp.engine.cancel(handle)
                continue
            reply.consume(handle)

    def reply_finished(self, reply: PaneReply) -> None:
        """A pane's reply ended: stop the frame clock when none is left."""
        race = self.conv.blind
        if not self.streaming and race is not None and race.holds_replies():
            for held in self.replies.values():  # a blind race shows every reply together
                held.show_held()
        if not self.streaming and self._frame_timer is not None:
            self._frame_timer.pause()
        self._update_estimate()
        self.race_changed()

    async def _tick(self) -> None:
        if not self.replies:
            return
        # Fewer frames while drawing keeps the UI busy, or text flies by faster than it is read.
        fast = any(
            r.widget.views_per_s >= FAST_VIEWS_PER_S
            for r in self.replies.values()
            if not r.run.done
        )
        if not self._pacer.frame(fast):
            return
        # What the engine sent while the last frame was drawn is read first, so this frame
        # shows it. The pipe is read, its frames parsed and each pane's batch fed only as the
        # loop turns: drawn at once, a quarter of the markers at 4 × 500 tok/s (their bytes in
        # the pipe before the tick) waited for the next frame, 50 ms more.
        for _ in range(CATCH_UP_TURNS):
            await asyncio.sleep(0)
        if not self.is_attached:
            return
        replies = list(self.replies.values())
        busy = self._pacer.load > STEP_BUSY  # steps of height follow the work, as frames do
        stepped = [reply.frame(busy) for reply in replies]  # every pane's new text in one frame
        if any(stepped):
            # A layout comes anyway: the other panes take their next step of height in it
            # too, when it is near, instead of a layout each in the frames that follow.
            for reply, took in zip(replies, stepped, strict=True):
                if not took:
                    reply.step_along()
        self._ticks += 1
        if self._ticks % FIGURES_EVERY:
            return  # figures change slower than text
        now = self.tapp.clock()
        for reply in list(self.replies.values()):
            try:
                reply.show_figures(now)
            except NoMatches:  # the pane went away (the screen is closing)
                continue
        self.race_changed()

    def metrics_now(self, pane: int) -> RunMetrics | None:
        """Final figures of a finished reply; running figures (cheap) while it streams, and
        until its last text is drawn: the final ones are a pass over every event (20-40 ms at
        8,000 tokens), and the figures of four replies over, computed by a frame's strip
        before their last frames, held the last tokens of a race at 4 × 2,000 tok/s."""
        reply = self.replies.get(pane)
        if reply is None:
            return None
        run = reply.run
        return run.final() if run.shown_final else run.partial_metrics(self.tapp.clock())

    # --- cancel, retry, replay, export ---------------------------------------------------

    def cancel_pane(self, pane: int) -> bool:
        """Cancel one pane's reply; True if it was streaming."""
        reply = self.replies.get(pane)
        return reply is not None and reply.cancel()

    def cancel_all(self) -> bool:
        """Esc: cancel every pane's stream at once; True if any was streaming."""
        return any([r.cancel() for r in list(self.replies.values())])

    def interrupt_replies(self, message: str) -> None:
        """The app is being stopped (SIGTERM, SIGHUP): end every reply as interrupted."""
        for reply in list(self.replies.values()):
            reply.interrupt(message)

    def retry(self) -> None:
        """Send the last prompt again (after an error, a cancel or just to compare)."""
        if self.streaming:
            self.notify(self.BUSY, severity="warning")
            return
        if not any(t.role == "user" for t in self.conv.turns(0)):
            self.notify("Nothing to retry yet.")
            return
        if not all(self.pane_models()):
            return
        for index in range(len(self.pane_models())):
            turns = self.conv.turns(index)
            while turns and turns[-1].role == "assistant":
                turns.pop()  # the retried reply stays on screen and in the store, not in history
        self.race(time.perf_counter_ns())

    def latest_answers(self) -> dict[int, str]:
        """Each pane's latest answer."""
        out: dict[int, str] = {}
        for index in range(len(self.pane_models())):
            turns = self.conv.turns(index)
            turn = next((t for t in reversed(turns) if t.role == "assistant"), None)
            if turn is not None:
                out[index] = turn.content
        return out

    def last_reply_text(self) -> str | None:
        """The focused pane's latest answer (pane A's when that pane has none)."""
        answers = self.latest_answers()
        return answers.get(self.focused_pane()) or answers.get(0)

    def replay_last(self, times: int = 1) -> None:
        """Run the last prompt again ``times`` times in a row, each on the same history, then
        show median / p95 TTFT, median decode rate, tokens and cost per model."""
        if self.streaming:
            self.notify("Still streaming: Esc cancels it first.", severity="warning")
            return
        if not any(t.role == "user" for t in self.conv.turns(0)):
            self.notify("Nothing to replay yet: send a prompt first.")
            return
        self.app.run_worker(self._replay(times), group="replay", exit_on_error=False)

    async def _replay(self, times: int) -> None:
        finished: list[tuple[str, RunMetrics]] = []
        for k in range(times):
            if not self.is_attached:
                return
            self.retry()
            runs = list(self.runs.values())
            if times > 1:
                self.notify(f"Replay {k + 1} of {times}…", timeout=2)
            while self.streaming:  # noqa: ASYNC110 - runs end in their own workers
                await asyncio.sleep(0.05)
            await asyncio.sleep(0)
            statuses = [r.final() for r in runs]
            race = self.conv.blind
            finished += [
                (self.shown(r.model, r.pane), blind.metrics(race, m))
                for r, m in zip(runs, statuses, strict=True)
            ]
            if any(m.status == "cancelled" for m in statuses):
                self.notify("Replay stopped: a run was cancelled.", severity="warning")
                break
        if times > 1 and finished:
            from tui.screens.replay_results import ReplayResults

            rows = [{"model": model, **m.to_json(), "status": m.status} for model, m in finished]
            self.app.push_screen(ReplayResults(summarise(rows), len(finished)))

    def export(self) -> None:
        """Ask for a format and write the conversation's export."""
        from tui.screens.export_dialog import ExportDialog

        store = self.tapp.store
        if not self.conv.saved or store is None:
            self.notify("Nothing to export yet (or history is off).")
            return
        conv_id = self.conv.id

        def chosen(fmt_name: str | None) -> None:
            if fmt_name is None:
                return
            from tui.session.export import ExportError, write_export

            store.flush()
            try:
                path = write_export(store, conv_id, fmt_name)
            except ExportError as exc:
                self.notify(str(exc), severity="error")
                return
            if self.app.is_web:  # tokenrace serve: the file is on the server; the browser gets it
                mime = {"md": "text/markdown", "json": "application/json", "html": "text/html"}
                self.app.deliver_binary(
                    path, save_filename=Path(path).name, mime_type=mime.get(fmt_name, "text/plain")
                )
                self.notify(f"Exported {Path(path).name}: your browser downloads it", timeout=8)
                return
            self.notify(f"Exported to {path}", timeout=8)

        self.app.push_screen(ExportDialog(), chosen)

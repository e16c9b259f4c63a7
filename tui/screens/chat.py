"""The chat screen: one model, a streamed conversation, live figures, saved as it goes."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import Footer, Static

from providers.inert import inert_label
from tui.messages import EngineNewsArrived
from tui.screens.race_screen import RaceScreen
from tui.session.catalog import resolve
from tui.session.conversation import Conversation, LiveRun, Turn
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.message_list import MessageList
from tui.widgets.prompt_box import PromptBox
from tui.widgets.status_bar import StatusBar


class ChatScreen(RaceScreen):
    """A conversation with one model at a time; the model can change between turns."""

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
        super().__init__(conversation or Conversation())
        self.model = model

    def compose(self) -> ComposeResult:
        yield Static("", id="topbar", markup=False)
        with MessageList(id="messages"):
            yield Static("", id="earlier", classes="earlier", markup=False)
        yield Static("↓ new text below — Ctrl+End follows the stream", id="new-below", markup=False)
        yield StatusBar(id="status")
        yield PromptBox(id="prompt")
        yield Static("", id="prompt-info", markup=False)
        yield Footer()

    def prepare(self) -> None:
        self.query_one("#new-below").display = False
        self.watch(self.query_one(MessageList), "new_below", self._show_new_below)
        self.query_one(StatusBar).show_idle(self.model or "choosing a model…")

    def _show_new_below(self, value: bool) -> None:
        self.query_one("#new-below").display = value

    # --- what a race of one pane says -------------------------------------------------------

    def pane_models(self) -> list[str | None]:
        return [self.model]

    def messages_of(self, pane: int) -> MessageList:
        return self.query_one("#messages", MessageList)

    def status_of(self, pane: int) -> StatusBar:
        return self.query_one("#status", StatusBar)

    def topbar(self, settings_bits: list[str]) -> Content:
        return Content.assemble(
            ("tokenrace", "bold"),
            " · ",
            inert_label(self.conv.title or "new conversation"),
            " · ",
            (inert_label(self.model or "no model"), "bold"),
            ("  " + " ".join(settings_bits)) if settings_bits else "",
        )

    def switch_model(self, query: str, pane: int | None) -> None:
        ref, why = resolve(query, self.tapp.catalog, self.tapp.config)
        if ref is None:
            self.notify(why, severity="warning")
            self.tapp.action_pick_model(query=query)
            return
        self.set_model(ref)
        self.notify(f"Model: {ref}. The conversation continues with it.")

    def new_conversation(self) -> None:
        self.tapp.action_new_chat()

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

    @on(EngineNewsArrived)
    def _engine_news(self, event: EngineNewsArrived) -> None:
        """The local model's server starting or ready: shown on the idle status bar."""
        model, _, news = event.text.partition(": ")
        if news and model.split(" ", 1)[0] == self.model and not self.streaming:
            self.query_one(StatusBar).show_idle(self.model, news)

    # --- the one reply -------------------------------------------------------------------

    @property
    def run(self) -> LiveRun | None:
        """The latest reply's run."""
        reply = self.replies.get(0)
        return reply.run if reply is not None else None

    @property
    def reply(self) -> AssistantMessage | None:
        """The latest reply's widget."""
        reply = self.replies.get(0)
        return reply.widget if reply is not None else None

    def cancel(self) -> bool:
        """Cancel the reply being streamed; True if there was one."""
        return self.cancel_all()

    def last_reply(self) -> Turn | None:
        return next((t for t in reversed(self.conv.turns(0)) if t.role == "assistant"), None)

    # --- scrolling -----------------------------------------------------------------------

    def action_follow(self) -> None:
        self.query_one(MessageList).resume_follow()

    def action_scroll_messages(self, direction: int) -> None:
        messages = self.query_one(MessageList)  # at once, as the race's panes (CompareScreen)
        if direction < 0:
            if messages.scroll_y <= 0 and self.load_earlier():
                return
            messages.scroll_page_up(animate=False)
        else:
            messages.scroll_page_down(animate=False)

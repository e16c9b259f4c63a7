"""Apps in fixed states for SVG snapshots and screenshots: no network, no clock drift.

Every figure on screen comes from hand-made events with fixed timestamps or from a stored run,
and the clock the status bar reads is frozen, so the same state renders the same SVG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from providers.config import Config, parse_config
from providers.events import (
    Event,
    Finished,
    ReasoningDelta,
    RequestSent,
    TextDelta,
    Usage,
)
from providers.metrics import compute_metrics
from providers.prices import Price
from tui.app import TokenraceApp
from tui.session.conversation import Conversation, LiveRun, Turn
from tui.session.state import UiState
from tui.session.store import Store

MS = 1_000_000
T0 = 5_000_000 * MS  # a fixed perf_counter origin

REPLY = """Here is a small **Python** helper that retries with backoff:

```python
import time

def retry(fn, attempts=3, base=0.5):
    for i in range(attempts):
        try:
            return fn()
        except OSError:
            time.sleep(base * 2 ** i)
    raise RuntimeError("gave up")
```

- Waits 0.5 s, then 1 s, then 2 s.
- Re-raises nothing: it **gives up** with a clear error.

| attempt | wait |
|---|---|
| 1 | 0.5 s |
| 2 | 1.0 s |
"""

PROMPT = "Write a retry helper with exponential backoff."


def snapshot_config() -> Config:
    return parse_config(
        {
            "endpoints": {"mock": {"base_url": "http://127.0.0.1:9/v1", "models": ["mock-fast"]}},
            "prices": {"mock/mock-fast": {"input": 0.15, "output": 0.60, "context": 128000}},
        }
    )


def reply_events(text: str = REPLY, reasoning: str = "") -> list[Event]:
    """A reply: t0, TTFT 412 ms, then one token per word every 12.5 ms (80 tok/s)."""
    events: list[Event] = [RequestSent(T0)]
    t = T0 + 412 * MS
    for word in _words(reasoning):
        events.append(ReasoningDelta(t, word))
        t += int(12.5 * MS)
    for word in _words(text):
        events.append(TextDelta(t, word))
        t += int(12.5 * MS)
    n = len(events) - 1
    events += [Usage(t, prompt=42, completion=n), Finished(t, "stop")]
    return events


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"\S+\s*|\s+", text)


class FrozenClock:
    """A clock that reads a fixed instant."""

    def __init__(self, t_ns: int) -> None:
        self.t_ns = t_ns

    def __call__(self) -> int:
        return self.t_ns


def stored_conversation(home: Path) -> tuple[Store, Conversation]:
    """A conversation saved in a store: one prompt, one reply with fixed metrics."""
    store = Store(home / "history.db")
    conv = Conversation(title="Retry helper")
    conv.add_user(PROMPT, store)
    events = reply_events()
    m = compute_metrics(events, t_submit_ns=T0 - 3 * MS, price=Price(0.15, 0.60))
    turn = Turn(id=2, role="assistant", content=REPLY, model="mock/mock-fast", metrics=m)
    conv.turns(0).append(turn)
    store.save_message(turn.id, conv.id, "assistant", REPLY, model="mock/mock-fast")
    store.flush()
    return store, conv


def chat_done_app(home: Path, theme: str = "tokenrace-dark") -> TokenraceApp:
    store, conv = stored_conversation(home)
    return TokenraceApp(
        snapshot_config(),
        store=store,
        state=UiState(theme=theme),
        models=["mock/mock-fast"],
        conversation=conv,
        start_engine=False,
        discover_models=False,
        save_state=False,
        probe_loopback=False,
        clock=FrozenClock(T0),
    )


def chat_midstream_app(home: Path, theme: str = "tokenrace-dark") -> tuple[TokenraceApp, Any]:
    """An app, and a ``run_before`` that puts a half-streamed reply on screen."""
    events = reply_events(reasoning="The user wants backoff; doubling waits is standard.")
    half = events[: len(events) * 3 // 5]
    clock = FrozenClock(half[-1].t_ns + 5 * MS)
    app = TokenraceApp(
        snapshot_config(),
        store=None,
        state=UiState(theme=theme),
        models=["mock/mock-fast"],
        start_engine=False,
        discover_models=False,
        save_state=False,
        probe_loopback=False,
        clock=clock,
    )

    async def run_before(pilot: Any) -> None:
        from tui.screens.chat import ChatScreen
        from tui.widgets.assistant_message import AssistantMessage
        from tui.widgets.message_list import MessageList
        from tui.widgets.status_bar import StatusBar
        from tui.widgets.user_message import UserMessage

        screen = app.screen
        assert isinstance(screen, ChatScreen)
        screen.conv.add_user(PROMPT, None)
        messages = screen.query_one(MessageList)
        await messages.mount(UserMessage(PROMPT))
        run = LiveRun("mock/mock-fast", T0 - 3 * MS, Price(0.15, 0.60), 42)
        widget = AssistantMessage("mock/mock-fast")
        await messages.mount(widget)
        delta = run.feed(half)
        widget.append_reasoning(delta.reasoning)
        widget.append_text(delta.text)
        widget.sync()  # what the screen's frame tick does
        screen.run, screen.reply = run, widget
        await pilot.pause(0.3)
        screen.query_one(StatusBar).show(run.live(clock()), run.spark_rates())
        widget.show_live("● streaming · 1.23 s")
        await pilot.pause(0.1)

    return app, run_before


def plain_app(
    home: Path, theme: str = "tokenrace-dark", config: Config | None = None, **kwargs: Any
) -> TokenraceApp:
    return TokenraceApp(
        config or snapshot_config(),
        store=None,
        state=UiState(theme=theme),
        start_engine=False,
        discover_models=False,
        save_state=False,
        probe_loopback=False,
        clock=FrozenClock(T0),
        **kwargs,
    )

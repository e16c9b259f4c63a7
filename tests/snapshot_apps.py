"""Apps in fixed states for SVG snapshots and screenshots: no network, no clock drift.

Every figure on screen comes from hand-made events with fixed timestamps or from a stored run,
and the clock the status bar reads is frozen, so the same state renders the same SVG.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
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
from providers.remote import EngineProcess, StreamHandle
from providers.request import ChatRequest
from tui.app import TokenraceApp
from tui.session.conversation import Conversation, LiveRun, Turn
from tui.session.state import UiState
from tui.session.store import Store, new_id

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


# Pane B's answer to PROMPT: the same helper with jitter, so the diff has lines on both sides.
REPLY_B = """Here is a small **Python** helper that retries with backoff and jitter:

```python
import random
import time

def retry(fn, attempts=3, base=0.5):
    for i in range(attempts):
        try:
            return fn()
        except OSError:
            time.sleep(base * 2 ** i * random.uniform(1, 1.25))
    raise RuntimeError("gave up")
```

- Waits about 0.5 s, then 1 s, then 2 s.
- **Jitter** spreads the retries of many clients apart.
"""

PROMPT_2 = "Now make it async."
REPLY_2 = """Swap `time.sleep` for `await asyncio.sleep` and make `retry` a coroutine:

```python
async def retry(fn, attempts=3, base=0.5):
    for i in range(attempts):
        try:
            return await fn()
        except OSError:
            await asyncio.sleep(base * 2 ** i)
    raise RuntimeError("gave up")
```
"""
REPLY_2_B = """The same loop, awaited:

```python
async def retry(fn, attempts=3, base=0.5):
    for i in range(attempts):
        try:
            return await fn()
        except OSError:
            await asyncio.sleep(base * 2 ** i * random.uniform(1, 1.25))
    raise RuntimeError("gave up")
```

Cancel it with `task.cancel()`: `CancelledError` is not an `OSError`, so it is not retried.
"""

FAST, LARGE = "mock/mock-fast", "mock/mock-large"


def snapshot_config() -> Config:
    return parse_config(
        {
            "endpoints": {
                "mock": {"base_url": "http://127.0.0.1:9/v1", "models": ["mock-fast", "mock-large"]}
            },
            "prices": {
                FAST: {"input": 0.15, "output": 0.60, "context": 128000},
                LARGE: {"input": 2.50, "output": 10.00, "context": 200000},
            },
        }
    )


def reply_events(
    text: str = REPLY,
    reasoning: str = "",
    *,
    ttft_ms: float = 412,
    tps: float = 80,
    prompt_tokens: int = 42,
    t0: int = T0,
) -> list[Event]:
    """A reply: sent at ``t0``, first token after ``ttft_ms``, then one token per word at
    ``tps`` (by default TTFT 412 ms, one token every 12.5 ms)."""
    events: list[Event] = [RequestSent(t0)]
    t = t0 + int(ttft_ms * MS)
    step = int(1000 / tps * MS)
    for word in _words(reasoning):
        events.append(ReasoningDelta(t, word))
        t += step
    for word in _words(text):
        events.append(TextDelta(t, word))
        t += step
    n = len(events) - 1
    events += [Usage(t, prompt=prompt_tokens, completion=n), Finished(t, "stop")]
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
    return plain_app(home, theme, store=store, models=[FAST], conversation=conv)


def chat_midstream_app(home: Path, theme: str = "tokenrace-dark") -> tuple[TokenraceApp, Any]:
    """An app, and a ``run_before`` that puts a half-streamed reply on screen."""
    events = reply_events(reasoning="The user wants backoff; doubling waits is standard.")
    half = events[: len(events) * 3 // 5]
    clock = FrozenClock(half[-1].t_ns + 5 * MS)
    app = plain_app(home, theme, models=[FAST], clock=clock)

    async def run_before(pilot: Any) -> None:
        from tui.screens.chat import ChatScreen
        from tui.screens.pane_reply import PaneReply
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
        screen.replies[0] = PaneReply(screen, 0, run, widget, {})
        await pilot.pause(0.3)
        screen.query_one(StatusBar).show(run.live(clock()), run.spark_rates())
        widget.show_live("● streaming · 1.23 s")
        await pilot.pause(0.1)

    return app, run_before


def plain_app(
    home: Path, theme: str = "tokenrace-dark", config: Config | None = None, **kwargs: Any
) -> TokenraceApp:
    """An app with no engine process, no discovery, no saved state and a frozen clock;
    ``kwargs`` go to TokenraceApp (store, models, conversation, engine, clock…)."""
    kwargs.setdefault("store", None)
    kwargs.setdefault("clock", FrozenClock(T0))
    return TokenraceApp(
        config or snapshot_config(),
        state=UiState(theme=theme),
        start_engine=False,
        discover_models=False,
        save_state=False,
        probe_loopback=False,
        **kwargs,
    )


Script = Callable[[ChatRequest], list[Event]]


class ScriptedEngine(EngineProcess):
    """The engine, minus its process: each request gets hand-made events from ``script``.

    The events are shifted to start at the request's submit time, so figures never depend on
    the real clock. ``hold[model] = n`` stops that model's stream after ``n`` events, as if the
    rest had not arrived yet (a mid-stream state).
    """

    def __init__(self, config: Config, script: Script) -> None:
        super().__init__(config)
        self.script = script
        self.hold: dict[str, int] = {}

    async def start(self) -> None:
        return None

    async def submit(
        self,
        request: ChatRequest,
        t_submit_ns: int | None = None,
        gate: tuple[str, int] | None = None,
    ) -> StreamHandle:
        events = self.script(request)
        shift = (t_submit_ns or T0) - events[0].t_ns
        events = [dataclasses.replace(e, t_ns=e.t_ns + shift) for e in events]
        handle = StreamHandle(next(self._ids))
        n = self.hold.get(request.model, len(events))
        handle._push(events[:n])
        if n < len(events):
            self._streams[handle.sid] = handle  # still streaming: ``active`` counts it
        else:
            handle._finish()
        return handle

    async def submit_many(
        self, requests: list[ChatRequest], t_submit_ns: int | None = None
    ) -> list[StreamHandle]:
        return [await self.submit(r, t_submit_ns) for r in requests]

    def cancel(self, handle: StreamHandle) -> None:
        return None

    def cancel_all(self) -> None:
        return None

    def warm(self, model_ref: str) -> None:
        return None

    async def close(self) -> None:
        for handle in self._streams.values():
            handle._finish()  # the held streams end with the app
        self._streams.clear()


def race_script(request: ChatRequest) -> list[Event]:
    """Pane A (mock-fast) answers sooner and faster than pane B (mock-large)."""
    last = request.messages[-1]["content"]
    first = last == PROMPT
    if request.model == FAST:
        return reply_events(REPLY if first else REPLY_2, ttft_ms=412, tps=80)
    return reply_events(
        REPLY_B if first else REPLY_2_B,
        "Backoff with jitter is the usual answer; keep the code short.",
        ttft_ms=860 if first else 790,
        tps=45 if first else 48,
    )


T1 = T0 + 60_000 * MS  # the second prompt, a minute later


def compare_app(home: Path, theme: str = "tokenrace-dark") -> tuple[TokenraceApp, Any]:
    """Two panes and a ``run_before(pilot, mid, races)``: one race run to its end and stored,
    then (``races=2``) a second one run to its end, or (``mid``) stopped with pane A finished
    and pane B mid-answer."""
    config = snapshot_config()
    engine = ScriptedEngine(config, race_script)
    clock = FrozenClock(T1)
    store = Store(home / "history.db")
    app = plain_app(
        home, theme, config, engine=engine, store=store, models=[FAST, LARGE], clock=clock
    )

    async def run_before(pilot: Any, mid: bool = False, races: int = 2) -> None:
        from tui.screens.compare import CompareScreen
        from tui.screens.race_screen import FIGURES_EVERY

        screen = app.screen
        assert isinstance(screen, CompareScreen)

        def over() -> bool:
            return all(r.shown_final for r in screen.runs.values())

        screen.send(PROMPT, T0)
        await _until(pilot, lambda: bool(screen.runs) and over())
        if races == 1:
            await pilot.pause(0.1)
            return
        if mid:
            b = race_script(ChatRequest(model=LARGE, messages=({"content": PROMPT_2},)))
            engine.hold[LARGE] = len(b) * 2 // 5
            clock.t_ns = T1 + b[engine.hold[LARGE] - 1].t_ns - T0 + 5 * MS
        screen.send(PROMPT_2, T1)
        if mid:
            await _until(pilot, lambda: screen.runs[0].shown_final and screen.runs[1].text_len > 0)
            # Frames after B's last event: its text is drawn, its figures and the strip read
            # the frozen clock (every FIGURES_EVERY frames).
            ticks = screen._ticks
            await _until(pilot, lambda: screen._ticks >= ticks + 2 * FIGURES_EVERY)
        else:
            await _until(pilot, over)
        await pilot.pause(0.1)

    return app, run_before


async def _until(pilot: Any, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError("the snapshot state was not reached")


# --- stored history: conversations (F4) and past prompts (Ctrl+R) ---------------------------

WALL = 1_795_000_000.0  # a fixed wall-clock instant (2026-11-18 UTC) for "12 min ago" and dates


def frozen_wall_clock() -> Any:
    """A stand-in for the ``time`` module of a screen that shows ages: a fixed now, UTC dates."""
    import time
    from types import SimpleNamespace

    return SimpleNamespace(time=lambda: WALL, strftime=time.strftime, localtime=time.gmtime)


PAST_CONVERSATIONS = [
    # (title, mode, exchanges, seconds before WALL)
    ("Regex for ISO 8601 dates", "chat", 1, 750.0),
    ("SQL or an ORM for a small service?", "compare", 2, 3.5 * 3600),
    ("Explain the GIL", "chat", 3, 26 * 3600.0),
    ("Haiku about caching", "chat", 1, 9 * 86400.0),
]

PAST_PROMPTS = [
    "how do I parse TOML in python",
    "Match 2024-05-01 but not 2024-13-01",
    "SQL or an ORM for a small service?",
    "explain the GIL",
    "python: read a file line by line, lazily",
    "Write a haiku about caching",
    "What does `python -X importtime` show?",
]


def history_app(home: Path, theme: str = "tokenrace-dark") -> TokenraceApp:
    """The chat after a reply, over a store that holds earlier conversations and prompts, all
    stamped at fixed instants before ``WALL``."""
    store, conv = stored_conversation(home)
    ids = [conv.id]
    for title, mode, exchanges, _age in PAST_CONVERSATIONS:
        past = Conversation(title=title, mode=mode)
        past.ensure_saved(store)
        panes = (0, 1) if mode == "compare" else (0,)
        for n in range(exchanges):
            for pane in panes:
                store.save_message(new_id(), past.id, "user", f"{title} ({n})", pane=pane)
                store.save_message(new_id(), past.id, "assistant", "…", model=FAST, pane=pane)
        ids.append(past.id)
    ages = [600.0] + [age for *_, age in PAST_CONVERSATIONS]

    def stamp(c: Any) -> None:
        for conv_id, age in zip(ids, ages, strict=True):
            c.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (WALL - age, conv_id))
        c.execute("DELETE FROM prompt_history")
        for i, text in enumerate([PROMPT, *PAST_PROMPTS]):
            c.execute(
                "INSERT INTO prompt_history(id, conversation_id, text, created_at) "
                "VALUES (?, NULL, ?, ?)",
                (i + 1, text, WALL - 60 * (i + 1)),
            )

    store.submit(stamp)
    store.flush()
    return plain_app(home, theme, store=store, models=[FAST], conversation=conv)


# --- a replay suite (Alt+S) ---------------------------------------------------------------

SUITE = [
    {"prompt": "List three prime numbers as a JSON array", "json_mode": True, "expect": "json"},
    {"prompt": "Summarise the CAP theorem in one sentence", "system": "Be terse."},
    {"prompt": "Name a stable sorting algorithm."},
]


def suite_script() -> Script:
    """Replies for SUITE: mock-large wraps its JSON in prose (not valid JSON); each model's
    TTFT grows by 30 ms with every request, so p50 and p95 differ."""
    sent: dict[str, int] = {}

    def script(request: ChatRequest) -> list[Event]:
        n = sent[request.model] = sent.get(request.model, 0) + 1
        prompt = str(request.messages[-1]["content"])
        if "JSON" in prompt:
            text = "[2, 3, 5]" if request.model == FAST else "Here they are: [2, 3, 5]"
        elif "CAP" in prompt:
            text = "A partitioned system must choose consistency or availability."
        else:
            text = "Merge sort is stable: equal keys keep their order."
        if request.model == FAST:
            return reply_events(text, ttft_ms=300 + 30 * n, tps=90, prompt_tokens=20)
        return reply_events(text, ttft_ms=700 + 30 * n, tps=40, prompt_tokens=20)

    return script


def suite_app(home: Path, theme: str = "tokenrace-dark") -> tuple[TokenraceApp, Path]:
    """Two models on the compare screen and SUITE written to ``home/suite.jsonl``."""
    import json

    path = home / "suite.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in SUITE), "utf-8")
    config = snapshot_config()
    app = plain_app(
        home, theme, config, engine=ScriptedEngine(config, suite_script()), models=[FAST, LARGE]
    )
    return app, path

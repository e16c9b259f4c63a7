"""Helpers for Pilot tests: an app wired to the mock server, and waiting for conditions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen

from providers.config import Config, parse_config
from tests.support.mock_server import MockServerProcess
from tui.app import TokenraceApp
from tui.session.conversation import Conversation
from tui.session.state import UiState
from tui.session.store import Store
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.prompt_box import PromptBox

S = TypeVar("S", bound=Screen[Any])


def mock_config(server: MockServerProcess, **extra: Any) -> Config:
    """Presets plus an endpoint ``mock`` at the mock server."""
    data: dict[str, Any] = {
        "endpoints": {"mock": {"base_url": server.base_url, "models": ["mock-fast", "mock-slow"]}}
    }
    for key, value in extra.items():
        data[key] = value
    return parse_config(data)


def make_app(
    config: Config,
    home: Path,
    *,
    models: list[str] | None = None,
    conversation: Conversation | None = None,
    store: Store | None = None,
    state: UiState | None = None,
    **kwargs: Any,
) -> TokenraceApp:
    """An app with a store in ``home`` and no background model discovery."""
    if store is None:
        store = Store(home / "history.db")
    kwargs.setdefault("discover_models", False)
    kwargs.setdefault("probe_loopback", False)
    return TokenraceApp(
        config,
        store=store,
        state=state or UiState(),
        models=models,
        conversation=conversation,
        **kwargs,
    )


async def wait_until(
    pilot: Pilot[Any],
    predicate: Callable[[], object],
    timeout: float = 10.0,  # noqa: ASYNC109
    what: str = "condition",
) -> None:
    """Let the app run until ``predicate()`` is true; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


async def wait_for_screen(
    pilot: Pilot[Any],
    kind: type[S],
    timeout: float = 10.0,  # noqa: ASYNC109
) -> S:
    """Wait until the current screen is a ``kind`` whose widgets are composed and mounted.

    ``app.screen`` is the new screen as soon as it is pushed or switched to, before its
    ``compose`` has run: querying it then raises NoMatches on a busy machine.
    """
    app = pilot.app
    await wait_until(
        pilot,
        lambda: isinstance(app.screen, kind) and app.screen.is_mounted,
        timeout,
        f"{kind.__name__} on screen",
    )
    screen = app.screen
    assert isinstance(screen, kind)
    return screen


def screen_of(app: App[Any], kind: type[S]) -> S:
    """The current screen, which must be a ``kind``."""
    screen = app.screen
    assert isinstance(screen, kind), f"{type(screen).__name__} on screen, not {kind.__name__}"
    return screen


def scenario(mock: MockServerProcess, **spec: Any) -> str:
    """Register a scenario under a fresh name; returns ``mock/<name>``."""
    name = f"s-{uuid.uuid4().hex[:8]}"
    mock.add_scenario(name, spec)
    return f"mock/{name}"


async def send(pilot: Pilot[Any], text: str) -> None:
    """Type ``text`` into the current screen's prompt and press Enter."""
    prompt = pilot.app.screen.query_one(PromptBox)
    prompt.focus()
    prompt.set_prompt(text)
    await pilot.press("enter")


def replies(app: Any) -> list[AssistantMessage]:
    """Every reply on the current screen, in order."""
    return list(app.screen.query(AssistantMessage))


def replies_over(app: App[Any]) -> bool:
    """Every pane's latest reply on the current chat or compare screen has ended and shows its
    final figures."""
    from tui.screens.race_screen import RaceScreen

    s = app.screen
    return (
        isinstance(s, RaceScreen)
        and bool(s.runs)
        and not s.streaming
        and all(r.shown_final for r in s.runs.values())
    )


def reply_done(widget: AssistantMessage) -> bool:
    """Whether a reply's widget shows it ended (any status but streaming)."""
    return widget.status != "streaming"


def pane_replies(app: App[Any], index: int) -> list[AssistantMessage]:
    """The replies in compare pane ``index`` of the current screen."""
    from tui.screens.compare import CompareScreen

    s = app.screen
    assert isinstance(s, CompareScreen)
    return list(s.pane(index).query(AssistantMessage))


def chat_requests(mock: MockServerProcess, model: str | None = None) -> list[dict[str, Any]]:
    """The chat-completion requests the mock server received (for ``model``, when given)."""
    name = model.split("/", 1)[1] if model else None
    return [
        r
        for r in mock.log()
        if r["path"].endswith("/chat/completions") and (name is None or r["model"] == name)
    ]


def contiguous_in(rows: list[str], lines: list[str]) -> bool:
    """Whether ``rows`` appear in ``lines`` as one unbroken run (rows seen on screen, against
    every row of a full render)."""
    n = len(rows)
    return any(lines[i : i + n] == rows for i in range(len(lines) - n + 1))

"""Helpers for Pilot tests: an app wired to the mock server, and waiting for conditions."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from providers.config import Config, parse_config
from tests.support.mock_server import MockServerProcess
from tui.app import TokenraceApp
from tui.session.conversation import Conversation
from tui.session.state import UiState
from tui.session.store import Store


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

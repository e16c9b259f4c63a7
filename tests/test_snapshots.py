"""SVG snapshots of the main states, in two themes and under NO_COLOR, with a frozen clock.

Update after an intended change with ``pytest tests/test_snapshots.py --snapshot-update`` and
look at the SVGs before committing them (pytest writes snapshot_report.html on failure).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from providers.config import parse_config
from tests.snapshot_apps import chat_done_app, chat_midstream_app, plain_app, snapshot_config
from tui.screens.chat import ChatScreen
from tui.screens.welcome import WelcomeScreen

SIZE = (100, 34)
VARIANTS = ["tokenrace-dark", "tokenrace-light", "no-color"]


@pytest.fixture
def variant(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    # Paths on screen must not depend on the test's temporary directory.
    monkeypatch.setenv("TOKENRACE_CONFIG", "/home/user/.config/tokenrace/config.toml")
    if name == "no-color":
        monkeypatch.setenv("NO_COLOR", "1")
        return "tokenrace-dark"
    return name


async def _settle(pilot: Any) -> None:
    await pilot.pause(0.3)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_welcome(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app = plain_app(isolated_home, variant, config=parse_config({}))

    async def run_before(pilot: Any) -> None:
        for _ in range(40):
            if isinstance(app.screen, WelcomeScreen):
                break
            await pilot.pause(0.05)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_chat_after_a_reply(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app = chat_done_app(isolated_home, variant)
    assert snap_compare(app, terminal_size=SIZE, run_before=_settle)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_chat_mid_stream(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app, run_before = chat_midstream_app(isolated_home, variant)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_help(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app = plain_app(isolated_home, variant, models=["mock/mock-fast"])
    assert snap_compare(app, terminal_size=(100, 50), press=["f1"], run_before=_settle)


@pytest.mark.parametrize("variant", VARIANTS[:2], indirect=True)
def test_model_picker(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app = plain_app(isolated_home, variant, models=["mock/mock-fast"])
    assert snap_compare(app, terminal_size=(110, 30), press=["f2", *"gpt-4o"], run_before=_settle)


@pytest.mark.parametrize("variant", VARIANTS[:2], indirect=True)
def test_error_panel(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    from tui.session.conversation import Conversation, Turn

    conv = Conversation(title="Key check")
    conv.turns(0).append(Turn(id=1, role="user", content="hello"))
    conv.turns(0).append(
        Turn(
            id=2,
            role="assistant",
            content="",
            model="mock/mock-fast",
            status="error",
            error="mock rejected the API key (HTTP 401 invalid_api_key: Incorrect API key "
            "provided); set MOCK_KEY or run `tokenrace keys set mock`",
        )
    )
    app = plain_app(isolated_home, variant, models=["mock/mock-fast"], conversation=conv)

    async def run_before(pilot: Any) -> None:
        assert isinstance(app.screen, ChatScreen)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_config_prices_the_mock_model() -> None:
    from providers.prices import model_info

    info = model_info("mock/mock-fast", snapshot_config())
    assert info.price is not None and info.context == 128000

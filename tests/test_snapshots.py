"""SVG snapshots of the main states, in two themes and under NO_COLOR, with a frozen clock.

Update after an intended change with ``pytest tests/test_snapshots.py --snapshot-update`` and
look at the SVGs before committing them (pytest writes snapshot_report.html on failure).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from providers.config import parse_config
from tests.snapshot_apps import (
    chat_done_app,
    chat_midstream_app,
    compare_app,
    frozen_wall_clock,
    history_app,
    plain_app,
    snapshot_config,
    suite_app,
)
from tests.support.tui import wait_for_screen, wait_until
from tui.screens.chat import ChatScreen
from tui.screens.compare import CompareScreen
from tui.screens.conversations import ConversationsScreen
from tui.screens.diff_view import DiffView
from tui.screens.help_screen import HelpScreen
from tui.screens.history_search import HistorySearch
from tui.screens.model_picker import ModelPicker
from tui.screens.pane_chooser import PaneChooser
from tui.screens.suite import SuiteScreen
from tui.screens.summary import SummaryScreen
from tui.screens.welcome import WelcomeScreen

SIZE = (100, 34)
COMPARE_SIZE = (150, 40)
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


def snapshot(snap_compare: Any, app: Any, size: tuple[int, int], run_before: Any = None) -> bool:
    """``snap_compare`` after ``run_before``, with every cursor shown steadily: a blinking
    one is caught on or off depending on when the screenshot falls."""

    async def steady(pilot: Any) -> None:
        # The app's first screen is its default screen (``TokenraceApp.get_default_screen``),
        # which Textual mounts after it hands the pilot over: its state is set once mounted.
        await wait_until(pilot, lambda: pilot.app.screen.is_mounted, what="the first screen")
        if run_before is not None:
            await run_before(pilot)
        for screen in pilot.app.screen_stack:
            for widget in screen.query("TextArea, Input"):
                widget.cursor_blink = False
        await pilot.pause(0.05)

    return bool(snap_compare(app, terminal_size=size, run_before=steady))


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_welcome(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app = plain_app(isolated_home, variant, config=parse_config({}))

    async def run_before(pilot: Any) -> None:
        await wait_for_screen(pilot, WelcomeScreen)
        await pilot.pause(0.1)

    assert snapshot(snap_compare, app, SIZE, run_before)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_chat_after_a_reply(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app = chat_done_app(isolated_home, variant)
    assert snapshot(snap_compare, app, SIZE, _settle)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_chat_mid_stream(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app, run_before = chat_midstream_app(isolated_home, variant)
    assert snapshot(snap_compare, app, SIZE, run_before)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_help(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app = plain_app(isolated_home, variant, models=["mock/mock-fast"])

    async def run_before(pilot: Any) -> None:
        await pilot.press("f1")
        await wait_for_screen(pilot, HelpScreen)
        await pilot.pause(0.2)

    assert snapshot(snap_compare, app, (100, 50), run_before)


@pytest.mark.parametrize("variant", VARIANTS[:2], indirect=True)
def test_model_picker(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app = plain_app(isolated_home, variant, models=["mock/mock-fast"])

    async def run_before(pilot: Any) -> None:
        await pilot.press("f2")
        await wait_for_screen(pilot, ModelPicker)
        await pilot.press(*"gpt-4o")
        await pilot.pause(0.3)

    assert snapshot(snap_compare, app, (110, 30), run_before)


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

    assert snapshot(snap_compare, app, SIZE, run_before)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_compare_mid_stream(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app, race = compare_app(isolated_home, variant)

    async def run_before(pilot: Any) -> None:
        await race(pilot, mid=True)

    assert snapshot(snap_compare, app, COMPARE_SIZE, run_before)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_compare_done(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app, race = compare_app(isolated_home, variant)
    assert snapshot(snap_compare, app, COMPARE_SIZE, race)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_diff(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app, race = compare_app(isolated_home, variant)

    async def run_before(pilot: Any) -> None:
        await race(pilot, races=1)
        await pilot.press("f8")
        await wait_for_screen(pilot, DiffView)

    assert snapshot(snap_compare, app, COMPARE_SIZE, run_before)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_summary(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app, race = compare_app(isolated_home, variant)

    async def run_before(pilot: Any) -> None:
        await race(pilot)
        await pilot.press("f9")  # a verdict, so the wins column has one
        await wait_for_screen(pilot, PaneChooser)
        await pilot.press("a")
        await wait_for_screen(pilot, CompareScreen)
        app.clear_notifications()  # its toast would leave on a timer of real time
        await pilot.press("f6")
        await wait_for_screen(pilot, SummaryScreen)
        await pilot.pause(0.2)

    assert snapshot(snap_compare, app, COMPARE_SIZE, run_before)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_conversations(
    snap_compare: Any, variant: str, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tui.screens.conversations

    monkeypatch.setattr(tui.screens.conversations, "time", frozen_wall_clock())
    app = history_app(isolated_home, variant)

    async def run_before(pilot: Any) -> None:
        await pilot.press("f4")
        await wait_for_screen(pilot, ConversationsScreen)
        await pilot.pause(0.2)

    # The list is 110 columns wide: narrower, each row wraps.
    assert snapshot(snap_compare, app, (120, 34), run_before)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_history_search(snap_compare: Any, variant: str, isolated_home: Path) -> None:
    app = history_app(isolated_home, variant)

    async def run_before(pilot: Any) -> None:
        await pilot.press("ctrl+r")
        await wait_for_screen(pilot, HistorySearch)
        await pilot.press(*"python")
        await pilot.pause(0.2)

    assert snapshot(snap_compare, app, SIZE, run_before)


@pytest.mark.parametrize("variant", VARIANTS, indirect=True)
def test_suite(
    snap_compare: Any, variant: str, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(isolated_home))  # the path on screen is ~/suite.jsonl
    app, _path = suite_app(isolated_home, variant)

    async def run_before(pilot: Any) -> None:
        app.open_suite("~/suite.jsonl", 2)
        screen = await wait_for_screen(pilot, SuiteScreen)
        await wait_until(pilot, lambda: not screen.running and bool(screen.results))
        await pilot.pause(0.2)

    assert snapshot(snap_compare, app, COMPARE_SIZE, run_before)


def test_snapshot_config_prices_the_mock_model() -> None:
    from providers.prices import model_info

    info = model_info("mock/mock-fast", snapshot_config())
    assert info.price is not None and info.context == 128000

"""The Pilot helpers in tests/support/tui.py do what the tests rely on."""

from __future__ import annotations

from pathlib import Path

from providers.config import parse_config
from tests.support.tui import make_app, wait_for_screen
from tui.screens.welcome import WelcomeScreen


async def test_wait_for_screen_returns_once_the_screen_is_composed(isolated_home: Path) -> None:
    # ``app.screen`` is the new screen from the moment it is switched to, before its compose
    # has run: a wait on ``isinstance`` alone returned here and the query raised NoMatches.
    app = make_app(parse_config({}), isolated_home, models=["mock/x"], start_engine=False)
    async with app.run_test(size=(100, 40)) as pilot:
        app.switch_screen(WelcomeScreen(app.config))
        screen = await wait_for_screen(pilot, WelcomeScreen)
        assert screen is app.screen
        assert "OPENAI_API_KEY" in str(screen.query_one("#welcome").render())

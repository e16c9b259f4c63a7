"""Where our widgets meet Textual's own machinery: selection and copy, theme registration, the
app's theme watcher. Each test failed before its fix (issue 16's three bugs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult

from providers import paths
from providers.config import parse_config
from tests.support.tui import make_app, wait_until
from tui.app import TokenraceApp
from tui.session.state import UiState
from tui.widgets.streaming_markdown import StreamingMarkdown

REPLY = "# Title\n\nThe first paragraph has **bold** words.\n\n```python\nprint('hi')\n```\n"


class _Host(App[None]):
    def compose(self) -> ComposeResult:
        yield StreamingMarkdown(REPLY, driven=True)


async def test_selecting_and_copying_reply_text_gives_the_text_shown() -> None:
    # StreamingMarkdown._render(renderable, width) shadowed Widget._render(), which Textual
    # calls to read a selection: copying selected reply text crashed with a TypeError.
    app = _Host()
    async with app.run_test(size=(60, 20)) as pilot:
        view = app.query_one(StreamingMarkdown)
        view.finish()
        await pilot.pause()
        await pilot.mouse_down(view, offset=(0, 0))
        await pilot.hover(view, offset=(30, 4))
        await pilot.mouse_up(view, offset=(30, 4))
        await pilot.pause()
        selected = app.screen.get_selected_text()
        assert selected is not None and "Title" in selected and "first paragraph" in selected
        view.text_select_all()
        app.screen.action_copy_text()
        assert "print('hi')" in app.clipboard
        assert "**" not in app.clipboard  # the text as drawn, not the markdown source


async def test_a_user_theme_with_a_bad_colour_is_reported_not_registered(
    isolated_home: Path,
) -> None:
    themes = paths.config_path().parent / "themes"
    themes.mkdir(parents=True)
    (themes / "broken.toml").write_text('primary = "not-a-colour"\n', "utf-8")
    (themes / "badvar.toml").write_text(
        'primary = "#ff0000"\nvariables = { pane-a = "nope" }\n', "utf-8"
    )
    (themes / "fine.toml").write_text('primary = "#ff0000"\n', "utf-8")
    app = make_app(parse_config({}), isolated_home, start_engine=False)
    async with app.run_test(size=(100, 30)) as pilot:
        assert "fine" in app.available_themes
        assert "broken" not in app.available_themes
        assert "badvar" not in app.available_themes
        await wait_until(
            pilot,
            lambda: any("not-a-colour" in str(n.message) for n in app._notifications),
            what="the broken theme reported",
        )
        messages = " ".join(str(n.message) for n in app._notifications)
        assert "broken.toml" in messages and "primary" in messages
        assert "variables.pane-a" in messages
        app.theme = "fine"  # the good one still works
        await pilot.pause()
        assert app.theme == "fine"


def test_the_theme_watcher_does_nothing_before_the_app_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ``if not self.is_mounted`` tested a bound method (always true), so the guard never fired.
    app = TokenraceApp(
        parse_config({}),
        state=UiState(),
        start_engine=False,
        discover_models=False,
        probe_loopback=False,
        save_state=False,
    )

    def no_screens(_: Any) -> list[Any]:
        raise AssertionError("the watcher walked the screens of an app that is not running")

    monkeypatch.setattr(TokenraceApp, "screen_stack", property(no_screens))
    app.watch_theme("textual-dark")

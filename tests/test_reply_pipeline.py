"""One reply pipeline (issue 16): slash commands as one table of pure handlers, and the
behaviours chat and compare now share from one screen base (history window, Tab completion,
the estimate line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.config import parse_config
from tests.support.tui import make_app, wait_for_screen, wait_until
from tui.screens.compare import CompareScreen
from tui.screens.race_screen import HISTORY_WINDOW
from tui.session import commands
from tui.session.conversation import Conversation, Settings, Turn
from tui.session.store import new_id
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.prompt_box import PromptBox
from tui.widgets.user_message import UserMessage


def _run(text: str, settings: Settings | None = None, panes: int = 1) -> commands.Outcome:
    cmd = commands.parse(text)
    assert cmd is not None
    return commands.run(settings or Settings(), cmd, panes)


def test_commands_are_pure_functions_of_settings_and_the_command() -> None:
    before = Settings(system="be brief")
    out = _run("/temperature 0.3", before)
    assert out.settings == Settings(system="be brief", temperature=0.3)
    assert before.temperature is None  # the settings given are never changed in place
    assert out.effect is None and "0.3" in out.notice
    # In compare, a pane letter makes it that pane's own; without one, every pane's own goes.
    assert _run("/temperature B 1", panes=2).effect == commands.SetPaneTemperature(1, 1.0)
    assert _run("/temperature B 1", panes=2).settings is None
    assert _run("/temperature 1", panes=2).effect == commands.SetPaneTemperature(None, 1.0)
    # "/model B x": pane B in compare; in chat the whole argument is the model's name.
    assert _run("/model B mock/x", panes=2).effect == commands.SwitchModel("mock/x", 1)
    assert _run("/model B mock/x").effect == commands.SwitchModel("B mock/x", None)
    with pytest.raises(commands.CommandError, match="PANE NAME"):
        _run("/model mock/x", panes=2)
    assert _run("/suite s.jsonl 3").effect == commands.RunSuite("s.jsonl", 3)
    assert _run("/json on").settings == Settings(json_mode=True)
    with pytest.raises(commands.CommandError):
        _run("/max-tokens lots")


def test_a_new_command_is_one_entry_that_parsing_and_completion_see() -> None:
    @commands.command("/zz-shout", "say it louder: /zz-shout TEXT")
    def shout(settings: Settings, arg: str, panes: int) -> commands.Outcome:
        return commands.Outcome(notice=arg.upper())

    try:
        assert commands.completions("/zz") == ["/zz-shout"]
        assert _run("/zz-shout hi").notice == "HI"
        assert commands.COMMANDS["/zz-shout"].help.startswith("say it louder")
    finally:
        del commands.COMMANDS["/zz-shout"]
    with pytest.raises(commands.CommandError):
        commands.parse("/zz-shout hi")


def _long_race(pairs: int) -> Conversation:
    conv = Conversation(mode="compare")
    for pane, model in enumerate(("mock/a", "mock/b")):
        for k in range(pairs):
            conv.turns(pane).append(Turn(new_id(), "user", f"question {k}"))
            conv.turns(pane).append(Turn(new_id(), "assistant", f"answer {k}", model=model))
    return conv


def _drawn(screen: CompareScreen, pane: int) -> int:
    p = screen.pane(pane)
    return len(p.query(UserMessage)) + len(p.query(AssistantMessage))


async def test_compare_draws_a_window_of_turns_and_pageup_at_the_top_loads_more(
    isolated_home: Path,
) -> None:
    pairs = HISTORY_WINDOW // 2 + 5  # 40 turns a pane: 30 drawn, 10 on demand
    app = make_app(
        parse_config({}), isolated_home, conversation=_long_race(pairs), start_engine=False
    )
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await wait_for_screen(pilot, CompareScreen)
        await pilot.pause(0.2)
        assert [_drawn(screen, i) for i in (0, 1)] == [HISTORY_WINDOW] * 2
        earlier = screen.pane(0).messages.query_one(".earlier")
        assert earlier.display and "10 earlier messages" in str(earlier.render())
        for pane in screen.panes:
            pane.messages.scroll_home(animate=False)
        await pilot.pause(0.1)
        await pilot.press("pageup")  # synced panes: both load their older turns
        await wait_until(pilot, lambda: [_drawn(screen, i) for i in (0, 1)] == [2 * pairs] * 2)
        assert earlier.styles.display == "none"  # (not .display: mypy keeps it narrowed)
        first = screen.pane(1).query(UserMessage).first()
        assert str(first.render()).strip().endswith("question 0")


async def test_compare_completes_commands_and_estimates_the_next_request(
    isolated_home: Path,
) -> None:
    app = make_app(parse_config({}), isolated_home, conversation=_long_race(1), start_engine=False)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await wait_for_screen(pilot, CompareScreen)
        info = screen.query_one("#prompt-info")
        await wait_until(pilot, lambda: "next request ≈" in str(info.render()), what="estimate")
        prompt = screen.query_one(PromptBox)
        prompt.focus()
        await pilot.press("/", "t", "e")
        await wait_until(pilot, lambda: "/temperature" in str(info.render()), what="hint")
        await pilot.press("tab")
        assert prompt.text == "/temperature "


async def test_engine_news_reaches_the_idle_chat_as_a_message(isolated_home: Path) -> None:
    from tui.screens.chat import ChatScreen
    from tui.widgets.status_bar import StatusBar

    app = make_app(parse_config({}), isolated_home, models=["mock/a"], start_engine=False)
    async with app.run_test(size=(100, 30)) as pilot:
        chat = await wait_for_screen(pilot, ChatScreen)
        app._engine_status("mock/b: starting its server", "info")  # another model: not shown
        app._engine_status("mock/a (local): starting its server", "info")
        bar = chat.query_one(StatusBar)
        await wait_until(pilot, lambda: bar.extra == "starting its server", what="the news")

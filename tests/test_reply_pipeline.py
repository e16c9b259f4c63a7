"""One reply pipeline (issue 16): slash commands as one table of pure handlers, and the
behaviours chat and compare now share from one screen base (history window, Tab completion,
the estimate line)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from providers.config import parse_config
from tests.support.mock_server import MockServerProcess
from tests.support.tui import (
    make_app,
    mock_config,
    replies_over,
    send,
    wait_for_screen,
    wait_until,
)
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


async def test_a_replys_bookkeeping_waits_for_the_other_panes_last_text(
    isolated_home: Path, mock_server: MockServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The panes of a race end together. A reply's bookkeeping (its figures, the save, the
    log: up to 20 ms, and the first one computes the compare strip from every pane) ran
    while other panes' last text waited for its frame, and held it off the screen. Now no
    bookkeeping runs while another pane's last text waits."""
    from tui.screens.pane_reply import PaneReply

    mock_server.add_scenario("together", {"ttft_ms": 20, "tps": 400, "n_tokens": 60})
    during: list[set[int]] = []  # at each bookkeeping: the other panes still waiting
    real_finish = PaneReply.finish

    def finish(self: PaneReply) -> None:
        during.append(self.screen.last_text_waiting - {self.pane})
        real_finish(self)

    monkeypatch.setattr(PaneReply, "finish", finish)
    # Hold each frame a little, so that the panes' last batches all land while the first
    # pane's last text waits: the case in which the order matters.
    real_frame = PaneReply._frame_drawn
    overlapped: list[bool] = []

    async def frame_drawn(self: PaneReply) -> None:
        await asyncio.sleep(0.05)
        overlapped.append(bool(self.screen.last_text_waiting - {self.pane}))
        await real_frame(self)

    monkeypatch.setattr(PaneReply, "_frame_drawn", frame_drawn)
    app = make_app(mock_config(mock_server), isolated_home, models=["mock/together"] * 4)
    async with app.run_test(size=(160, 30)) as pilot:
        await send(pilot, "go")
        await wait_until(pilot, lambda: replies_over(app), timeout=20, what="the race")
    assert len(during) == 4
    assert any(overlapped)  # some pane's frame came while another's last text waited ...
    assert during == [set()] * 4  # ... and no bookkeeping ran then


async def test_the_last_text_is_drawn_before_the_figures_and_the_save(
    isolated_home: Path, mock_server: MockServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the end of a fast race, each reply's bookkeeping (its figures from every event, the
    save, the log) ran before its last text reached the screen: the last text now goes out
    in a frame of its own, and ``streaming`` holds until the bookkeeping is done."""
    from textual.screen import Screen

    from tui.screens.pane_reply import PaneReply

    frames = 0
    real_refresh = Screen._compositor_refresh

    def counted(self: Screen[Any]) -> None:
        nonlocal frames
        frames += 1
        real_refresh(self)

    seen: list[tuple[bool, int, bool]] = []
    real_finish = PaneReply.finish

    def finish(self: PaneReply) -> None:
        text_shown = self.widget.body.source.endswith(self.run.text[-20:])
        seen.append((text_shown and not self.widget.body._open, frames, self.screen.streaming))
        real_finish(self)

    monkeypatch.setattr(Screen, "_compositor_refresh", counted)
    monkeypatch.setattr(PaneReply, "finish", finish)
    texts: list[int] = []
    real_finish_text = AssistantMessage.finish_text

    def finish_text(self: AssistantMessage) -> None:
        texts.append(frames)
        real_finish_text(self)

    monkeypatch.setattr(AssistantMessage, "finish_text", finish_text)
    app = make_app(mock_config(mock_server), isolated_home, models=["mock/mock-fast"])
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "hello")
        await wait_until(pilot, lambda: replies_over(app), timeout=20, what="the reply")
        assert not app.screen.streaming  # type: ignore[attr-defined]
    assert len(texts) == 1 and len(seen) == 1
    drawn, frames_at_finish, streaming = seen[0]
    assert drawn  # the whole text closed and drawn before the figures
    assert frames_at_finish > texts[0]  # ... and a frame went out in between
    assert streaming  # a new prompt waits for the save

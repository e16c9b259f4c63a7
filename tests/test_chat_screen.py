"""The chat screen through Pilot, against the mock server and the real engine process."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from textual import events

from providers.config import parse_config
from tests.support.mock_server import MockServerProcess
from tests.support.tui import (
    chat_requests,
    make_app,
    mock_config,
    replies,
    reply_done,
    scenario,
    screen_of,
    send,
    wait_for_screen,
    wait_until,
)
from tui.actions import ACTIONS
from tui.screens.chat import ChatScreen
from tui.screens.help_screen import HelpScreen
from tui.screens.model_picker import ModelPicker
from tui.screens.welcome import WelcomeScreen
from tui.session.state import UiState
from tui.widgets.assistant_message import AssistantMessage, ReasoningBlock
from tui.widgets.error_panel import ErrorPanel
from tui.widgets.message_list import MessageList
from tui.widgets.prompt_box import PromptBox
from tui.widgets.user_message import UserMessage

MARKDOWN = """# Plan

Some **bold** text and `code`.

- one
- two

```python
def f(x):
    return x + 1
```

| a | b |
|---|---|
| 1 | 2 |

Done.
"""


def follows(messages: MessageList) -> bool:
    """Whether the list follows the stream now."""
    # A call, not the attribute: mypy keeps an asserted attribute narrowed across the awaits
    # (key presses) that change it.
    return messages.follow


async def test_welcome_screen_when_nothing_is_configured(isolated_home: Path) -> None:
    app = make_app(parse_config({}), isolated_home, start_engine=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for_screen(pilot, WelcomeScreen)
        text = str(app.screen.query_one("#welcome").render())
        for env in ("OPENAI_API_KEY", "DEEPSEEK_API_KEY", "OPENROUTER_API_KEY", "GROQ_API_KEY"):
            assert env in text
        assert "tokenrace keys set" in text and "tokenrace endpoints add" in text


async def test_default_model_is_a_local_server_that_answers(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    config = parse_config({"endpoints": {"mylab": {"base_url": mock_server.base_url}}})
    app = make_app(config, isolated_home, probe_loopback=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, ChatScreen) and app.screen.model is not None,
            what="a default model",
        )
        model = screen_of(app, ChatScreen).model
        assert model is not None and model.startswith("mylab/")


async def test_streamed_reply_equals_the_scenario_text(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    model = scenario(mock_server, text=MARKDOWN, ttft_ms=20, tps=400)
    app = make_app(mock_config(mock_server), isolated_home, models=[model])
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "Show me markdown")
        await wait_until(pilot, lambda: replies(app) and reply_done(replies(app)[0]), what="reply")
        reply = replies(app)[0]
        assert reply.status == "complete"
        assert reply.body.source == MARKDOWN
        assert reply.model == model
        assert "TTFT" in str(reply.metrics_line.render())
        assert [str(u.text) for u in app.screen.query(UserMessage)] == ["Show me markdown"]
        # Saved as it went: the store holds what was shown, with the run's figures.
        assert app.store is not None
        app.store.flush()
        conv_id = screen_of(app, ChatScreen).conv.id
        rows = app.store.messages(conv_id)
        assert [(r["role"], r["content"]) for r in rows] == [
            ("user", "Show me markdown"),
            ("assistant", MARKDOWN),
        ]
        run = app.store.run_for_message(rows[1]["id"])
        assert run is not None and run["status"] == "complete"
        m = screen_of(app, ChatScreen).conv.turns(0)[-1].metrics
        assert m is not None and run["ttft_ms"] == pytest.approx(m.ttft_ms)
        assert run["output_tokens"] == m.output_tokens


async def test_reasoning_block(isolated_home: Path, mock_server: MockServerProcess) -> None:
    model = scenario(
        mock_server,
        reasoning="Let me think about this carefully.",
        text="The answer is 4.",
        ttft_ms=10,
        tps=200,
    )
    app = make_app(mock_config(mock_server), isolated_home, models=[model])
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "2+2?")
        await wait_until(pilot, lambda: replies(app) and reply_done(replies(app)[0]), what="reply")
        reply = replies(app)[0]
        block = reply.query_one(ReasoningBlock)
        assert block.body.source == "Let me think about this carefully."
        assert reply.body.source == "The answer is 4."
        assert block.collapsed  # folded once the answer started
        await pilot.press("ctrl+o")
        assert not block.collapsed


async def test_follow_and_scrolled_up_modes(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    model = scenario(mock_server, n_tokens=600, ttft_ms=10, tps=150)
    app = make_app(mock_config(mock_server), isolated_home, models=[model])
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, "long please")
        messages = app.screen.query_one(MessageList)
        await wait_until(pilot, lambda: messages.max_scroll_y > 10, what="overflow")
        assert messages.follow
        await pilot.pause(0.3)
        assert messages.scroll_y >= messages.max_scroll_y - 1  # following the stream
        await pilot.press("pageup")
        await pilot.pause(0.1)
        assert not follows(messages)
        held = messages.scroll_y
        await wait_until(pilot, lambda: messages.new_below, what="new-text indicator")
        assert app.screen.query_one("#new-below").display
        assert messages.scroll_y == held  # the view stays where the user put it
        await pilot.press("ctrl+end")
        await pilot.pause(0.2)
        assert follows(messages) and not messages.new_below
        screen_of(app, ChatScreen).cancel()


async def test_cancel_keeps_partial_text(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    model = scenario(mock_server, n_tokens=400, ttft_ms=10, tps=50)
    app = make_app(mock_config(mock_server), isolated_home, models=[model])
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "go slowly")
        await wait_until(
            pilot, lambda: replies(app) and len(replies(app)[0].body.source) > 20, what="some text"
        )
        await pilot.press("escape")
        await wait_until(pilot, lambda: reply_done(replies(app)[0]), timeout=3, what="cancel")
        reply = replies(app)[0]
        assert reply.status == "cancelled"
        assert reply.body.source and "cancelled" in str(reply.metrics_line.render())
        assert screen_of(app, ChatScreen).conv.turns(0)[-1].status == "cancelled"
        assert app.store is not None and app.store.flush()
        rows = app.store.messages(screen_of(app, ChatScreen).conv.id)
        assert rows[-1]["status"] == "cancelled" and rows[-1]["content"] == reply.body.source


async def test_ctrl_c_cancels_a_stream_before_it_quits(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    model = scenario(mock_server, n_tokens=400, ttft_ms=10, tps=50)
    app = make_app(mock_config(mock_server), isolated_home, models=[model])
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "go")
        await wait_until(pilot, lambda: replies(app) and replies(app)[0].body.source)
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: reply_done(replies(app)[0]), timeout=3)
        assert replies(app)[0].status == "cancelled"
        assert app.is_running


async def test_error_panel_and_retry(isolated_home: Path, mock_server: MockServerProcess) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    mock_server.add_scenario(
        name,
        {
            "status": 401,
            "error_body": {
                "error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}
            },
        },
    )
    app = make_app(mock_config(mock_server), isolated_home, models=[f"mock/{name}"])
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "hello")
        await wait_until(pilot, lambda: app.screen.query(ErrorPanel), what="error panel")
        panel = app.screen.query_one(ErrorPanel)
        assert panel.kind == "auth" and "Incorrect API key provided" in panel.message
        assert "mock rejected the API key" in panel.message
        assert app.is_running
        mock_server.add_scenario(name, {"text": "Now it works.", "ttft_ms": 5})
        await pilot.press("f5")
        await wait_until(pilot, lambda: len(replies(app)) == 2 and reply_done(replies(app)[1]))
        assert replies(app)[1].body.source == "Now it works."
        reqs = chat_requests(mock_server, f"mock/{name}")
        # The retry carries the prompt once, without the failed reply.
        assert [m["content"] for m in reqs[-1]["body"]["messages"]] == ["hello"]


async def test_switching_model_mid_conversation_keeps_history(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    first = scenario(mock_server, text="First answer.", ttft_ms=5)
    second = scenario(mock_server, text="Second answer.", ttft_ms=5)
    app = make_app(mock_config(mock_server), isolated_home, models=[first])
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "question one")
        await wait_until(pilot, lambda: replies(app) and reply_done(replies(app)[0]))
        await send(pilot, f"/model {second}")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, ChatScreen) and app.screen.model == second,
            what="model switch",
        )
        await send(pilot, "question two")
        await wait_until(pilot, lambda: len(replies(app)) == 2 and reply_done(replies(app)[1]))
        assert [r.model for r in replies(app)] == [first, second]
        (req,) = chat_requests(mock_server, second)
        assert [(m["role"], m["content"]) for m in req["body"]["messages"]] == [
            ("user", "question one"),
            ("assistant", "First answer."),
            ("user", "question two"),
        ]
        assert app.state.last_model == second


async def test_model_picker(isolated_home: Path, mock_server: MockServerProcess) -> None:
    app = make_app(
        mock_config(mock_server), isolated_home, models=["mock/mock-fast"], start_engine=False
    )
    async with app.run_test(size=(110, 30)) as pilot:
        await pilot.press("f2")
        await wait_for_screen(pilot, ModelPicker)
        await pilot.press(*"mockslow")
        await pilot.pause(0.1)
        await pilot.press("enter")
        await wait_for_screen(pilot, ChatScreen)
        assert screen_of(app, ChatScreen).model == "mock/mock-slow"


async def test_picker_asks_the_endpoints_again_when_opened_later(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint that was down at the first discovery shows its models in a picker opened
    after it came up (the picker fills in while open)."""
    import socket

    import tui.app
    from providers.config import load_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (isolated_home / "config.toml").write_text(
        f'[endpoints.late]\nbase_url = "http://127.0.0.1:{port}/v1"\nmodels = ["first"]\n'
    )
    monkeypatch.setattr(tui.app, "PICKER_REDISCOVER_S", 0.0)
    app = make_app(
        load_config(),
        isolated_home,
        models=["late/first"],
        start_engine=False,
        discover_models=True,
    )

    def listed() -> bool:
        return isinstance(app.screen, ModelPicker) and any(
            e.ref == "late/mock-slow" for e in app.screen.entries
        )

    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("f2")
        await wait_until(pilot, lambda: app._discovered_at is not None, 30, "first discovery")
        assert not listed()  # nothing was listening
        await pilot.press("escape")
        with MockServerProcess(extra_args=["--port", str(port)]):
            await pilot.press("f2")
            await wait_until(pilot, listed, 30, "the late endpoint's models in the picker")


async def test_the_renderer_is_built_once_the_engine_is_up_before_any_key(
    isolated_home: Path, mock_server: MockServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The markdown renderer's imports (a thread: ``preload_renderer``) start once the engine
    is up, not at the first key of a prompt: a prompt sent at once (recalled, pasted, typed
    by a script) no longer waits for them before its replies' first frame."""
    import threading

    import tui.app

    started: list[str] = []
    real = tui.app._preload

    def preload() -> None:
        started.append(threading.current_thread().name)
        real()

    monkeypatch.setattr(tui.app, "_preload", preload)
    app = make_app(mock_config(mock_server), isolated_home, models=["mock/mock-fast"])
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: bool(started), 10, "the renderer's thread")
        assert started == ["tokenrace-preload"]
        assert app.engine.pid  # (after the engine said it was ready)
        assert not app.screen.query_one(PromptBox).text  # no key was typed


async def test_background_discovery_waits_for_the_replies_to_end(
    isolated_home: Path, mock_server: MockServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first model discovery (``tokenrace models``, 2.3-2.5 s of CPU here) is due while a
    reply streams: it starts once the reply has ended, not in the middle of it."""
    import time

    import tui.app
    from tui.session.catalog import ModelEntry

    calls: list[tuple[float, int]] = []

    async def discover(config: object) -> tuple[list[ModelEntry], str]:
        calls.append((time.monotonic(), app.engine.active))
        return [], ""

    monkeypatch.setattr(tui.app, "DISCOVERY_DELAY_S", 3600.0)  # called below, mid-reply
    monkeypatch.setattr(tui.app, "discover", discover)
    name = f"dw-{uuid.uuid4().hex[:8]}"
    mock_server.add_scenario(name, {"n_tokens": 600, "ttft_ms": 5, "tps": 200})
    app = make_app(
        mock_config(mock_server), isolated_home, models=[f"mock/{name}"], discover_models=True
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "stream for a while")
        screen = screen_of(app, ChatScreen)
        await wait_until(pilot, lambda: app.engine.active > 0, 10, "the reply streaming")
        app._discover_when_quiet()  # what the start-up timer calls when it is due
        await pilot.pause(0.3)
        assert not calls and app._discovery_waits
        assert screen.run is not None and not screen.run.done
        await wait_until(pilot, lambda: screen.run is not None and screen.run.done, 20)
        ended = time.monotonic()
        await wait_until(pilot, lambda: bool(calls), 5, "the discovery after the reply")
        assert len(calls) == 1
        started, streams = calls[0]
        assert streams == 0 and started >= ended - 0.05


async def test_picker_rows_show_price_and_context(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    app = make_app(
        mock_config(mock_server), isolated_home, models=["mock/mock-fast"], start_engine=False
    )
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("f2")
        await wait_for_screen(pilot, ModelPicker)
        await pilot.press(*"gpt-4o-mini")
        await pilot.pause(0.1)
        from textual.widgets import OptionList

        options = app.screen.query_one(OptionList)
        first = str(options.get_option_at_index(0).prompt)
        assert "openai/gpt-4o-mini" in first and "$0.15 / $0.6" in first and "128k" in first


async def test_slash_commands_change_the_next_request(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    model = scenario(mock_server, text="ok", ttft_ms=5)
    app = make_app(mock_config(mock_server), isolated_home, models=[model])
    async with app.run_test(size=(100, 30)) as pilot:
        for cmd in ("/system Be terse.", "/temperature 0.3", "/max-tokens 64", "/json on"):
            await send(pilot, cmd)
            await pilot.pause(0.05)
        await send(pilot, "/temperature hot")  # a bad value: a warning, nothing changes
        await send(pilot, "/nosuch")
        await pilot.pause(0.05)
        assert screen_of(app, ChatScreen).conv.settings.temperature == 0.3
        await send(pilot, "Reply in JSON")
        await wait_until(pilot, lambda: replies(app) and reply_done(replies(app)[0]))
        (req,) = chat_requests(mock_server, model)
        body = req["body"]
        assert body["messages"][0] == {"role": "system", "content": "Be terse."}
        assert body["temperature"] == 0.3 and body["max_tokens"] == 64
        assert body["response_format"] == {"type": "json_object"}
        old = screen_of(app, ChatScreen).conv.id
        await send(pilot, "/clear")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, ChatScreen) and app.screen.conv.id != old,
            what="/clear",
        )
        assert not app.screen.query(AssistantMessage)


async def test_slash_command_completion(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    app = make_app(
        mock_config(mock_server), isolated_home, models=["mock/mock-fast"], start_engine=False
    )
    async with app.run_test(size=(100, 30)) as pilot:
        prompt = app.screen.query_one(PromptBox)
        prompt.focus()
        await pilot.press("/", "t", "e")
        await pilot.pause(0.3)
        assert "/temperature" in str(app.screen.query_one("#prompt-info").render())
        await pilot.press("tab")
        assert prompt.text == "/temperature "


async def test_a_1mb_paste_stays_collapsed_and_is_sent_whole(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    model = scenario(mock_server, text="got it", ttft_ms=5)
    big = ("lorem ipsum dolor sit amet " * 40 + "\n") * 960  # ≈1 MB, 960 lines
    app = make_app(mock_config(mock_server), isolated_home, models=[model])
    async with app.run_test(size=(100, 30)) as pilot:
        prompt = app.screen.query_one(PromptBox)
        prompt.focus()
        await prompt._on_paste(events.Paste(big))
        await pilot.pause()
        assert prompt.text.startswith("[paste #1: 1.0 MB, 961 lines]")
        assert len(prompt.text) < 100
        info = app.screen.query_one("#prompt-info")
        # The estimate waits for typing to pause, then reads the whole megabyte: a loaded
        # machine takes longer than a fixed pause (failed once at a load average of 12).
        await wait_until(pilot, lambda: "prompt ≈" in str(info.render()), what="the estimate")
        assert "next request ≈" in str(info.render())
        await pilot.press("enter")
        await wait_until(pilot, lambda: replies(app) and reply_done(replies(app)[0]))
        (req,) = chat_requests(mock_server, model)
        assert req["body"]["messages"][-1]["content"] == big
        shown = str(app.screen.query_one(UserMessage).render())
        assert "collapsed" in shown and len(shown) < 5000


async def test_context_overflow_warning(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    config = mock_config(mock_server, prices={"mock/tiny": {"context": 100}})
    app = make_app(config, isolated_home, models=["mock/tiny"], start_engine=False)
    async with app.run_test(size=(100, 30)) as pilot:
        prompt = app.screen.query_one(PromptBox)
        prompt.set_prompt("word " * 400)
        await pilot.pause(0.4)
        assert "exceeds the model's context window" in str(
            app.screen.query_one("#prompt-info").render()
        )


async def test_theme_change_redraws_replies_without_the_app_holding_them(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    """Views learn of a theme change from the app walking the screens. A watcher on the
    app's ``theme`` per view stays in the app's list after the view is removed (Textual
    prunes it only when the theme next changes), holding every reply's lines: the soak grew
    40 MB a hundred replies that way."""
    from tui.widgets.streaming_markdown import StreamingMarkdown

    app = make_app(
        mock_config(mock_server), isolated_home, models=["mock/mock-fast"], start_engine=False
    )
    async with app.run_test(size=(100, 30)) as pilot:
        view = StreamingMarkdown("```python\nx = 1\n```\n", finished=True)
        await app.screen.mount(view)
        await pilot.pause(0.1)
        watchers = getattr(app, "__watchers", {}).get("theme", [])
        assert not any(isinstance(node, StreamingMarkdown) for node, _ in watchers)
        before = view.full_renders
        app.theme = "tokenrace-light" if app.theme != "tokenrace-light" else "tokenrace-dark"
        await pilot.pause(0.1)
        assert view.full_renders == before + 1


async def test_theme_switch_is_remembered(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    app = make_app(
        mock_config(mock_server),
        isolated_home,
        models=["mock/mock-fast"],
        start_engine=False,
        save_state=True,
    )
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.theme == "tokenrace-dark"
        app.theme = "tokenrace-light"
        await pilot.pause(0.1)
    assert UiState.load().theme == "tokenrace-light"
    app2 = make_app(
        mock_config(mock_server),
        isolated_home,
        models=["mock/mock-fast"],
        start_engine=False,
        state=UiState.load(),
    )
    async with app2.run_test(size=(100, 30)):
        assert app2.theme == "tokenrace-light"


async def test_every_action_is_in_help_and_in_the_palette(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    app = make_app(
        mock_config(mock_server), isolated_home, models=["mock/mock-fast"], start_engine=False
    )
    async with app.run_test(size=(110, 60)) as pilot:
        await pilot.press("f1")
        await wait_for_screen(pilot, HelpScreen)
        from textual.widgets import Static

        text = "\n".join(str(s.render()) for s in app.screen.query(Static))
        palette = [c.title for c in app.get_system_commands(app.screen)]
        for a in ACTIONS:
            assert a.description in text, a.id
            assert a.id in text
            if a.id not in ("quit",):
                assert a.description in palette or a.id in ("theme",), a.id
        await pilot.press("escape")
        assert isinstance(app.screen, ChatScreen)


async def test_keys_are_remappable_from_config(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    config = mock_config(mock_server, keys={"pick_model": "f8"})
    app = make_app(config, isolated_home, models=["mock/mock-fast"], start_engine=False)
    async with app.run_test(size=(110, 30)) as pilot:
        await pilot.press("f2")  # the default key no longer opens it
        await pilot.pause(0.1)
        assert isinstance(app.screen, ChatScreen)
        await pilot.press("f8")
        await wait_for_screen(pilot, ModelPicker)


async def test_prompt_history_up_down(isolated_home: Path, mock_server: MockServerProcess) -> None:
    model = scenario(mock_server, text="ok", ttft_ms=2)
    app = make_app(mock_config(mock_server), isolated_home, models=[model])
    async with app.run_test(size=(100, 30)) as pilot:
        for text in ("first prompt", "second prompt"):
            await send(pilot, text)
            await wait_until(pilot, lambda: replies(app) and reply_done(replies(app)[-1]))
        prompt = app.screen.query_one(PromptBox)
        await pilot.press(*"draft")
        await pilot.press("ctrl+a")  # text is not empty: Up moves within it, no recall
        prompt.clear_prompt()
        await pilot.press("up")
        assert prompt.text == "second prompt"
        await pilot.press("up")
        assert prompt.text == "first prompt"
        await pilot.press("down")
        assert prompt.text == "second prompt"
        await pilot.press("down")
        assert prompt.text == ""


def test_request_json_roundtrip() -> None:
    assert json.loads(json.dumps({"a": 1})) == {"a": 1}

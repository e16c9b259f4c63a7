"""Config edits are picked up while the app runs (#14 item 7): F5 on the welcome page, the
palette, a picker opening; a broken edit is reported with file:line and the old config stays."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from providers.config import load_config
from tests.support.mock_server import MockServerProcess
from tests.support.tui import make_app, screen_of, wait_until
from tui.screens.chat import ChatScreen
from tui.screens.model_picker import ModelPicker
from tui.screens.welcome import WelcomeScreen
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.prompt_box import PromptBox


def _notes(app: Any) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def _send(pilot: Any, text: str) -> None:
    prompt = pilot.app.screen.query_one(PromptBox)
    prompt.focus()
    prompt.set_prompt(text)
    await pilot.press("enter")


def _model(mock: MockServerProcess) -> str:
    name = f"reload-{uuid.uuid4().hex[:6]}"
    mock.add_scenario(name, {"text": "Hello from the new endpoint.", "ttft_ms": 5, "tps": 200})
    return name


async def test_f5_on_the_welcome_page_reads_the_edited_config(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    path = isolated_home / "config.toml"
    path.write_text("# nothing yet\n")
    app = make_app(load_config(path), isolated_home, load_config=lambda: load_config(path))
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        name = _model(mock_server)
        endpoint = f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\n'
        path.write_text(f'default_model = "mock/{name}"\n{endpoint}')
        await pilot.press("f5")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen), what="chat")
        assert screen_of(app, ChatScreen).model == f"mock/{name}"
        await _send(pilot, "hi")
        await wait_until(
            pilot,
            lambda: any(w.status == "complete" for w in app.screen.query(AssistantMessage)),
            timeout=20,
            what="reply",
        )
        last = screen_of(app, ChatScreen).last_reply()
        assert last is not None and last.content == "Hello from the new endpoint."


async def test_an_endpoint_added_while_running_works_after_the_picker_opens(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    path = isolated_home / "config.toml"
    path.write_text(f'[endpoints.first]\nbase_url = "{mock_server.base_url}"\n')
    first = _model(mock_server)
    app = make_app(
        load_config(path),
        isolated_home,
        models=[f"first/{first}"],
        load_config=lambda: load_config(path),
    )
    async with app.run_test(size=(100, 40)) as pilot:
        await _send(pilot, "/temperature 0.5")  # state the reload must keep
        name = _model(mock_server)
        path.write_text(
            path.read_text()
            + f'\n[endpoints.mock]\nbase_url = "{mock_server.base_url}"\nmodels = ["{name}"]\n'
        )
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelPicker), what="picker")
        assert any(e.ref == f"mock/{name}" for e in app.catalog)
        assert any("added mock" in n for n in _notes(app)), _notes(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen), what="chat")
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        chat.set_model(f"mock/{name}")
        await _send(pilot, "hi")
        await wait_until(
            pilot,
            lambda: any(w.status != "streaming" for w in chat.query(AssistantMessage)),
            timeout=20,
            what="reply",
        )
        turn = chat.last_reply()
        assert turn is not None and turn.status == "complete", turn
        assert turn.content == "Hello from the new endpoint."
        assert chat.conv.settings.temperature == 0.5


async def test_a_broken_edit_says_where_and_keeps_the_old_config(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    path = isolated_home / "config.toml"
    path.write_text(f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\n')
    name = _model(mock_server)
    app = make_app(
        load_config(path),
        isolated_home,
        models=[f"mock/{name}"],
        load_config=lambda: load_config(path),
    )
    async with app.run_test(size=(100, 40)) as pilot:
        before = app.config
        path.write_text(path.read_text() + "\n[endpoints.other\nbase_url = 1\n")
        app.action_reload_config()
        await pilot.pause()
        assert app.config is before
        (note,) = [n for n in _notes(app) if "not reloaded" in n]
        assert f"{path}:4" in note and "previous config stays" in note, note
        # And from the command palette, by name.
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert "Reload the config file" in commands
        await _send(pilot, "still works")
        await wait_until(
            pilot,
            lambda: any(w.status == "complete" for w in app.screen.query(AssistantMessage)),
            timeout=20,
            what="reply",
        )

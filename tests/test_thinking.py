"""/thinking on|off|BUDGET (issue 17): each protocol asks for thinking only when told, with a
budget where it takes one; per pane in a race; shown before sending."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from providers.capabilities import ChatParams
from providers.events import fold
from tests.support.mock_server import MockServer, MockServerProcess
from tests.support.tui import make_app, scenario, send, wait_until
from tests.support.tui import replies_over as race_over
from tests.test_native_protocols import run
from tests.test_tool_calls import native_config
from tui.session.commands import CommandError
from tui.session.request_settings import parse_thinking, thinking_label
from tui.widgets.compare_pane import ComparePane
from tui.widgets.status_bar import StatusBar

SCENARIOS = {"think": {"n_reasoning_tokens": 2, "n_tokens": 2}}


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer(scenarios=SCENARIOS) as srv:
        yield srv


def body_of(srv: MockServer) -> dict[str, Any]:
    (rec,) = srv.log()
    body: dict[str, Any] = rec["body"]
    return body


def test_the_command_reads_on_off_and_a_budget() -> None:
    assert parse_thinking("on") == (True, None)
    assert parse_thinking("OFF") == (False, None)
    assert parse_thinking("2,048") == (True, 2048)
    assert parse_thinking("") == (None, None)  # back to the endpoint's default
    with pytest.raises(CommandError, match="BUDGET"):
        parse_thinking("lots")
    assert thinking_label(True, 2048) == "thinking 2,048"
    assert thinking_label(None, None, default=True) == "thinking on (config)"
    assert thinking_label(None, None) == ""


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        ("anthropic", {"thinking": {"type": "enabled", "budget_tokens": 2048}}),
        ("gemini", {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 2048}}),
        ("responses", {"reasoning": {"summary": "auto"}}),
    ],
)
async def test_a_budget_goes_out_where_the_protocol_takes_one(
    mock: MockServer, protocol: str, expected: dict[str, Any]
) -> None:
    params = ChatParams(max_tokens=8000, thinking=True, thinking_budget=2048)
    events = await run(mock, protocol, "think", params)
    body = body_of(mock)
    got = body.get("generationConfig", {}) if protocol == "gemini" else body
    assert {k: got.get(k) for k in expected} == expected
    assert fold(events).reasoning  # the thinking streamed into the reasoning block
    if protocol == "responses":
        assert any("no thinking budget" in n for n in fold(events).notices)


async def test_anthropic_keeps_the_budget_inside_its_limits(mock: MockServer) -> None:
    events = await run(
        mock, "anthropic", "think", ChatParams(max_tokens=2000, thinking=True, thinking_budget=5000)
    )
    assert body_of(mock)["thinking"]["budget_tokens"] == 1999
    assert any("sent 1999 instead of 5000" in n for n in fold(events).notices)


@pytest.mark.parametrize("protocol", ["anthropic", "gemini", "responses"])
async def test_off_means_not_asked_even_when_the_endpoint_thinks(
    mock: MockServer, protocol: str
) -> None:
    await run(mock, protocol, "think", ChatParams(thinking=False), thinking=True)
    body = body_of(mock)
    assert "thinking" not in body and "reasoning" not in body
    assert "thinkingConfig" not in body.get("generationConfig", {})


async def test_thinking_per_pane_and_shown_before_sending(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    name = scenario(mock_server, n_reasoning_tokens=2, n_tokens=2).split("/", 1)[1]
    a, b = f"via-anthropic/{name}", f"via-gemini/{name}"
    app = make_app(native_config(mock_server), isolated_home, models=[a, b])
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "/thinking B 2048")
        header = app.screen.query_one("#pane-1", ComparePane).header
        await wait_until(pilot, lambda: "thinking 2,048" in str(header.render()))
        assert "thinking" not in str(app.screen.query_one("#pane-0", ComparePane).header.render())
        await send(pilot, "think?")
        await wait_until(pilot, lambda: race_over(app), what="the race")
        bodies = {r["path"]: r["body"] for r in mock_server.log() if r["model"] == name}
        anthropic = bodies["/v1/messages"]
        gemini = bodies[f"/v1beta/models/{name}:streamGenerateContent"]
        assert "thinking" not in anthropic  # pane A: off, as its endpoint's default
        assert gemini["generationConfig"]["thinkingConfig"] == {
            "includeThoughts": True,
            "thinkingBudget": 2048,
        }


async def test_the_chat_status_bar_says_thinking(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    config = native_config(mock_server)
    thinks = replace(config.endpoints["via-gemini"], thinking=True)
    config = replace(config, endpoints={**config.endpoints, "via-gemini": thinks})
    app = make_app(config, isolated_home, models=["via-gemini/m"], start_engine=False)
    async with app.run_test(size=(100, 30)) as pilot:
        bar = app.screen.query_one(StatusBar)
        await wait_until(pilot, lambda: "thinking on (config)" in str(bar.figures.render()))
        await send(pilot, "/thinking off")
        await wait_until(pilot, lambda: "thinking off" in str(bar.figures.render()))

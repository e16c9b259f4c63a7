"""Tool calls (issue 17): definitions in each protocol's documented form, streamed calls timed and
checked, past calls carried as text, and the live render."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from providers.capabilities import Capabilities, ChatParams
from providers.config import Config, parse_config
from providers.events import ToolCall, ToolCallDelta, fold
from providers.metrics import compute_metrics
from providers.protocols import BuildSettings, protocol_for
from providers.tools import (
    ToolDef,
    ToolsError,
    check_call,
    load_tools,
    parse_tools,
    request_tools,
)
from tests.support.cli import run_cli
from tests.support.mock_server import MockServer, MockServerProcess
from tests.support.tui import make_app, replies, scenario, screen_of, send, wait_until
from tests.test_native_protocols import run
from tests.test_timing import ATTEMPTS, BUSY_TTFT_TOLERANCE_MS, TTFT_TOLERANCE_MS
from tui.screens.chat import ChatScreen
from tui.session.conversation import Conversation, Turn
from tui.widgets.tool_call import ToolCallView

PROTOCOLS = ("chat", "anthropic", "gemini", "responses")

# The documented examples, each copied from the provider's own page (the request's "tools").
# https://platform.openai.com/docs/api-reference/chat/create (Functions example)
CHAT_DOC: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["location"],
            },
        },
    }
]
# https://docs.anthropic.com/en/docs/build-with-claude/tool-use (the get_weather request)
ANTHROPIC_DOC: list[dict[str, Any]] = [
    {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "input_schema": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The city and state, e.g. San Francisco, CA",
                }
            },
            "required": ["location"],
        },
    }
]
# https://ai.google.dev/gemini-api/docs/function-calling?example=meeting (the REST request)
GEMINI_DOC: list[dict[str, Any]] = [
    {
        "functionDeclarations": [
            {
                "name": "schedule_meeting",
                "description": "Schedules a meeting with specified attendees at a given time "
                "and date.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "attendees": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "List of people attending the meeting.",
                        },
                        "date": {
                            "type": "string",
                            "description": "Date of the meeting (e.g., '2024-07-29')",
                        },
                        "time": {
                            "type": "string",
                            "description": "Time of the meeting (e.g., '15:00')",
                        },
                        "topic": {
                            "type": "string",
                            "description": "The subject or topic of the meeting.",
                        },
                    },
                    "required": ["attendees", "date", "time", "topic"],
                },
            }
        ]
    }
]
# https://platform.openai.com/docs/api-reference/responses/create (Functions example)
RESPONSES_DOC: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The city and state, e.g. San Francisco, CA",
                },
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location", "unit"],
        },
    }
]
DOC = {
    "chat": CHAT_DOC,
    "anthropic": ANTHROPIC_DOC,
    "gemini": GEMINI_DOC,
    "responses": RESPONSES_DOC,
}


def doc_tools(protocol: str) -> list[dict[str, Any]]:
    """The documented example's tools in our own form ``{name, description, parameters}``."""
    if protocol == "anthropic":
        return [
            {"name": t["name"], "description": t["description"], "parameters": t["input_schema"]}
            for t in ANTHROPIC_DOC
        ]
    if protocol == "gemini":
        return list(GEMINI_DOC[0]["functionDeclarations"])
    if protocol == "responses":
        return [{k: v for k, v in t.items() if k != "type"} for t in RESPONSES_DOC]
    return [t["function"] for t in CHAT_DOC]


WEATHER = ToolDef(
    name="get_weather",
    description="Weather in a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
ARGS = '{"city": "Paris", "days": 3}'
SCENARIOS: dict[str, dict[str, Any]] = {
    "plain": {"n_tokens": 2, "prompt_tokens": 12},
    "tool": {
        "n_tokens": 3,
        "itl_ms": 2,
        "ttft_ms": 5,
        "tool_call": {"name": "get_weather", "arguments": ARGS},
        "tool_chunk_chars": 6,
        "finish_reason": "tool_calls",
    },
    "bad-tool": {
        "n_tokens": 1,
        "tool_call": {"name": "get_weather", "arguments": '{"town": "Paris"}'},
        "finish_reason": "tool_calls",
    },
}


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer(scenarios=SCENARIOS) as srv:
        yield srv


def sent_body(srv: MockServer, model: str) -> dict[str, Any]:
    (rec,) = [r for r in srv.log() if r["model"] == model]
    body: dict[str, Any] = rec["body"]
    return body


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_tools_go_out_as_the_providers_documented_example(
    mock: MockServer, protocol: str
) -> None:
    tools = parse_tools(doc_tools(protocol), "doc")
    await run(mock, protocol, "plain", ChatParams(tools=tools))
    assert sent_body(mock, "plain")["tools"] == DOC[protocol]


@pytest.mark.alone  # timed against the server's clock (tests/conftest.py)
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_streamed_tool_call_is_timed_and_validated(mock: MockServer, protocol: str) -> None:
    errors = []
    for _attempt in range(
        ATTEMPTS
    ):  # the best of three: a busy machine stalls a process now and then
        mock.reset_log()
        events = await run(mock, protocol, "tool", ChatParams(tools=(WEATHER,)))
        t, m = fold(events), compute_metrics(events)
        assert t.error is None, t.error
        (call,) = t.tool_calls
        assert call.name == "get_weather" and json.loads(call.arguments) == json.loads(ARGS)
        assert t.finish_reason == "tool_calls" and m.tool_calls == 1
        assert check_call((WEATHER,), call).valid
        if protocol != "gemini":  # Gemini sends a call whole; the others stream its arguments
            pieces = [e for e in events if isinstance(e, ToolCallDelta) and e.arguments]
            assert len(pieces) >= 3
        # Time to first tool call: the first tool fragment's byte-arrival stamp, after the
        # text, against the server's own send time of that fragment.
        assert m.ttft_tool_ms is not None and m.ttft_ms is not None
        assert m.ttft_tool_ms > m.ttft_ms
        (rec,) = [r for r in mock.log() if r["model"] == "tool"]
        tool_send = next(s for s in rec["sends"] if s["kind"] == "tool")
        errors.append(abs(m.ttft_tool_ms - (tool_send["t_ns"] - rec["received_ns"]) / 1e6))
        if errors[-1] <= TTFT_TOLERANCE_MS:
            break
    # Usually within 1–2 ms; at load 15 on 2 cores a run now and then is held off the CPU for
    # tens of ms, so the best attempt gets the busy machine's margin.
    assert min(errors) <= BUSY_TTFT_TOLERANCE_MS, errors


async def test_arguments_that_break_the_schema_are_counted_invalid(mock: MockServer) -> None:
    events = await run(mock, "anthropic", "bad-tool", ChatParams(tools=(WEATHER,)))
    (call,) = fold(events).tool_calls
    check = check_call((WEATHER,), call)
    assert check.json_valid and not check.schema_valid
    assert "city" in check.message
    assert not check_call((WEATHER,), ToolCall(0, None, "get_weather", '{"city": ')).json_valid
    assert not check_call((WEATHER,), ToolCall(0, None, "nope", "{}")).schema_valid


def test_gemini_gets_a_schema_beyond_openapi_as_parameters_json_schema() -> None:
    (plain,) = parse_tools(doc_tools("gemini"), "doc")
    assert request_tools("gemini", (plain,)) == GEMINI_DOC  # the documented field
    rich: list[dict[str, Any]] = [
        {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": False},
        {"type": "object", "properties": {"x": {"type": ["string", "null"]}}},
        {"type": "object", "properties": {"p": {"$ref": "#/$defs/point"}}},
        {"type": "array", "items": {"type": "object", "properties": {"n": {"const": 1}}}},
    ]
    for schema in rich:
        tool = ToolDef(name="f", description="", parameters=schema)
        (decl,) = request_tools("gemini", (tool,))[0]["functionDeclarations"]
        assert decl["parametersJsonSchema"] == schema and "parameters" not in decl, schema


def test_tool_files_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "tools.json"
    good.write_text(json.dumps({"tools": CHAT_DOC}))  # OpenAI's shape is taken too
    (tool,) = load_tools(good)
    assert tool.name == "get_current_weather" and request_tools("chat", (tool,)) == CHAT_DOC
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "x", "parameters": {"type": "nonsense"}}]))
    with pytest.raises(ToolsError, match="not a valid JSON Schema"):
        load_tools(bad)
    with pytest.raises(ToolsError, match="name"):
        parse_tools([{"name": "has space"}], "t")


def test_ask_and_replay_count_valid_tool_calls(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    spec = {"n_tokens": 1, "finish_reason": "tool_calls"}
    good = scenario(mock_server, **spec, tool_call={"name": "get_weather", "arguments": ARGS})
    bad = scenario(mock_server, **spec, tool_call={"name": "get_weather", "arguments": '{"x":1}'})
    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\n'
    )
    tools = isolated_home / "tools.json"
    tools.write_text(json.dumps([{"name": WEATHER.name, "parameters": WEATHER.parameters}]))
    r = run_cli("ask", "-m", good, "-m", bad, "--tools", str(tools), "--json", "hi")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [d["tool_calls_valid"] for d in doc] == [1, 0]
    assert doc[1]["tool_calls"][0]["valid"] is False and "city" in doc[1]["tool_calls"][0]["error"]
    assert doc[0]["metrics"]["ttft_tool_ms"] > 0
    assert {"cost_input_usd", "cost_cached_usd", "cost_output_usd"} <= set(doc[0]["metrics"])
    text = run_cli("ask", "-m", bad, "--tools", str(tools), "hi")
    assert '[tool call get_weather({"x":1}); not executed]' in text.stdout
    assert text.stderr.rstrip().endswith("· tool calls 0/1 valid"), text.stderr
    suite = isolated_home / "suite.jsonl"
    lines = [{"prompt": "weather?", "tools_file": "tools.json"}, {"prompt": "plain"}]
    suite.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out_json, out_csv = isolated_home / "out.json", isolated_home / "out.csv"
    r = run_cli(
        "replay", str(suite), "-m", good, "-m", bad, "--json", str(out_json), "--csv", str(out_csv)
    )
    assert r.returncode == 0, r.stderr
    by = {s["model"]: s for s in json.loads(out_json.read_text())["summary"]}
    assert (by[good]["tool_calls_valid"], by[good]["tool_calls"]) == (1, 1)
    assert (by[bad]["tool_calls_valid"], by[bad]["tool_calls"]) == (0, 1)
    table = {m: next(ln for ln in r.stdout.splitlines() if ln.startswith(m[:38])) for m in by}
    assert " 1/1 " in table[good] and " 0/1 " in table[bad]
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert sorted(
        (row["model"], row["prompt_index"], row["tool_calls_valid"]) for row in rows
    ) == sorted([(good, "0", "1"), (bad, "0", "0"), (good, "1", ""), (bad, "1", "")])


def native_config(srv: MockServerProcess, **extra: Any) -> Config:
    """One endpoint per protocol on the mock server: via-chat, via-anthropic, via-gemini…"""
    root = srv.base_url.removesuffix("/v1")
    endpoints = {
        f"via-{p}": {"base_url": f"{root}/v1beta" if p == "gemini" else srv.base_url, "protocol": p}
        for p in PROTOCOLS
    }
    return parse_config({"endpoints": endpoints, **extra})


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_tool_call_renders_live_is_checked_and_goes_back_as_text(
    isolated_home: Path, mock_server: MockServerProcess, protocol: str
) -> None:
    hostile = '{"city": "[b]Paris[/b]", "days": 3}'  # square brackets are text, never markup
    name = scenario(
        mock_server,
        n_tokens=2,
        itl_ms=120,  # 7 pieces over ~0.8 s: a loaded machine still draws one half-way
        tool_call={"name": "get_weather", "arguments": hostile},
        tool_chunk_chars=5,
        finish_reason="tool_calls",
    ).split("/", 1)[1]
    tools = isolated_home / "tools.json"
    weather = {"name": WEATHER.name, "description": WEATHER.description}
    tools.write_text(json.dumps([{**weather, "parameters": WEATHER.parameters}]))
    app = make_app(native_config(mock_server), isolated_home, models=[f"via-{protocol}/{name}"])
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, f"/tools {tools}")
        await wait_until(pilot, lambda: "tools 1" in str(app.screen.query_one("#topbar").render()))
        await send(pilot, "Weather in Paris?")
        seen: list[str] = []

        def growing() -> bool:
            views = list(app.screen.query(ToolCallView))
            if views:
                seen.append(views[0].arguments)
            return bool(replies(app)) and replies(app)[0].status != "streaming"

        await wait_until(pilot, growing, what="the reply")
        partial = [a for a in seen if a and a != hostile]
        if protocol != "gemini":  # Gemini sends a call whole
            assert partial, "the arguments never showed before they were complete"
        (view,) = app.screen.query(ToolCallView)
        shown = view.render_call().plain
        assert "get_weather" in shown and '"city": "[b]Paris[/b]"' in shown
        assert '{\n  "city"' in shown  # pretty-printed once it parses
        assert "✓ arguments valid" in shown
        chat = screen_of(app, ChatScreen)
        assert chat.conv.turns(0)[-1].tool_calls[0].arguments == hostile
        await send(pilot, "and tomorrow?")
        await wait_until(
            pilot, lambda: len(replies(app)) == 2 and replies(app)[1].status != "streaming"
        )
        bodies = [r["body"] for r in mock_server.log() if r["model"] == name]
        assert bodies[1]["tools"] == request_tools(protocol, (WEATHER,))
        past = (bodies[1].get("messages") or bodies[1].get("input") or bodies[1]["contents"])[1]
        said = past["parts"][0]["text"] if protocol == "gemini" else past["content"]
        assert f"[tool call get_weather({hostile}); not executed]" in said
        assert app.store is not None and app.store.flush()
        stored = Conversation.load(app.store, chat.conv.id)
        assert stored is not None and stored.turns(0)[1].tool_calls[0].name == "get_weather"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_past_tool_call_moves_to_any_protocol_as_text(protocol: str) -> None:
    call = ToolCall(0, "call_1", "get_weather", ARGS)
    conv = Conversation()
    conv.turns(0).extend(
        [
            Turn(1, "user", "weather?"),
            Turn(2, "assistant", "", reasoning="private thoughts", tool_calls=(call,)),
            Turn(3, "user", "and tomorrow?"),
        ]
    )
    settings = BuildSettings(params=ChatParams(), caps=Capabilities())
    body, _ = protocol_for(protocol).build("m", list(conv.request_messages()), settings)
    said = f"[tool call get_weather({ARGS}); not executed]"
    turns = body.get("messages") or body.get("input") or body["contents"]
    past = turns[1]
    if protocol == "gemini":
        assert past == {"role": "model", "parts": [{"text": said}]}
    else:
        assert past == {"role": "assistant", "content": said}
    assert "private thoughts" not in json.dumps(body)  # thinking stays with the reply shown


@pytest.mark.parametrize("const", ["TOOL_CALLS_MIGRATION", "RUN_FIGURES_MIGRATION"])
def test_the_migrations_keep_old_rows_and_load_them(isolated_home: Path, const: str) -> None:
    from tui.session import store as st

    number = st.MIGRATIONS.index(getattr(st, const)) + 1
    db = isolated_home / "history.db"
    conn = st.connect(db)
    assert st.migrate(conn, upto=number - 1) == number - 1
    conn.execute(
        "INSERT INTO conversations(id, title, created_at, updated_at) VALUES (1, 't', 0, 0)"
    )
    for mid, role in ((2, "user"), (3, "assistant")):
        conn.execute(
            "INSERT INTO messages(id, conversation_id, role, content, created_at, updated_at) "
            "VALUES (?, 1, ?, 'old', 0, 0)",
            (mid, role),
        )
    conn.execute(
        "INSERT INTO runs(id, message_id, conversation_id, model, endpoint, status, started_at, "
        "ttft_ms, cost_usd) VALUES (4, 3, 1, 'srv/m', 'srv', 'complete', 0, 12.5, 0.01)"
    )
    conn.close()
    store = st.Store(db)
    try:
        conv = Conversation.load(store, 1)
        assert conv is not None
        _user, reply = conv.turns(0)
        assert (reply.content, reply.tool_calls) == ("old", ())
        assert reply.metrics is not None and reply.metrics.ttft_ms == 12.5
        assert reply.metrics.cost_input_usd is None and reply.metrics.ttft_tool_ms is None
        assert conv.request_messages()[1] == {"role": "assistant", "content": "old"}
    finally:
        store.close()

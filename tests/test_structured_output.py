"""Structured output (issue 18): each protocol's schema form, ask --schema, suite schema counts."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from providers.capabilities import ChatParams
from providers.config import parse_config
from providers.engine import ChatRequest, Engine, collect
from providers.events import fold
from providers.keys import KeyStore
from tests.support.cli import run_cli
from tests.support.mock_server import MockServer, MockServerProcess
from tests.support.tui import scenario
from tui.session.replay import SuiteError, load_suite
from tui.session.structured import validate_reply

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name"],
    "additionalProperties": False,
}  # fmt: skip
HELLO = ({"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"})
PATH = {
    "chat": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/plain:streamGenerateContent",
    "responses": "/v1/responses",
}


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer(scenarios={"plain": {"text": '{"name": "x"}'}}) as srv:
        yield srv


async def body_sent(srv: MockServer, protocol: str, params: ChatParams) -> tuple[Any, list[str]]:
    base = f"http://127.0.0.1:{srv.port}/v1beta" if protocol == "gemini" else srv.base_url
    cfg = parse_config(
        {"endpoints": {"e": {"base_url": base, "protocol": protocol}}, "engine": {"retries": 0}}
    )
    eng = Engine(cfg, KeyStore(use_keyring=False))
    try:
        events = await collect(eng, ChatRequest("e/plain", HELLO, params))
    finally:
        await eng.aclose()
    (rec,) = [r for r in srv.log() if r["path"] == PATH[protocol]]
    return rec["body"], fold(events).notices


@pytest.mark.parametrize("protocol", ["chat", "anthropic", "gemini", "responses"])
async def test_each_protocol_sends_its_structured_output_form(
    mock: MockServer, protocol: str
) -> None:
    body, notices = await body_sent(mock, protocol, ChatParams(json_schema=SCHEMA, json_mode=True))
    if protocol == "chat":
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": SCHEMA},
        }
    elif protocol == "responses":
        assert body["text"] == {
            "format": {"type": "json_schema", "name": "reply", "schema": SCHEMA}
        }
    elif protocol == "gemini":
        assert body["generationConfig"] == {
            "responseMimeType": "application/json",
            "responseJsonSchema": SCHEMA,
        }
    else:  # Anthropic has no schema mode: asked in the system prompt, and said so.
        assert body["system"].startswith("be brief\n\n")
        assert json.dumps(SCHEMA) in body["system"]
        assert any("asked in the prompt" in n for n in notices)


def test_chat_without_response_format_asks_in_the_prompt() -> None:
    from providers.capabilities import Capabilities, build_body

    body, notes = build_body(
        "m",
        list(HELLO),
        ChatParams(json_schema=SCHEMA),
        Capabilities(),
        frozenset({"response_format"}),
    )
    assert "response_format" not in body and notes
    assert (
        body["messages"][0]["role"] == "system" and "JSON Schema" in body["messages"][0]["content"]
    )
    assert body["messages"][1:] == [HELLO[1]]


def test_validation_names_the_first_error_path() -> None:
    assert validate_reply('{"name": "a", "tags": ["b"]}', SCHEMA).valid
    bad = validate_reply('{"name": "a", "tags": ["b", 3]}', SCHEMA)
    assert (bad.valid, bad.path) == (False, "$.tags[1]") and "not of type 'string'" in (
        bad.message or ""
    )
    missing = validate_reply("{}", SCHEMA)
    assert missing.path == "$" and "'name' is a required property" in (missing.message or "")
    assert validate_reply("not json", SCHEMA).describe().startswith("schema invalid at $: not JSON")


def test_ask_schema_says_valid_or_invalid(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    good = scenario(mock_server, text='{"name": "ok"}')
    bad = scenario(mock_server, text='{"name": 7}')
    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\n'
    )
    schema = isolated_home / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    r = run_cli("ask", "-m", good, "-m", bad, "--schema", str(schema), "hi")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("mock/")]
    assert lines[0].endswith("· schema valid"), lines
    assert lines[1].endswith("· schema invalid at $.name: 7 is not of type 'string'"), lines
    js = run_cli("ask", "-m", good, "-m", bad, "--schema", str(schema), "--json", "hi")
    doc = json.loads(js.stdout)
    assert [d["schema_valid"] for d in doc] == [True, False]
    assert doc[1]["schema_error"] == "schema invalid at $.name: 7 is not of type 'string'"
    sent = [
        r["body"]
        for r in mock_server.log()
        if r["path"] == "/v1/chat/completions" and f"mock/{r['model']}" in (good, bad)
    ]
    assert sent and all(b["response_format"]["type"] == "json_schema" for b in sent)
    schema.write_text('{"type": 12}')
    broken = run_cli("ask", "-m", good, "--schema", str(schema), "hi")
    assert broken.returncode == 2 and "not a valid JSON Schema" in broken.stderr


def test_replay_counts_schema_valid_in_table_json_and_csv(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    replies = {
        "person one": '{"name": "Ada"}',
        "person two": '{"name": "Bob", "tags": ["x", 1]}',
        "person three": '{"name": "Cy", "extra": true}',
        "plain": "no json here",
    }
    a = scenario(mock_server, json_reply_by_prompt=replies)
    b = scenario(mock_server, json_reply_by_prompt={**replies, "person two": '{"name": "Bo"}'})
    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\n'
    )
    (isolated_home / "schemas").mkdir()
    (isolated_home / "schemas" / "person.json").write_text(json.dumps(SCHEMA))
    suite = isolated_home / "suite.jsonl"
    lines = [
        {"prompt": "person one", "schema": SCHEMA},
        {"prompt": "person two", "schema_file": "schemas/person.json"},
        {"prompt": "person three", "schema": SCHEMA},
        {"prompt": "plain"},
    ]
    suite.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out_json, out_csv = isolated_home / "out.json", isolated_home / "out.csv"
    r = run_cli(
        "replay",
        str(suite),
        "-m",
        a,
        "-m",
        b,
        "--runs",
        "2",
        "--json",
        str(out_json),
        "--csv",
        str(out_csv),
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(out_json.read_text())
    by = {s["model"]: s for s in doc["summary"]}
    # a: only "person one" validates (two has a number tag, three an extra key): 2 of 6 in 2 runs
    # b: one and two validate -> 4 of 6. Every schema reply is JSON: json_valid 6 of 6.
    assert (by[a]["schema_valid"], by[a]["schema_expected"]) == (2, 6)
    assert (by[b]["schema_valid"], by[b]["schema_expected"]) == (4, 6)
    assert (by[a]["json_valid"], by[a]["json_expected"]) == (6, 6)
    runs = doc["runs"]
    assert [x["schema_valid"] for x in runs if x["prompt_index"] == 3] == [None] * 4
    two_a = next(x for x in runs if x["model"] == a and x["prompt_index"] == 1)
    assert two_a["schema_error"] == "schema invalid at $.tags[1]: 1 is not of type 'string'"
    table_a = next(ln for ln in r.stdout.splitlines() if ln.startswith(a[:38]))
    table_b = next(ln for ln in r.stdout.splitlines() if ln.startswith(b[:38]))
    assert " 6/6 " in table_a and " 2/6 " in table_a and " 4/6 " in table_b
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert len(rows) == len(runs)
    for row, run in zip(rows, runs, strict=True):
        want = "" if run["schema_valid"] is None else str(run["schema_valid"]).lower()
        assert row["schema_valid"] == want
    assert sum(1 for x in rows if x["model"] == a and x["schema_valid"] == "true") == 2
    assert sum(1 for x in rows if x["model"] == b and x["schema_valid"] == "false") == 2
    # The schema went out as response_format on every schema prompt, and not on the plain one.
    bodies = [
        x["body"]
        for x in mock_server.log()
        if x["path"] == "/v1/chat/completions" and f"mock/{x['model']}" in (a, b)
    ]
    with_schema = [x for x in bodies if "response_format" in x]
    assert len(with_schema) == 3 * 2 * 2 and len(bodies) == 4 * 2 * 2


def test_suite_schema_errors_name_the_line(isolated_home: Path) -> None:
    suite = isolated_home / "s.jsonl"
    suite.write_text('{"prompt": "a"}\n{"prompt": "b", "schema": {"type": 5}}\n')
    with pytest.raises(SuiteError, match=r"s\.jsonl:2: not a valid JSON Schema"):
        load_suite(suite)
    suite.write_text('{"prompt": "a", "schema_file": "missing.json"}\n')
    with pytest.raises(SuiteError, match=r"s\.jsonl:1: .*missing\.json: cannot be read"):
        load_suite(suite)

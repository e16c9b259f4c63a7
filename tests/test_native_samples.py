"""Every recorded Anthropic, Gemini and Responses stream decodes to the right events (issue 17).

Each file is replayed over a real socket at its recorded framing (one write per event, CRLF kept
for Gemini's real streams) through the engine, on an endpoint that speaks the file's protocol.
Text and reasoning are checked against a plain line-by-line reading written here; usage, tool
calls, finish reasons and errors against figures read off each file by hand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from providers.events import Usage, fold
from providers.metrics import compute_metrics
from tests.conftest import SAMPLES
from tests.support.engine_run import events_from
from tests.support.raw_server import RawServer, Script


@dataclass
class Expect:
    status: str
    finish: str | None
    prompt: int | None = None
    completion: int | None = None
    reasoning_tokens: int | None = None
    cached: int | None = None
    cache_write: int | None = None
    tools: list[tuple[str, str]] = field(default_factory=list)
    tool_ids: list[str | None] | None = None
    error_kind: str | None = None
    error_has: tuple[str, ...] = ()
    text_starts: str = ""
    text_ends: str = ""
    reasoning_starts: str = ""
    notice_has: str | None = None
    http_status: int = 200


EXPECT: dict[str, Expect] = {
    # --- Anthropic Messages ---------------------------------------------------------------
    "anthropic_messages_cache_creation.sse": Expect(
        "length",
        "length",
        prompt=18 + 1031,  # input_tokens excludes the cache: 18 + 1031 written + 0 read
        completion=100,
        cached=0,
        cache_write=1031,
        text_starts="Here are the key principles for designing scalable systems:\n\n## 1.",
        text_ends="- Minimize dependencies",
    ),
    "anthropic_messages_cache_read.sse": Expect(
        "complete", "stop", prompt=3 + 1217, completion=4, cached=1217, cache_write=0
    ),
    "anthropic_messages_midstream_overloaded_error_SYNTHETIC.sse": Expect(
        "error",
        None,
        prompt=17,  # message_start's usage; no output count ever arrived
        error_kind="remote_error",
        error_has=("Overloaded", "overloaded_error"),
        text_starts="Hello",
    ),
    "anthropic_messages_text_ping.sse": Expect(
        "complete", "stop", prompt=17, completion=10, cached=0, text_starts="- Captain\n- Scoop"
    ),
    "anthropic_messages_thinking.sse": Expect(
        "complete",
        "stop",
        prompt=46,
        completion=84,
        text_starts="- Captain\n- Scoop",
        reasoning_starts="The user wants two names for a pet pelican, and wants me to be brief.",
    ),
    "anthropic_messages_tool_use.sse": Expect(
        "complete",
        "tool_calls",
        prompt=563,
        completion=37,
        tools=[("fixed_version", "{}")],  # no arguments: only "" streamed, the input is {}
    ),
    "anthropic_messages_tool_use_input_json_delta.sse": Expect(
        "complete",
        "tool_calls",
        prompt=506,
        completion=153,
        cached=0,
        cache_write=0,
        tools=[
            ("get_weather", '{"location": "San Francisco, CA", "unit": "celsius"}'),
            ("get_time", '{"timezone": "America/Los_Angeles"}'),
        ],
        text_starts="Certainly! I can help you with that information. To get the weather",
        text_ends="Let me fetch that data for you.",
    ),
    # --- Gemini ---------------------------------------------------------------------------
    "google_streamGenerateContent_function_call.sse": Expect(
        "complete",
        "tool_calls",
        prompt=52,
        completion=5,
        tools=[("get_capital", '{"country": "France"}')],
    ),
    "google_streamGenerateContent_function_call_thought_signature.sse": Expect(
        "complete",
        "tool_calls",
        prompt=29,
        completion=10 + 202,  # candidatesTokenCount excludes thoughtsTokenCount
        reasoning_tokens=202,
        tools=[("get_country", "{}")],
    ),
    "google_streamGenerateContent_http400_error_body.sse": Expect(
        "error",
        None,
        error_kind="auth",  # 400 API_KEY_INVALID is a bad key, whatever the status says
        error_has=("API key not valid", "x-goog-api-key", "HTTP 400"),
        http_status=400,
    ),
    "google_streamGenerateContent_parallel_function_calls.sse": Expect(
        "complete",
        "tool_calls",
        prompt=37,
        completion=14,
        tools=[
            ("get_current_temperature", '{"city": "Paris"}'),
            ("get_current_temperature", '{"city": "London"}'),
        ],
    ),
    "google_streamGenerateContent_prompt_blocked_SYNTHETIC.sse": Expect(
        "filtered", "content_filter", text_starts="No", notice_has="PROHIBITED_CONTENT"
    ),
    "google_streamGenerateContent_text_usage.sse": Expect(
        "complete", "stop", prompt=13, completion=8, text_starts="The capital of France is Paris.\n"
    ),
    "google_streamGenerateContent_thinking_function_call.sse": Expect(
        "complete",
        "tool_calls",
        prompt=54,
        completion=14 + 62,
        reasoning_tokens=62,
        tools=[("weather", '{"location": "Florence, Italy"}')],
        reasoning_starts="**Determining the Weather Inquiry**\n\nI've pinpointed",
    ),
    "google_streamGenerateContent_thinking_text.sse": Expect(
        "complete",
        "stop",
        prompt=34,
        completion=469 + 787,
        reasoning_tokens=787,
        reasoning_starts="**Clarifying User Goals**",
        text_starts="This is a great question! Safely crossing the street",
    ),
    # --- OpenAI Responses -----------------------------------------------------------------
    "openai_responses_error_failed_REFRAMED.sse": Expect(
        "error",
        None,
        error_kind="remote_error",
        error_has=("You exceeded your current quota", "insufficient_quota"),
    ),
    "openai_responses_function_call.sse": Expect(
        "complete",
        "tool_calls",
        prompt=75,
        completion=23,
        reasoning_tokens=0,
        cached=0,
        tools=[("get_current_weather", '{"location":"Boston, MA","unit":"celsius"}')],
        tool_ids=["call_lGe2JKQEBSP15opZ3KfxtEUC"],
    ),
    # Its usage is all zeros although 16 deltas streamed: treated as not reported.
    "openai_responses_incomplete_max_output_tokens.sse": Expect("length", "length"),
    "openai_responses_reasoning_summary.sse": Expect(
        "complete", "stop", prompt=92, completion=456, reasoning_tokens=384, cached=0
    ),
    "openai_responses_text_cached_tokens.sse": Expect(
        "complete", "stop", prompt=1515, completion=8, reasoning_tokens=0, cached=1390
    ),
    "openai_responses_text_reasoning_tokens.sse": Expect(
        "complete", "stop", prompt=19, completion=118, reasoning_tokens=64, cached=0
    ),
}


def protocol_of(name: str) -> str:
    if name.startswith("anthropic_"):
        return "anthropic"
    if name.startswith("google_"):
        return "gemini"
    return "responses"


def native_samples() -> list[str]:
    prefixes = ("anthropic_", "google_", "openai_responses_")
    return sorted(p.name for p in SAMPLES.glob("*.sse") if p.name.startswith(prefixes))


def recorded_events(raw: bytes) -> list[bytes]:
    """The file's events, each with its own blank-line terminator (LF or CRLF) kept."""
    parts = re.split(rb"(?<=\r\n\r\n)|(?<=(?<!\r)\n\n)", raw)
    return [p for p in parts if p]


def oracle(name: str, text: str) -> tuple[str, str]:
    """Text and reasoning by the plainest reading of each ``data:`` line."""
    content: list[str] = []
    reasoning: list[str] = []
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        obj = json.loads(line[5:])
        if name.startswith("anthropic_"):
            d = obj.get("delta") or {}
            content.append(d.get("text", "") if d.get("type") == "text_delta" else "")
            reasoning.append(d.get("thinking", "") if d.get("type") == "thinking_delta" else "")
        elif name.startswith("google_"):
            for cand in obj.get("candidates", [])[:1]:
                for part in cand.get("content", {}).get("parts", []):
                    (reasoning if part.get("thought") else content).append(part.get("text", ""))
        else:
            t = obj.get("type")
            if t == "response.output_text.delta":
                content.append(obj["delta"])
            elif t == "response.reasoning_summary_text.delta":
                reasoning.append(obj["delta"])
    return "".join(content), "".join(reasoning)


def test_every_native_sample_has_expectations() -> None:
    assert native_samples() == sorted(EXPECT)


def test_gemini_recordings_keep_their_crlf_framing() -> None:
    raw = (SAMPLES / "google_streamGenerateContent_text_usage.sse").read_bytes()
    events = recorded_events(raw)
    assert len(events) == 3 and all(e.endswith(b"\r\n\r\n") for e in events)


@pytest.mark.parametrize("name", native_samples())
async def test_native_sample_decodes(name: str, raw_server: RawServer) -> None:
    raw = (SAMPLES / name).read_bytes()
    exp = EXPECT[name]
    if exp.http_status != 200:
        # Served as recorded: an error status whose header claims an event stream.
        raw_server.push(
            Script(
                chunks=[raw],
                status=exp.http_status,
                headers={"Content-Type": "text/event-stream"},
                chunked=False,
            )
        )
    else:
        raw_server.push(Script(chunks=recorded_events(raw)))
    protocol = protocol_of(name)
    events = await events_from(raw_server.base_url, protocol)
    (sent,) = raw_server.requests
    want_path = {
        "anthropic": "/v1/messages",
        "gemini": "/v1/models/m:streamGenerateContent?alt=sse",
        "responses": "/v1/responses",
    }[protocol]
    assert sent.path == want_path
    t = fold(events)
    m = compute_metrics(events)
    want_text, want_reasoning = oracle(name, raw.decode("utf-8"))

    assert t.text == want_text
    assert t.reasoning == want_reasoning
    assert t.text.startswith(exp.text_starts) and t.text.endswith(exp.text_ends)
    assert t.reasoning.startswith(exp.reasoning_starts)
    assert m.status == exp.status
    assert t.finish_reason == exp.finish
    assert [(c.name, c.arguments) for c in t.tool_calls] == exp.tools
    for call in t.tool_calls:
        json.loads(call.arguments)  # every assembled call is whole JSON
    if exp.tool_ids is not None:
        assert [c.id for c in t.tool_calls] == exp.tool_ids
    if exp.error_kind:
        assert t.error is not None and t.error.kind == exp.error_kind
        for needle in exp.error_has:
            assert needle in t.error.message
    else:
        assert t.error is None
    if exp.notice_has:
        assert any(exp.notice_has in n for n in t.notices)
    usage = [e for e in events if isinstance(e, Usage)]
    if exp.prompt is None:
        assert not usage
    else:
        u = usage[-1]
        assert (u.prompt, u.completion) == (exp.prompt, exp.completion)
        assert m.input_tokens == exp.prompt
        assert m.output_tokens_estimated == (exp.completion is None)
        if exp.reasoning_tokens is not None:
            assert u.reasoning == exp.reasoning_tokens
        if exp.cached is not None:
            assert u.cached == exp.cached and m.cached_tokens == exp.cached
        if exp.cache_write is not None:
            assert u.cache_write == exp.cache_write and m.cache_write_tokens == exp.cache_write


def test_samples_dir_holds_the_native_notices() -> None:
    sources = (SAMPLES / "SOURCES.md").read_text(encoding="utf-8")
    assert "Charmbracelet, Inc." in sources and "Datadog, Inc." in sources
    for name in native_samples():
        assert f"`{name}`" in sources, name


def test_copy_is_byte_exact_where_the_shared_dir_is_present() -> None:
    shared = Path("/work/shared/sse-samples")
    if not shared.is_dir():
        pytest.skip("platform: the shared recordings are not on this machine")
    for name in native_samples():
        assert (SAMPLES / name).read_bytes() == (shared / name).read_bytes(), name


def test_thinking_and_thought_signatures_are_kept() -> None:
    """Anthropic thinking blocks and Gemini function calls carry signatures for a later turn."""
    from providers.protocols.anthropic import AnthropicDecoder
    from providers.protocols.gemini import GeminiDecoder

    anthropic = AnthropicDecoder("rec")
    for event in recorded_events((SAMPLES / "anthropic_messages_thinking.sse").read_bytes()):
        name, data = "", ""
        for line in event.decode().splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:]
        anthropic.feed(name, data, 0)
    assert len(anthropic.signatures) == 1
    assert anthropic.signatures[0].startswith(
        "EvoCCkYICxgCKkCY593DZILKPT3+cK6Py3Hcu8WYGSW2vk6yge13"
    )
    gemini = GeminiDecoder("rec")
    raw = (SAMPLES / "google_streamGenerateContent_thinking_function_call.sse").read_bytes()
    for event in recorded_events(raw):
        gemini.feed("", event.decode().strip().removeprefix("data:"), 0)
    assert len(gemini.thought_signatures) == 1
    assert gemini.thought_signatures[0].startswith("CiQBvj72+y6VX8BA4jMLQJOJvw+XWxadOcga")


async def _decode(name: str, chunks: list[bytes]) -> tuple[str, str, str | None, list[Any]]:
    from providers.protocols import protocol_for
    from providers.sse import BytesSource, aiter_sse

    decoder = protocol_for(protocol_of(name)).decoder("rec")
    events: list[Any] = []
    async for sse in aiter_sse(BytesSource(chunks)):
        events.extend(decoder.feed(sse.event, sse.data, 0))
    t = fold(events)
    return t.text, t.reasoning, decoder.finish_reason, [(c.name, c.arguments) for c in t.tool_calls]


@pytest.mark.parametrize("name", [n for n in native_samples() if EXPECT[n].http_status == 200])
async def test_any_split_and_line_ending_decodes_the_same(name: str) -> None:
    """Chunk boundaries anywhere (even inside a UTF-8 character) and LF or CRLF change nothing."""
    import random

    raw = (SAMPLES / name).read_bytes()
    whole = await _decode(name, [raw])
    rng = random.Random(name)
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, rng.randint(1, 60))))
        pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
        assert await _decode(name, pieces) == whole
    lf = raw.replace(b"\r\n", b"\n")
    crlf = lf.replace(b"\n", b"\r\n")
    assert await _decode(name, [lf]) == whole
    assert await _decode(name, [crlf]) == whole

"""Every OpenAI-format recorded stream decodes to the right text, reasoning, tools, usage, outcome.

Each file is replayed over a real socket at its recorded framing (one write per event) and goes
through the engine exactly as a live stream would. Text and reasoning are checked against a
naive line-by-line oracle written here; the rest against figures read off the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from providers.events import ServerTimings, Usage, fold
from providers.metrics import compute_metrics
from tests.conftest import SAMPLES
from tests.support.engine_run import events_from
from tests.support.raw_server import RawServer, Script, sse_events


@dataclass
class Expect:
    status: str
    finish: str | None
    prompt: int | None = None
    completion: int | None = None
    reasoning_tokens: int | None = None
    cached: int | None = None
    tools: list[tuple[str, str]] = field(default_factory=list)
    error_has: str | None = None
    cost: float | None = None
    refusal_starts: str | None = None


EXPECT: dict[str, Expect] = {
    "deepseek_reasoner_reasoning_content.sse": Expect(
        "complete", "stop", prompt=6, completion=212, reasoning_tokens=198, cached=0
    ),
    "groq_midstream_error_event.sse": Expect(
        "error", None, error_has="Tool call validation failed"
    ),
    "llamacpp_server_timings_excerpt.sse": Expect("complete", "stop"),
    "ollama_openai_compat_stream.sse": Expect("complete", "stop"),
    "openai_chat_basic_usage.sse": Expect(
        "complete", "stop", prompt=14, completion=30, reasoning_tokens=0
    ),
    "openai_chat_finish_length.sse": Expect("length", "length", prompt=79, completion=1),
    "openai_chat_logprobs.sse": Expect("complete", "stop", prompt=9, completion=2),
    "openai_chat_modern_obfuscation_usage.sse": Expect(
        "complete", "stop", prompt=78, completion=9, cached=0
    ),
    "openai_chat_modern_tool_call.sse": Expect(
        "complete",
        "tool_calls",
        prompt=53,
        completion=15,
        tools=[("get_capital", '{"country":"UK"}')],
    ),
    "openai_chat_n3_multiple_choices.sse": Expect("complete", "stop", prompt=79, completion=42),
    "openai_chat_parallel_tool_calls.sse": Expect(
        "complete",
        "tool_calls",
        prompt=149,
        completion=60,
        tools=[
            ("GetWeatherArgs", '{"city": "Edinburgh", "country": "GB", "units": "c"}'),
            ("get_stock_price", '{"ticker": "AAPL", "exchange": "NASDAQ"}'),
        ],
    ),
    "openai_chat_refusal.sse": Expect(
        "complete", "stop", prompt=79, completion=11, refusal_starts="I'm sorry, I can't assist"
    ),
    "openai_chat_tool_call.sse": Expect(
        "complete",
        "tool_calls",
        prompt=44,
        completion=16,
        tools=[("get_weather", '{"city":"New York City"}')],
    ),
    "openrouter_keepalive_midstream_error.sse": Expect(
        "error",
        None,
        prompt=43,
        completion=10,
        reasoning_tokens=11,
        error_has="Token limit reached",
        cost=0.0,
    ),
    "openrouter_keepalive_reasoning_usage_cost.sse": Expect(
        "complete", "stop", prompt=43, completion=36, reasoning_tokens=13, cost=0.000669
    ),
    "vllm_crusoe_usage.sse": Expect("complete", "stop", prompt=46, completion=14, cached=0),
}


def oracle(text: str) -> tuple[str, str]:
    """Choice-0 content and reasoning by the plainest possible reading of the file."""
    content, reasoning = [], []
    for line in text.splitlines():
        if not line.startswith("data: ") or line[6:].strip() == "[DONE]":
            continue
        obj = json.loads(line[6:])
        for ch in obj.get("choices") or []:
            if ch.get("index", 0) != 0:
                continue
            d = ch.get("delta") or {}
            content.append(d.get("content") or "")
            reasoning.append(d.get("reasoning_content") or d.get("reasoning") or "")
    return "".join(content), "".join(reasoning)


def openai_format_samples() -> list[str]:
    native = ("anthropic_", "google_", "openai_responses_")  # tests/test_native_samples.py
    return sorted(p.name for p in SAMPLES.glob("*.sse") if not p.name.startswith(native))


def test_every_openai_format_sample_has_expectations() -> None:
    assert openai_format_samples() == sorted(EXPECT)


@pytest.mark.parametrize("name", openai_format_samples())
async def test_sample_decodes(name: str, raw_server: RawServer) -> None:
    body = (SAMPLES / name).read_text(encoding="utf-8")
    raw_server.push(Script(chunks=sse_events(body)))
    events = await events_from(raw_server.base_url)
    exp = EXPECT[name]
    t = fold(events)
    m = compute_metrics(events)
    want_text, want_reasoning = oracle(body)

    assert t.text == want_text
    assert t.reasoning == want_reasoning
    assert m.status == exp.status
    assert t.finish_reason == exp.finish
    assert [(c.name, c.arguments) for c in t.tool_calls] == exp.tools
    if exp.error_has:
        assert t.error is not None and exp.error_has in t.error.message
        assert t.error.kind == "remote_error"
    else:
        assert t.error is None
    usage = [e for e in events if isinstance(e, Usage)]
    if exp.prompt is None:
        assert not usage
        assert m.output_tokens_estimated
    else:
        u = usage[-1]
        assert (u.prompt, u.completion) == (exp.prompt, exp.completion)
        assert m.input_tokens == exp.prompt
        assert not m.output_tokens_estimated
        if exp.reasoning_tokens is not None:
            assert u.reasoning == exp.reasoning_tokens
        if exp.cached is not None:
            assert u.cached == exp.cached
    if exp.cost is not None:
        assert m.cost_usd == pytest.approx(exp.cost) and m.cost_reported
    if exp.refusal_starts:
        assert t.refusal.startswith(exp.refusal_starts)


async def test_deepseek_reasoning_counts_all_streamed_tokens(raw_server: RawServer) -> None:
    """DeepSeek streams its reasoning, so its reasoning tokens count as decoded output."""
    raw_server.push(
        Script(chunks=sse_events((SAMPLES / "deepseek_reasoner_reasoning_content.sse").read_text()))
    )
    events = await events_from(raw_server.base_url)
    m = compute_metrics(events)
    assert m.output_tokens == 212
    assert m.reasoning_tokens == 198
    assert m.ttfo_ms is not None and m.ttft_ms is not None and m.ttfo_ms >= m.ttft_ms


async def test_llamacpp_timings_kept_apart(raw_server: RawServer) -> None:
    raw_server.push(
        Script(chunks=sse_events((SAMPLES / "llamacpp_server_timings_excerpt.sse").read_text()))
    )
    events = await events_from(raw_server.base_url)
    timings = [e for e in events if isinstance(e, ServerTimings)]
    assert len(timings) == 1
    values = dict(timings[0].values)
    assert values["predicted_n"] == 81
    assert values["predicted_per_second"] == pytest.approx(39.98892158764905)


def test_samples_dir_is_where_we_think() -> None:
    assert isinstance(SAMPLES, Path) and (SAMPLES / "SOURCES.md").exists()


def test_the_copy_matches_the_shared_recordings() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "sse-samples"
    if not shared.is_dir():
        pytest.skip("../shared is not next to this checkout")
    for p in shared.iterdir():
        assert (SAMPLES / p.name).read_bytes() == p.read_bytes(), p.name

"""The native protocols on the mock server: requests, thinking, and each failure of DESIGN §5.

The mock server frames the same scripted scenarios in each protocol (tests/support/
mock_protocols.py); the engine must turn every one into the same events, messages and status as
it does for chat completions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from providers.capabilities import ChatParams
from providers.config import parse_config
from providers.engine import ChatRequest, Engine, collect
from providers.events import Event, ReasoningDelta, TextDelta, Usage, fold
from providers.keys import KeyStore
from providers.metrics import compute_metrics
from tests.support.mock_server import MockServer

HELLO = ({"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"})
NATIVE = ("anthropic", "gemini", "responses")
KEY_HEADER = {"anthropic": "x-api-key", "gemini": "x-goog-api-key", "responses": "Authorization"}
PATH = {
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/{model}:streamGenerateContent",
    "responses": "/v1/responses",
}
LOREM = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do "

SCENARIOS: dict[str, dict[str, Any]] = {
    "plain": {"n_tokens": 10, "ttft_ms": 5, "itl_ms": 1, "prompt_tokens": 12},
    "cached": {"n_tokens": 4, "prompt_tokens": 100, "cached_tokens": 60},
    "thinking": {"n_reasoning_tokens": 5, "n_tokens": 5, "ttft_ms": 5, "itl_ms": 20},
    "long": {"n_tokens": 10, "finish_reason": "length"},
    "filtered": {"n_tokens": 2, "finish_reason": "content_filter"},
    "paused": {"n_tokens": 2, "finish_reason": "pause_turn"},
    "no-finish": {"n_tokens": 3, "end_after_tokens": 3},
    "s401": {"require_key": "sk-right-key-123456", "n_tokens": 3},
    "s403": {"status": 403, "error_body": {"error": {"message": "no access to this model"}}},
    "s429": {"status": 429, "error_body": {"error": {"message": "slow down"}}},
    "s500": {"status": 500, "error_body": {"error": {"message": "boom"}}},
    "drop": {"n_tokens": 10, "drop_after_tokens": 4},
    "error-event": {"n_tokens": 10, "error_event": True, "after_tokens": 3},
    "malformed": {"n_tokens": 10, "malformed_json": True, "after_tokens": 2},
}


@pytest.fixture
async def mock() -> AsyncIterator[MockServer]:
    async with MockServer(scenarios=SCENARIOS) as srv:
        yield srv


def base_url(srv: MockServer, protocol: str) -> str:
    return f"http://127.0.0.1:{srv.port}/v1beta" if protocol == "gemini" else srv.base_url


async def run(
    srv: MockServer,
    protocol: str,
    model: str,
    params: ChatParams | None = None,
    engine: dict[str, Any] | None = None,
    **endpoint: Any,
) -> list[Event]:
    cfg = parse_config(
        {
            "endpoints": {
                "nat": {"base_url": base_url(srv, protocol), "protocol": protocol, **endpoint}
            },
            "engine": {"retries": 0, **(engine or {})},
        }
    )
    eng = Engine(cfg, KeyStore(use_keyring=False))
    try:
        return await collect(eng, ChatRequest(f"nat/{model}", HELLO, params or ChatParams()))
    finally:
        await eng.aclose()


def request_of(srv: MockServer, protocol: str, model: str) -> dict[str, Any]:
    path = PATH[protocol].format(model=model)
    (rec,) = [r for r in srv.log() if r["path"] == path and r["model"] == model]
    return rec


@pytest.mark.parametrize("protocol", NATIVE)
async def test_a_plain_reply(mock: MockServer, protocol: str) -> None:
    events = await run(mock, protocol, "plain", api_key_env="NATIVE_TEST_KEY")
    t, m = fold(events), compute_metrics(events)
    assert t.text == LOREM and t.reasoning == "" and t.error is None
    assert (m.status, t.finish_reason) == ("complete", "stop")
    usage = [e for e in events if isinstance(e, Usage)][-1]
    assert (usage.prompt, usage.completion) == (12, 10)
    assert not m.output_tokens_estimated and m.output_tokens == 10
    assert m.prefill_tps is not None and m.ttft_ms is not None
    assert m.prefill_tps == pytest.approx(12 / (m.ttft_ms / 1000))
    rec = request_of(mock, protocol, "plain")
    body = rec["body"]
    if protocol == "anthropic":
        assert rec["headers"]["anthropic-version"] == "2023-06-01"
        assert body["max_tokens"] == 4096  # required: the config default when none is set
        assert body["system"] == "be brief" and body["messages"] == [HELLO[1]]
        assert "thinking" not in body  # off unless asked
    elif protocol == "gemini":
        assert body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
        assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
        assert "generationConfig" not in body
    else:
        assert body["stream"] is True and body["store"] is False
        assert body["input"] == list(HELLO) and "reasoning" not in body


@pytest.mark.parametrize("protocol", NATIVE)
async def test_parameters_in_each_protocols_words(mock: MockServer, protocol: str) -> None:
    params = ChatParams(temperature=1.5, max_tokens=300, json_mode=True)
    events = await run(mock, protocol, "plain", params)
    body = request_of(mock, protocol, "plain")["body"]
    notices = fold(events).notices
    if protocol == "anthropic":
        assert body["max_tokens"] == 300
        assert body["temperature"] == 1.0  # Anthropic's range is 0–1
        assert any("0–1" in n for n in notices)
    elif protocol == "gemini":
        assert body["generationConfig"] == {
            "temperature": 1.5,
            "maxOutputTokens": 300,
            "responseMimeType": "application/json",
        }
    else:
        assert body["max_output_tokens"] == 300 and body["temperature"] == 1.5
        assert body["text"] == {"format": {"type": "json_object"}}


async def test_anthropic_max_tokens_default_comes_from_config(mock: MockServer) -> None:
    await run(mock, "anthropic", "plain", engine={"max_tokens": 777})
    assert request_of(mock, "anthropic", "plain")["body"]["max_tokens"] == 777


@pytest.mark.alone  # timed against the server's clock (tests/conftest.py)
@pytest.mark.parametrize("protocol", NATIVE)
async def test_thinking_streams_only_when_asked_and_counts_toward_ttft(
    mock: MockServer, protocol: str
) -> None:
    events = await run(mock, protocol, "thinking", thinking=True)
    body = request_of(mock, protocol, "thinking")["body"]
    if protocol == "anthropic":
        assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    elif protocol == "gemini":
        assert body["generationConfig"]["thinkingConfig"] == {"includeThoughts": True}
    else:
        assert body["reasoning"] == {"summary": "auto"}
    t, m = fold(events), compute_metrics(events)
    assert t.reasoning == "lorem ipsum dolor sit amet " and t.text == "lorem ipsum dolor sit amet "
    first = next(e for e in events if isinstance(e, (ReasoningDelta, TextDelta)))
    assert isinstance(first, ReasoningDelta)
    # TTFT is the first thinking token; TTFO the first answer token, 5 tokens × 20 ms later
    # by the server's clock (a generous margin: client and server share a busy machine).
    sends = request_of(mock, protocol, "thinking")["sends"]
    first_reasoning = next(s["t_ns"] for s in sends if s["kind"] == "reasoning")
    first_text = next(s["t_ns"] for s in sends if s["kind"] == "token")
    assert m.ttft_ms is not None and m.ttfo_ms is not None
    assert m.ttfo_ms - m.ttft_ms == pytest.approx((first_text - first_reasoning) / 1e6, abs=15)
    assert m.ttfo_ms - m.ttft_ms > 60
    # Anthropic's output_tokens include the thinking and it reports no split.
    assert m.reasoning_tokens == (None if protocol == "anthropic" else 5)
    assert m.output_tokens == 10


@pytest.mark.parametrize("protocol", NATIVE)
async def test_cached_tokens_are_mapped(mock: MockServer, protocol: str) -> None:
    events = await run(mock, protocol, "cached")
    m = compute_metrics(events)
    assert (m.input_tokens, m.cached_tokens, m.output_tokens) == (100, 60, 4)


@pytest.mark.parametrize("protocol", NATIVE)
async def test_max_tokens_finish_is_length(mock: MockServer, protocol: str) -> None:
    events = await run(mock, protocol, "long")
    assert compute_metrics(events).status == "length"
    assert fold(events).finish_reason == "length"


@pytest.mark.parametrize("protocol", NATIVE)
async def test_a_filtered_reply_is_filtered(mock: MockServer, protocol: str) -> None:
    """Anthropic stop_reason refusal, Gemini SAFETY, Responses incomplete content_filter."""
    events = await run(mock, protocol, "filtered")
    assert compute_metrics(events).status == "filtered"
    assert fold(events).text == "lorem ipsum "


async def test_anthropic_pause_turn_is_complete_with_a_notice(mock: MockServer) -> None:
    events = await run(mock, "anthropic", "paused")
    t = fold(events)
    assert compute_metrics(events).status == "complete" and t.finish_reason == "pause_turn"
    assert any("pause_turn" in n for n in t.notices)


@pytest.mark.parametrize("protocol", NATIVE)
async def test_a_stream_that_ends_without_finishing_is_interrupted(
    mock: MockServer, protocol: str
) -> None:
    events = await run(mock, protocol, "no-finish")
    t = fold(events)
    assert compute_metrics(events).status == "interrupted"
    assert t.text == "lorem ipsum dolor "


@pytest.mark.parametrize("protocol", NATIVE)
async def test_401_names_the_protocols_key_header(
    mock: MockServer, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NATIVE_TEST_KEY", "sk-wrong-key-987654")
    events = await run(mock, protocol, "s401", api_key_env="NATIVE_TEST_KEY")
    t = fold(events)
    assert t.error is not None and t.error.kind == "auth" and t.error.status == 401
    assert KEY_HEADER[protocol] in t.error.message
    assert "NATIVE_TEST_KEY" in t.error.message and "tokenrace keys set nat" in t.error.message
    headers = request_of(mock, protocol, "s401")["headers"]
    if protocol == "responses":
        assert headers["authorization"] == "Bearer sk-wrong-key-987654"
    else:
        assert headers[KEY_HEADER[protocol].lower()] == "sk-wrong-key-987654"
        assert "authorization" not in headers  # the key goes only where the protocol wants it


@pytest.mark.parametrize("protocol", NATIVE)
@pytest.mark.parametrize(
    ("model", "kind", "needle"),
    [
        ("s403", "auth", "refused access (403)"),
        ("s429", "rate_limit", "slow down"),
        ("s500", "server", "boom"),
    ],
)
async def test_http_failures(
    mock: MockServer, protocol: str, model: str, kind: str, needle: str
) -> None:
    events = await run(mock, protocol, model)
    t = fold(events)
    assert t.error is not None and t.error.kind == kind and needle in t.error.message
    if kind == "auth":
        assert KEY_HEADER[protocol] in t.error.message


@pytest.mark.parametrize("protocol", NATIVE)
async def test_404_lists_the_endpoints_models(mock: MockServer, protocol: str) -> None:
    events = await run(mock, protocol, "no-such-model")
    t = fold(events)
    assert t.error is not None and t.error.kind == "not_found"
    assert "'no-such-model'" in t.error.message
    assert "it serves: cached, drop, error-event," in t.error.message


@pytest.mark.parametrize("protocol", NATIVE)
@pytest.mark.parametrize(
    ("model", "kind", "kept", "needle"),
    [
        ("drop", "interrupted", "lorem ipsum dolor sit ", "dropped mid-reply"),
        ("error-event", "remote_error", "lorem ipsum dolor ", "mock"),
        ("malformed", "malformed", "lorem ipsum ", "not valid JSON"),
    ],
)
async def test_mid_stream_failures_keep_the_text(
    mock: MockServer, protocol: str, model: str, kind: str, kept: str, needle: str
) -> None:
    events = await run(mock, protocol, model)
    t = fold(events)
    assert t.text == kept
    assert t.error is not None and t.error.kind == kind and needle in t.error.message
    assert "nat" in t.error.message


@pytest.mark.parametrize("protocol", ["anthropic", "gemini", "responses"])
async def test_model_listing_and_key_validation(protocol: str) -> None:
    """The picker, `tokenrace models` and `keys set` list models in each protocol's shape."""
    from providers.config import Endpoint
    from providers.discovery import list_models, validate_key

    async with MockServer(scenarios=SCENARIOS, require_key="sk-good-key-123456") as srv:
        ep = Endpoint(name="nat", base_url=base_url(srv, protocol), protocol=protocol)
        ok = await validate_key(ep, "sk-good-key-123456", timeout_s=5)
        bad = await list_models(ep, "sk-bad-key-654321", timeout_s=5)
        sent = [r["headers"] for r in srv.log()]
    assert ok.outcome == "ok", ok.message
    assert {"plain", "thinking", "mock-fast"} <= set(ok.models)
    assert bad.outcome == "auth" and "HTTP 401" in bad.message
    assert "sk-bad-key-654321" not in bad.message
    if protocol == "anthropic":
        assert sent[0]["x-api-key"] == "sk-good-key-123456"
        assert sent[0]["anthropic-version"] == "2023-06-01"
    elif protocol == "gemini":
        assert sent[0]["x-goog-api-key"] == "sk-good-key-123456"
    if protocol != "responses":
        assert all("authorization" not in h for h in sent)


async def test_gemini_listing_reads_models_names_and_pages(raw_server: Any) -> None:
    """Gemini answers {"models":[{"name":"models/…"}]} in pages; embedders cannot chat."""
    import json as _json

    from providers.config import Endpoint
    from providers.discovery import list_models
    from tests.support.raw_server import Script

    def page(models: list[dict[str, Any]], token: str | None) -> Script:
        body: dict[str, Any] = {"models": models}
        if token:
            body["nextPageToken"] = token
        return Script(
            chunks=[_json.dumps(body).encode()],
            headers={"Content-Type": "application/json"},
            chunked=False,
        )

    chat = ["generateContent", "countTokens"]
    raw_server.push(
        page(
            [
                {"name": "models/gemini-2.5-pro", "supportedGenerationMethods": chat},
                {
                    "name": "models/text-embedding-004",
                    "supportedGenerationMethods": ["embedContent"],
                },
            ],
            "tok-2",
        )
    )
    raw_server.push(
        page([{"name": "models/gemini-2.5-flash", "supportedGenerationMethods": chat}], None)
    )
    ep = Endpoint(name="g", base_url=raw_server.base_url, protocol="gemini")
    listing = await list_models(ep, "AIza-test-key-000000", timeout_s=5)
    assert listing.outcome == "ok", listing.message
    assert listing.models == ("gemini-2.5-flash", "gemini-2.5-pro")
    assert raw_server.requests[1].path.endswith("pageToken=tok-2")
    assert raw_server.requests[0].headers["x-goog-api-key"] == "AIza-test-key-000000"


def test_presets_and_the_protocol_field(tmp_path: Any) -> None:
    from providers.config import ConfigError, load_config, presets

    p = presets({})
    assert (p["anthropic"].protocol, p["anthropic"].base_url) == (
        "anthropic",
        "https://api.anthropic.com/v1",
    )
    assert (p["gemini"].protocol, p["gemini"].base_url) == (
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta",
    )
    assert (p["anthropic-openai"].protocol, p["anthropic-openai"].api_key_env) == (
        "chat",
        "ANTHROPIC_API_KEY",
    )
    assert p["gemini-openai"].base_url.endswith("/v1beta/openai")
    assert p["gemini-openai"].protocol == "chat" and p["openai"].protocol == "chat"
    cfg = parse_config(
        {
            "endpoints": {
                "mine": {"base_url": "https://gw.example/v1"},
                "resp": {"base_url": "https://gw.example/v1", "protocol": "responses"},
                "anthropic": {"timeouts": {"idle": 5}},
            }
        }
    )
    assert cfg.endpoints["mine"].protocol == "chat"  # user endpoints speak chat by default
    assert cfg.endpoints["resp"].protocol == "responses"
    assert cfg.endpoints["anthropic"].protocol == "anthropic"  # a tweaked preset keeps its own
    bad = tmp_path / "config.toml"
    bad.write_text('[endpoints.x]\nbase_url = "https://x.example/v1"\nprotocol = "soap"\n')
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "endpoints.x.protocol" in str(info.value) and ":3:" in str(info.value)
    assert "soap" in str(info.value) and "anthropic" in str(info.value)


def test_endpoints_add_protocol(tmp_path: Any) -> None:
    from providers.config import load_config
    from tui.headless.endpoints import main

    path = tmp_path / "config.toml"
    path.write_text("# mine\n")
    import os

    old = os.environ.get("TOKENRACE_CONFIG")
    os.environ["TOKENRACE_CONFIG"] = str(path)
    try:
        args = ["add", "claude", "--base-url", "https://api.anthropic.com/v1"]
        assert main([*args, "--protocol", "anthropic"]) == 0
    finally:
        if old is None:
            os.environ.pop("TOKENRACE_CONFIG", None)
        else:
            os.environ["TOKENRACE_CONFIG"] = old
    assert 'protocol = "anthropic"' in path.read_text() and "# mine" in path.read_text()
    assert load_config(path).endpoints["claude"].protocol == "anthropic"


def test_cost_bills_cache_reads_and_writes_apart() -> None:
    """DESIGN §4: (prompt − cached − written) × input + cached × cached + written × write."""
    from providers.events import Finished, RequestSent, TextDelta
    from providers.prices import Price, model_info

    price = Price(input=3.0, output=15.0, cached_input=0.3, cache_write_input=3.75)
    events: list[Event] = [
        RequestSent(t_ns=0),
        TextDelta(t_ns=1_000_000, text="a"),
        Usage(t_ns=2_000_000, prompt=1049, completion=100, cached=0, cache_write=1031),
        Finished(t_ns=3_000_000, reason="stop"),
    ]
    m = compute_metrics(events, price=price)
    want = (18 * 3.0 + 1031 * 3.75 + 100 * 15.0) / 1e6
    assert m.cost_usd == pytest.approx(want) and m.cache_write_tokens == 1031
    assert m.prefill_tps == pytest.approx(1049 / 0.001)
    # The built-in Anthropic rows bill writes at 1.25 × input; the -openai presets share prices.
    native = model_info("anthropic/claude-sonnet-4-5")
    compat = model_info("anthropic-openai/claude-sonnet-4-5")
    assert native.price is not None and native.price.cache_write_input is not None
    assert native.price.cache_write_input == pytest.approx(native.price.input * 1.25)
    assert compat.price == native.price


@pytest.mark.parametrize("protocol", ["anthropic", "gemini"])
def test_tokenrace_models_lists_a_native_endpoint(
    protocol: str, isolated_home: Any, mock_server: Any
) -> None:
    """`tokenrace models` (and so the picker, which runs it) lists native endpoints' models."""
    import json as _json

    from tests.support.cli import run_cli

    url = mock_server.base_url.removesuffix("/v1") + ("/v1beta" if protocol == "gemini" else "/v1")
    (isolated_home / "config.toml").write_text(
        f'[endpoints.nat]\nbase_url = "{url}"\nprotocol = "{protocol}"\n'
    )
    r = run_cli("models", "nat", "--json", "--all")
    assert r.returncode == 0, r.stderr
    (report,) = _json.loads(r.stdout)
    listed = {m["model"] for m in report["models"]}
    assert {"nat/mock-fast", "nat/mock-reasoning"} <= listed


@pytest.mark.parametrize(
    ("protocol", "field"), [("anthropic", "thinking"), ("responses", "reasoning")]
)
async def test_a_rejected_thinking_field_is_dropped_once_and_remembered(
    protocol: str, field: str
) -> None:
    """A model that cannot think rejects the field: retried without it, said, remembered."""
    scenarios = {"no-think": {"n_tokens": 3, "reject_fields": [field]}}
    async with MockServer(scenarios=scenarios) as srv:
        events = await run(srv, protocol, "no-think", thinking=True)
        t = fold(events)
        bodies = [r["body"] for r in srv.log() if r["model"] == "no-think"]
    assert t.text == "lorem ipsum dolor " and t.error is None
    assert [field in b for b in bodies] == [True, False]
    assert any(f"rejected the {field!r} field" in n for n in t.notices)

"""Each failure of DESIGN §5 over a real loopback socket: status, specific message, text kept."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from providers import engine as engine_mod
from providers.capabilities import ChatParams
from providers.config import parse_config
from providers.engine import ChatRequest, Engine, collect
from providers.events import Event, Notice, Retrying, StreamError, fold
from providers.failures import parse_retry_after
from providers.keys import KeyStore
from providers.metrics import compute_metrics
from tests.support.raw_server import RawServer, Script

HELLO = ({"role": "user", "content": "hi"},)


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> bytes:
    d: dict[str, Any] = dict(delta)
    if content is not None:
        d["content"] = content
    obj = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": d, "finish_reason": finish}],
    }
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


DONE = b"data: [DONE]\n\n"
SSE = {"Content-Type": "text/event-stream"}
JSON_CT = {"Content-Type": "application/json"}


def error_body(
    message: str, code: str | None = None, type_: str = "invalid_request_error"
) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "code": code}}).encode()


def make_engine(url: str, **endpoint: Any) -> Engine:
    engine_cfg = endpoint.pop("engine", {})
    cfg = parse_config({"endpoints": {"srv": {"base_url": url, **endpoint}}, "engine": engine_cfg})
    return Engine(cfg, KeyStore(use_keyring=False))


async def run(url: str, params: ChatParams | None = None, **endpoint: Any) -> list[Event]:
    eng = make_engine(url, **endpoint)
    try:
        return await collect(eng, ChatRequest("srv/m", HELLO, params or ChatParams()))
    finally:
        await eng.aclose()


def error_of(events: list[Event]) -> StreamError:
    err = fold(events).error
    assert err is not None, events
    return err


async def test_401_names_endpoint_and_fix(raw_server: RawServer) -> None:
    raw_server.push(
        Script(
            status=401,
            headers=JSON_CT,
            chunked=False,
            chunks=[error_body("Incorrect API key provided", "invalid_api_key")],
        )
    )
    events = await run(raw_server.base_url, api_key_env="SRV_KEY")
    err = error_of(events)
    assert err.kind == "auth" and err.status == 401
    assert "srv rejected the API key" in err.message
    assert "Incorrect API key provided" in err.message
    assert "SRV_KEY" in err.message and "tokenrace keys set srv" in err.message
    assert compute_metrics(events).status == "error"
    assert len(raw_server.requests) == 1  # never retried


async def test_403(raw_server: RawServer) -> None:
    raw_server.push(
        Script(
            status=403,
            headers=JSON_CT,
            chunked=False,
            chunks=[error_body("Project does not have access to model")],
        )
    )
    err = error_of(await run(raw_server.base_url))
    assert err.kind == "auth" and "refused access (403)" in err.message


async def test_404_lists_the_endpoints_models(raw_server: RawServer) -> None:
    raw_server.push(
        Script(
            status=404,
            headers=JSON_CT,
            chunked=False,
            chunks=[error_body("The model 'm' does not exist", "model_not_found")],
        )
    )
    models = {"object": "list", "data": [{"id": "alpha"}, {"id": "beta"}]}
    raw_server.push(Script(headers=JSON_CT, chunked=False, chunks=[json.dumps(models).encode()]))
    err = error_of(await run(raw_server.base_url))
    assert err.kind == "not_found"
    assert "srv has no model 'm'" in err.message
    assert "alpha, beta" in err.message


@pytest.mark.parametrize(
    "headers",
    [{"Retry-After": "0.2"}, {"retry-after-ms": "200"}],
    ids=["seconds", "ms"],
)
async def test_429_retries_after_the_servers_wait(
    raw_server: RawServer, headers: dict[str, str]
) -> None:
    raw_server.push(
        Script(
            status=429,
            headers={**JSON_CT, **headers},
            chunked=False,
            chunks=[error_body("Rate limit reached", "rate_limit_exceeded")],
        )
    )
    raw_server.push(
        Script(headers=SSE, chunks=[chunk("hi"), chunk(" there"), chunk(finish="stop"), DONE])
    )
    events = await run(raw_server.base_url)
    retries = [e for e in events if isinstance(e, Retrying)]
    assert len(retries) == 1 and retries[0].delay_s == pytest.approx(0.2)
    assert retries[0].kind == "rate_limit"
    m = compute_metrics(events)
    assert m.status == "complete" and fold(events).text == "hi there"
    assert m.retries == 1 and m.retry_wait_ms >= 195
    assert m.ttft_ms is not None and m.ttft_ms < 100  # the wait is not in TTFT


def test_retry_after_http_date() -> None:
    now = time.time()
    h = httpx.Headers({"Retry-After": formatdate(now + 30, usegmt=True)})
    assert parse_retry_after(h, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(httpx.Headers({"Retry-After": "garbage"})) is None


async def test_429_with_http_date_retry_after(raw_server: RawServer) -> None:
    raw_server.push(
        Script(
            status=429,
            chunked=False,
            chunks=[error_body("slow down")],
            headers={**JSON_CT, "Retry-After": formatdate(time.time() + 1, usegmt=True)},
        )
    )
    raw_server.push(Script(headers=SSE, chunks=[chunk("ok"), chunk(finish="stop"), DONE]))
    events = await run(raw_server.base_url)
    retry = next(e for e in events if isinstance(e, Retrying))
    assert 0 <= retry.delay_s <= 1.5
    assert compute_metrics(events).status == "complete"


async def test_429_with_a_very_long_retry_after_fails_at_once(raw_server: RawServer) -> None:
    raw_server.push(
        Script(
            status=429,
            headers={**JSON_CT, "Retry-After": "3600"},
            chunked=False,
            chunks=[error_body("Rate limit reached")],
        )
    )
    t = time.monotonic()
    events = await run(raw_server.base_url)
    assert time.monotonic() - t < 2
    err = error_of(events)
    assert err.kind == "rate_limit" and "60 min" in err.message and "max_retry_wait" in err.message
    assert not any(isinstance(e, Retrying) for e in events)


async def test_429_insufficient_quota_is_never_retried(raw_server: RawServer) -> None:
    raw_server.push(
        Script(
            status=429,
            headers={**JSON_CT, "Retry-After": "1"},
            chunked=False,
            chunks=[error_body("You exceeded your current quota", "insufficient_quota")],
        )
    )
    events = await run(raw_server.base_url)
    err = error_of(events)
    assert err.kind == "quota" and "retrying will not help" in err.message
    assert len(raw_server.requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_before_first_token_is_retried(raw_server: RawServer, status: int) -> None:
    raw_server.push(
        Script(
            status=status,
            headers=JSON_CT,
            chunked=False,
            chunks=[error_body("upstream failure", type_="server_error")],
        )
    )
    raw_server.push(Script(headers=SSE, chunks=[chunk("fine"), chunk(finish="stop"), DONE]))
    events = await run(raw_server.base_url)
    assert [e.kind for e in events if isinstance(e, Retrying)] == ["server"]
    assert fold(events).text == "fine" and compute_metrics(events).status == "complete"


async def test_5xx_gives_up_after_the_configured_retries(raw_server: RawServer) -> None:
    for _ in range(3):
        raw_server.push(
            Script(status=503, headers=JSON_CT, chunked=False, chunks=[error_body("overloaded")])
        )
    events = await run(raw_server.base_url, engine={"retries": 2})
    err = error_of(events)
    assert err.kind == "server" and "HTTP 503" in err.message
    assert len(raw_server.requests) == 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_refused_loopback_says_local_server_is_down() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    t = time.monotonic()
    events = await run(url)
    assert time.monotonic() - t < 2
    err = error_of(events)
    assert err.kind == "connect"
    assert "nothing is listening" in err.message and "server running" in err.message
    assert not any(isinstance(e, Retrying) for e in events)


async def test_refused_remote_host_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    # A remote-looking endpoint: the classifier says "not loopback" for this host.
    from providers import config as config_mod

    monkeypatch.setattr(config_mod, "is_loopback_host", lambda host: False)
    url = f"http://127.0.0.1:{free_port()}/v1"
    events = await run(url, engine={"retries": 1})
    retries = [e for e in events if isinstance(e, Retrying)]
    assert len(retries) == 1 and retries[0].kind == "connect"
    assert "cannot connect to srv" in error_of(events).message


async def test_dropped_mid_stream_keeps_text(raw_server: RawServer) -> None:
    raw_server.push(Script(headers=SSE, chunks=[chunk("partial "), chunk("text")], ending="abort"))
    events = await run(raw_server.base_url)
    assert fold(events).text == "partial text"
    err = error_of(events)
    assert err.kind == "interrupted" and "dropped mid-reply" in err.message
    assert compute_metrics(events).status == "interrupted"
    assert len(raw_server.requests) == 1  # never retried after the first token


async def test_end_without_done_or_finish_is_interrupted(raw_server: RawServer) -> None:
    raw_server.push(Script(headers=SSE, chunks=[chunk("abc")]))
    events = await run(raw_server.base_url)
    assert fold(events).text == "abc"
    err = error_of(events)
    assert err.kind == "interrupted" and "without a finish reason or [DONE]" in err.message


async def test_finish_reason_without_done_is_complete(raw_server: RawServer) -> None:
    raw_server.push(Script(headers=SSE, chunks=[chunk("abc"), chunk(finish="stop")]))
    events = await run(raw_server.base_url)
    assert compute_metrics(events).status == "complete"


async def test_silent_past_first_token_timeout(raw_server: RawServer) -> None:
    raw_server.push(Script(headers=SSE, chunks=[chunk(role="assistant")], ending="hold"))
    t = time.monotonic()
    events = await run(raw_server.base_url, timeouts={"first_token": 0.3}, engine={"retries": 0})
    assert 0.25 < time.monotonic() - t < 2
    err = error_of(events)
    assert err.kind == "timeout_first_token" and "first-token timeout" in err.message


async def test_silent_before_headers_hits_first_token_timeout(raw_server: RawServer) -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(3600)

    server = await asyncio.start_server(never, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        t = time.monotonic()
        events = await run(f"http://127.0.0.1:{port}/v1", timeouts={"first_token": 0.3})
        assert time.monotonic() - t < 2
        assert error_of(events).kind == "timeout_first_token"
    finally:
        server.close()


async def test_silent_past_idle_timeout_keeps_text(raw_server: RawServer) -> None:
    raw_server.push(Script(headers=SSE, chunks=[chunk("so far")], ending="hold"))
    events = await run(raw_server.base_url, timeouts={"idle": 0.3})
    assert fold(events).text == "so far"
    err = error_of(events)
    assert err.kind == "timeout_idle" and "idle timeout" in err.message


async def test_keepalive_comments_do_not_reset_idle_clock(raw_server: RawServer) -> None:
    comments = [b": keep-alive\n\n"] * 20
    raw_server.push(
        Script(
            headers=SSE, chunks=[chunk("x"), *comments], delays_s=[0, *[0.05] * 20], ending="hold"
        )
    )
    t = time.monotonic()
    events = await run(raw_server.base_url, timeouts={"idle": 0.4})
    assert time.monotonic() - t < 0.9  # comments kept arriving for 1 s, yet it timed out
    assert error_of(events).kind == "timeout_idle"


async def test_only_keepalive_comments_hit_first_token_timeout(raw_server: RawServer) -> None:
    comments = [b": OPENROUTER PROCESSING\n\n"] * 40
    raw_server.push(Script(headers=SSE, chunks=comments, delays_s=[0.05] * 40, ending="hold"))
    events = await run(raw_server.base_url, timeouts={"first_token": 0.4}, engine={"retries": 0})
    assert error_of(events).kind == "timeout_first_token"


async def test_event_error(raw_server: RawServer) -> None:
    err_ev = (
        b'event: error\ndata: {"error":{"message":"Upstream overloaded",'
        b'"type":"server_error","code":"overloaded"}}\n\n'
    )
    raw_server.push(Script(headers=SSE, chunks=[chunk("kept"), err_ev]))
    events = await run(raw_server.base_url)
    assert fold(events).text == "kept"
    err = error_of(events)
    assert err.kind == "remote_error" and "Upstream overloaded" in err.message
    assert "srv" in err.message


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b'data: {"error":{"message":"nested failure","code":500}}\n\n', "nested failure"),
        (
            b'data: {"object":"error","message":"flat failure","type":"InternalServerError",'
            b'"code":500}\n\n',
            "flat failure",
        ),
    ],
    ids=["nested", "flat"],
)
async def test_error_json_mid_stream(raw_server: RawServer, payload: bytes, needle: str) -> None:
    raw_server.push(Script(headers=SSE, chunks=[chunk("kept"), payload, DONE]))
    events = await run(raw_server.base_url)
    assert fold(events).text == "kept"
    err = error_of(events)
    assert err.kind == "remote_error" and needle in err.message


async def test_malformed_json_names_the_endpoint(raw_server: RawServer) -> None:
    raw_server.push(
        Script(
            headers=SSE,
            chunks=[
                chunk("kept"),
                b'data: {"choices":[{"delta":{"content":"oo\n\n',
                chunk("after"),
            ],
        )
    )
    events = await run(raw_server.base_url)
    assert fold(events).text == "kept"
    err = error_of(events)
    assert err.kind == "malformed" and "srv sent an event that is not valid JSON" in err.message


async def test_event_over_the_cap(raw_server: RawServer) -> None:
    big = b"data: " + b"x" * 5000
    raw_server.push(Script(headers=SSE, chunks=[chunk("kept"), big, big, b"\n\n"]))
    events = await run(raw_server.base_url, engine={"max_event_bytes": 4096})
    assert fold(events).text == "kept"
    err = error_of(events)
    assert err.kind == "too_large" and "4,096" in err.message


@pytest.mark.parametrize(
    ("reason", "status"), [("length", "length"), ("content_filter", "filtered")]
)
async def test_finish_reasons(raw_server: RawServer, reason: str, status: str) -> None:
    raw_server.push(Script(headers=SSE, chunks=[chunk("cut"), chunk(finish=reason), DONE]))
    events = await run(raw_server.base_url)
    assert compute_metrics(events).status == status
    assert fold(events).finish_reason == reason


async def test_200_with_json_error_body(raw_server: RawServer) -> None:
    raw_server.push(
        Script(
            headers=JSON_CT,
            chunked=False,
            chunks=[error_body("Streaming is not enabled for this key")],
        )
    )
    err = error_of(await run(raw_server.base_url))
    assert err.kind == "not_sse" and "instead of an event stream" in err.message
    assert "Streaming is not enabled" in err.message


async def test_200_with_html_body(raw_server: RawServer) -> None:
    raw_server.push(
        Script(
            headers={"Content-Type": "text/html"},
            chunked=False,
            chunks=[b"<html><body><h1>502 Bad Gateway</h1></body></html>"],
        )
    )
    err = error_of(await run(raw_server.base_url))
    assert err.kind == "not_sse" and "text/html" in err.message and "502 Bad Gateway" in err.message


async def test_200_with_a_whole_completion_is_accepted(raw_server: RawServer) -> None:
    body = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "whole"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    raw_server.push(Script(headers=JSON_CT, chunked=False, chunks=[json.dumps(body).encode()]))
    events = await run(raw_server.base_url)
    assert fold(events).text == "whole"
    assert compute_metrics(events).status == "complete"
    assert any(isinstance(e, Notice) and "without streaming" in e.message for e in events)


async def test_invalid_utf8_becomes_replacement_and_is_counted(raw_server: RawServer) -> None:
    bad = b'data: {"choices":[{"index":0,"delta":{"content":"a\xff\xfeb"}}]}\n\n'
    raw_server.push(Script(headers=SSE, chunks=[bad, chunk(finish="stop"), DONE]))
    events = await run(raw_server.base_url)
    assert fold(events).text == "a\ufffd\ufffdb"
    assert any(isinstance(e, Notice) and "2 bytes" in e.message for e in events)


async def test_multibyte_character_split_across_reads(raw_server: RawServer) -> None:
    payload = chunk("héllo 你好 🎉")
    cut = payload.index("🎉".encode()) + 2  # in the middle of the emoji
    raw_server.push(
        Script(
            headers=SSE,
            chunks=[payload[:cut], payload[cut:], chunk(finish="stop"), DONE],
            delays_s=[0, 0.02, 0, 0],
        )
    )
    events = await run(raw_server.base_url)
    assert fold(events).text == "héllo 你好 🎉"


async def test_slow_drip_one_byte_at_a_time(raw_server: RawServer) -> None:
    body = chunk("drip") + chunk(" drop") + chunk(finish="stop") + DONE
    raw_server.push(Script(headers=SSE, chunks=[body[i : i + 1] for i in range(len(body))]))
    events = await run(raw_server.base_url)
    assert fold(events).text == "drip drop"
    assert compute_metrics(events).status == "complete"


async def test_server_rejecting_stream_options_is_retried_without_it(raw_server: RawServer) -> None:
    reject = error_body("Unrecognized request argument supplied: stream_options")
    raw_server.push(Script(status=400, headers=JSON_CT, chunked=False, chunks=[reject]))
    raw_server.push(Script(headers=SSE, chunks=[chunk("ok"), chunk(finish="stop"), DONE]))
    raw_server.push(Script(headers=SSE, chunks=[chunk("again"), chunk(finish="stop"), DONE]))
    eng = make_engine(raw_server.base_url)
    try:
        events = await collect(eng, ChatRequest("srv/m", HELLO))
        assert fold(events).text == "ok"
        assert any(isinstance(e, Notice) and "stream_options" in e.message for e in events)
        assert "stream_options" in raw_server.requests[0].json()
        assert "stream_options" not in raw_server.requests[1].json()
        # Remembered: the next request leaves it out from the start.
        events2 = await collect(eng, ChatRequest("srv/m", HELLO))
        assert fold(events2).text == "again"
        assert "stream_options" not in raw_server.requests[2].json()
    finally:
        await eng.aclose()


async def test_other_400_is_a_specific_error(raw_server: RawServer) -> None:
    raw_server.push(
        Script(
            status=400,
            headers=JSON_CT,
            chunked=False,
            chunks=[error_body("messages: too long for context window")],
        )
    )
    err = error_of(await run(raw_server.base_url))
    assert err.kind == "bad_request" and "too long for context window" in err.message
    assert len(raw_server.requests) == 1


async def test_cancel_keeps_partial_text(raw_server: RawServer) -> None:
    raw_server.push(Script(headers=SSE, chunks=[chunk("part")], ending="hold"))
    eng = make_engine(raw_server.base_url)
    got: list[Event] = []

    async def consume() -> None:
        async for ev in eng.stream(ChatRequest("srv/m", HELLO)):
            got.append(ev)

    task = asyncio.create_task(consume())
    for _ in range(100):
        await asyncio.sleep(0.01)
        if fold(got).text:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eng.aclose()
    assert fold(got).text == "part"


async def test_unknown_endpoint_is_a_config_error() -> None:
    eng = make_engine("http://127.0.0.1:9/v1")
    events = await collect(eng, ChatRequest("nope/m", HELLO))
    err = error_of(events)
    assert err.kind == "config" and "unknown endpoint 'nope'" in err.message


async def test_missing_key_for_a_cloud_preset() -> None:
    cfg = parse_config({})
    eng = Engine(cfg, KeyStore(use_keyring=False, environ={}))
    events = await collect(eng, ChatRequest("openai/gpt-4o-mini", HELLO))
    err = error_of(events)
    assert err.kind == "auth" and "OPENAI_API_KEY" in err.message
    assert "tokenrace keys set openai" in err.message


def test_engine_module_exports() -> None:
    assert engine_mod.StartGate is not None


async def test_event_over_the_cap_in_a_single_read(raw_server: RawServer) -> None:
    big = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"x" * 9000 + b'"}}]}\n\n'
    raw_server.push(Script(headers=SSE, chunks=[chunk("kept") + big + chunk("after") + DONE]))
    events = await run(raw_server.base_url, engine={"max_event_bytes": 4096})
    assert fold(events).text == "kept"
    assert error_of(events).kind == "too_large"


# --- the mapping on its own (providers.failures): no socket needed ---------------------------


async def test_the_failure_mapping_asks_for_the_models_only_on_a_404() -> None:
    from providers.failures import http_failure, transport_failure

    ep = parse_config({"endpoints": {"x": {"base_url": "http://127.0.0.1:9/v1"}}}).endpoints["x"]
    asked: list[int] = []

    async def served() -> list[str]:
        asked.append(1)
        return ["m-a", "m-b"]

    body = json.dumps({"error": {"message": "nope", "code": "c1"}})
    hdrs = httpx.Headers({"retry-after": "7"})
    gone = await http_failure(ep, "m-z", 404, hdrs, body, {}, served)
    assert gone.error.kind == "not_found" and "it serves: m-a, m-b" in gone.error.message
    assert asked == [1]
    busy = await http_failure(ep, "m-z", 429, hdrs, body, {}, served)
    assert (busy.error.kind, busy.retryable, busy.error.retry_after_s) == ("rate_limit", True, 7.0)
    assert asked == [1]
    # A drop before the whole request left is worth another try; a timeout after it is not.
    unsent = transport_failure(ep, httpx.ReadTimeout("slow"), sent=False)
    late = transport_failure(ep, httpx.ReadTimeout("slow"), sent=True)
    assert (unsent.error.kind, unsent.retryable) == ("server", True)
    assert (late.error.kind, late.retryable) == ("connect", False)


async def test_warming_up_asks_for_the_models_with_the_endpoints_key_and_query(
    raw_server: RawServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRV_KEY", "sk-warm-123456")
    raw_server.push(Script(chunks=[b'{"data": []}'], headers=JSON_CT))
    eng = make_engine(raw_server.base_url, api_key_env="SRV_KEY", query={"api-version": "7"})
    try:
        await eng.warm("srv/m")
    finally:
        await eng.aclose()
    (req,) = raw_server.requests
    assert (req.method, req.path) == ("GET", "/v1/models?api-version=7")
    assert req.headers.get("accept") == "application/json"
    assert req.headers.get("authorization") == "Bearer sk-warm-123456"


async def test_a_plain_http_endpoint_loads_no_ca_bundle_and_would_fail_tls_closed() -> None:
    """A plain-HTTP endpoint's client is built with a TLS context that has no CA certificates
    (httpx would load its whole bundle: 27-31 ms, a tenth of a headless ask); one that still
    requires a verified certificate and host name, so that any TLS through it fails. An HTTPS
    endpoint's client loads the bundle as before, and ``verify = false`` is kept as said."""

    def context(url: str, **endpoint: Any) -> Any:
        eng = make_engine(url, **endpoint)
        client = eng.client_for(eng.config.endpoint("srv"))
        pool = getattr(client, "_transport")._pool  # noqa: B009 (httpx keeps it private)
        return eng, pool._ssl_context

    plain, ctx = context("http://127.0.0.1:9/v1")
    assert ctx.cert_store_stats()["x509_ca"] == 0
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    secure, ctx = context("https://api.example.invalid/v1")
    assert ctx.cert_store_stats()["x509_ca"] > 0
    unverified, ctx = context("https://api.example.invalid/v1", verify=False)
    assert ctx.verify_mode == ssl.CERT_NONE
    for eng in (plain, secure, unverified):
        await eng.aclose()

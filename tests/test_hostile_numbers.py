"""Issue 15.9, the server's half: absurd numbers are refused where they arrive, with a notice.

Negative token counts and costs, 1e308 (a 300-digit amount once printed), JSON's ``Infinity``
and ``NaN`` (Python's parser accepts them), and ``Retry-After: nan`` / ``inf`` / ``1e308``,
over a real socket through the engine, then through the figures the UI and ``ask`` print.
"""

from __future__ import annotations

import json
import math

import httpx
import pytest

from providers.capabilities import ChatParams
from providers.config import parse_config
from providers.engine import ChatRequest, Engine, collect
from providers.events import Event, Notice, StreamError, fold
from providers.failures import parse_retry_after
from providers.keys import KeyStore
from providers.metrics import compute_metrics
from providers.prices import Price
from tests.support.raw_server import RawServer, Script
from tui import format as fmt

SSE = {"Content-Type": "text/event-stream"}
HELLO = ({"role": "user", "content": "hi"},)


def _chunk(content: str) -> bytes:
    obj = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return f"data: {json.dumps(obj)}\n\n".encode()


async def _run(srv: RawServer, usage: str) -> list[Event]:
    srv.push(
        Script(
            headers=SSE,
            chunks=[
                _chunk("hello "),
                _chunk("world"),
                b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
                b'"usage":' + usage.encode() + b"}\n\n",
                b"data: [DONE]\n\n",
            ],
        )
    )
    cfg = parse_config({"endpoints": {"srv": {"base_url": srv.base_url}}})
    eng = Engine(cfg, KeyStore(use_keyring=False))
    try:
        return await collect(eng, ChatRequest("srv/m", HELLO, ChatParams()))
    finally:
        await eng.aclose()


@pytest.mark.parametrize(
    "usage",
    [
        '{"prompt_tokens": -5, "completion_tokens": -7, "cost": -1.5}',
        '{"prompt_tokens": 3, "completion_tokens": 1e308, "cost": 1e308}',
        '{"prompt_tokens": Infinity, "completion_tokens": NaN, "cost": Infinity}',
        '{"prompt_tokens": 3, "completion_tokens": 2, "cost": NaN,'
        ' "prompt_tokens_details": {"cached_tokens": -3}}',
    ],
    ids=["negative", "1e308", "infinity", "nan-cost-negative-cached"],
)
async def test_absurd_usage_is_refused_with_a_notice(raw_server: RawServer, usage: str) -> None:
    events = await _run(raw_server, usage)
    notes = [e.message for e in events if isinstance(e, Notice)]
    assert any("impossible" in n for n in notes), notes
    price = Price(input=1.0, output=2.0, cached_input=0.5, source="test")
    m = compute_metrics(events, price=price)
    assert m.status == "complete"
    for name in ("output_tokens", "input_tokens", "cached_tokens", "cost_usd"):
        value = getattr(m, name)
        assert value is None or (math.isfinite(value) and 0 <= value < 1e9), (name, value)
    assert len(fmt.usd(m.cost_usd)) < 20
    assert fold(events).text == "hello world"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_retry_after_not_a_number_is_ignored(value: str) -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": value})) is None
    assert parse_retry_after(httpx.Headers({"retry-after-ms": value})) is None


async def test_retry_after_of_1e308_fails_at_once_in_words(raw_server: RawServer) -> None:
    raw_server.push(
        Script(
            status=429,
            headers={"Content-Type": "application/json", "Retry-After": "1e308"},
            chunked=False,
            chunks=[b'{"error": {"message": "slow down"}}'],
        )
    )
    cfg = parse_config({"endpoints": {"srv": {"base_url": raw_server.base_url}}})
    eng = Engine(cfg, KeyStore(use_keyring=False))
    try:
        events = await collect(eng, ChatRequest("srv/m", HELLO, ChatParams()))
    finally:
        await eng.aclose()
    err = next(e for e in events if isinstance(e, StreamError))
    assert "over a year" in err.message, err.message
    assert "inf" not in err.message and len(err.message) < 400


def test_money_and_waits_print_in_a_few_characters() -> None:
    assert fmt.usd(float("inf")) == fmt.DASH
    assert fmt.usd(float("nan")) == fmt.DASH
    assert fmt.usd(-1.0) == fmt.DASH
    assert len(fmt.usd(1e308)) < 20

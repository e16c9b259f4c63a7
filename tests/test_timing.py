"""Our TTFT and decode rate against the mock server's own clock (issue: streaming core).

Each case runs `tokenrace ask --json` in a fresh process (so the first request of a process is
what is measured) against the mock server in another process, then compares the reported
figures with the server's logged send times: TTFT within 3 ms, decode rate within 2%.

On a 2-core machine either process can be kept off the CPU for milliseconds at a bad moment
(the mock server logs how long: ``runq_ns``). So each case gets up to three runs and passes when
one run is within tolerance: a real bias of ours fails all three, the scheduler's bad luck does
not. Every attempt's figures are in the failure message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from providers.metrics import JSON_KEYS
from tests.support.cli import run_cli
from tests.support.mock_server import MockServerProcess

TTFT_TOLERANCE_MS = 3.0
# Where a test cannot take the best of three quiet runs (one long run, or a stream racing a
# burst that keeps the engine busy): the scheduler of a busy 2-core machine holds a process
# off the CPU for a few ms now and then (3.04 ms and 6.7 ms seen). A figure taken where the
# pixels are drawn, not where the bytes arrive, is off by tens to hundreds of ms.
BUSY_TTFT_TOLERANCE_MS = 10.0
RATE_TOLERANCE = 0.02
ATTEMPTS = 3


def server_figures(record: dict[str, Any]) -> tuple[float, float]:
    """TTFT and decode rate by the server's clock: first token send − request received.

    Sends are stamped just before the write (``t_start_ns``): on loopback the write itself can
    wake the client before it returns, so a stamp taken after it may be later than arrival.
    """
    sends = [s for s in record["sends"] if s["kind"] in ("token", "reasoning")]

    def t(s: dict[str, Any]) -> int:
        return int(s.get("t_start_ns") or s["t_ns"])

    ttft_ms = (t(sends[0]) - record["received_ns"]) / 1e6
    n = sum(s["tokens"] for s in sends)
    span_s = (t(sends[-1]) - t(sends[0])) / 1e9
    return ttft_ms, (n - sends[0]["tokens"]) / span_s


def ask_json(
    mock: MockServerProcess, home: Path, *models: str, protocol: str = "chat"
) -> list[dict[str, Any]]:
    url = mock.base_url.removesuffix("/v1") + "/v1beta" if protocol == "gemini" else mock.base_url
    (home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{url}"\nprotocol = "{protocol}"\nthinking = true\n'
    )
    args = [a for m in models for a in ("-m", f"mock/{m}")]
    r = run_cli("ask", *args, "--json", "Say something.")
    assert r.returncode == 0, r.stderr
    doc: list[dict[str, Any]] = json.loads(r.stdout)
    return doc


def chat_record(mock: MockServerProcess, model: str) -> dict[str, Any]:
    (record,) = [r for r in mock.log() if r["body"] is not None and r["model"] == model]
    return record


CASES = {
    "plain": "script:ttft=300,tps=50,n=40",
    "plain-no-usage": "script:ttft=300,tps=50,n=40,usage=never",
    "reasoning": "script:ttft=150,tps=80,n=30,reasoning=30",
    "reasoning-no-usage": "script:ttft=150,tps=80,n=30,reasoning=30,usage=never",
    "batched-first-chunk": "script:ttft=200,tps=100,n=60,first=6",
    "batched-first-chunk-no-usage": "script:ttft=200,tps=100,n=60,first=6,usage=never",
}


def within(result: dict[str, Any], record: dict[str, Any]) -> tuple[bool, str]:
    srv_ttft, srv_rate = server_figures(record)
    m = result["metrics"]
    ok = (
        abs(m["ttft_ms"] - srv_ttft) <= TTFT_TOLERANCE_MS
        and abs(m["decode_tps"] - srv_rate) <= RATE_TOLERANCE * srv_rate
    )
    return ok, (
        f"ours TTFT {m['ttft_ms']:.2f} ms / {m['decode_tps']:.2f} tok/s; server "
        f"{srv_ttft:.2f} ms / {srv_rate:.2f} tok/s"
    )


@pytest.mark.parametrize("case", list(CASES))
def test_ttft_and_decode_rate_match_the_servers_clock(
    case: str, mock_server: MockServerProcess, isolated_home: Path
) -> None:
    model = CASES[case]
    attempts: list[str] = []
    for _ in range(ATTEMPTS):
        mock_server.reset_log()
        (result,) = ask_json(mock_server, isolated_home, model)
        assert result["status"] == "complete"
        record = chat_record(mock_server, model)
        m = result["metrics"]
        assert m["output_tokens_estimated"] == case.endswith("no-usage")
        # Role-only first chunks arrive at once; they must never count as the first token.
        assert record["sends"][0]["kind"] == "role"
        assert m["ttft_ms"] > 100
        ok, figures = within(result, record)
        attempts.append(figures)
        if ok:
            return
    pytest.fail("no run within 3 ms / 2% of the server's clock: " + "; ".join(attempts))


NATIVE_CASES = {
    "plain": "script:ttft=300,tps=50,n=40",
    "reasoning": "script:ttft=150,tps=80,n=30,reasoning=30",
    "batched-first-chunk": "script:ttft=200,tps=100,n=60,first=6",
}


@pytest.mark.parametrize("case", list(NATIVE_CASES))
@pytest.mark.parametrize("protocol", ["anthropic", "gemini", "responses"])
def test_native_protocols_match_the_servers_clock(
    protocol: str, case: str, mock_server: MockServerProcess, isolated_home: Path
) -> None:
    """The same figures, within the same tolerance, for each native protocol (issue 17)."""
    model = NATIVE_CASES[case]
    attempts: list[str] = []
    for _ in range(ATTEMPTS):
        mock_server.reset_log()
        (result,) = ask_json(mock_server, isolated_home, model, protocol=protocol)
        assert result["status"] == "complete", result["error"]
        record = chat_record(mock_server, model)
        assert record["protocol"] == protocol
        m = result["metrics"]
        assert not m["output_tokens_estimated"]
        if case == "reasoning":
            # Thinking streams (asked for in config) and counts toward TTFT; TTFO is the answer.
            assert result["reasoning"] and m["ttfo_ms"] > m["ttft_ms"] + 300
        if protocol != "gemini":  # Gemini sends nothing before its first token
            assert record["sends"][0]["kind"] == "role"
        assert m["ttft_ms"] > 100
        ok, figures = within(result, record)
        attempts.append(figures)
        if ok:
            return
    pytest.fail("no run within 3 ms / 2% of the server's clock: " + "; ".join(attempts))


def test_two_models_leave_together(mock_server: MockServerProcess, isolated_home: Path) -> None:
    a_model, b_model = "script:ttft=50,tps=200,n=20", "script:ttft=120,tps=100,n=20"
    attempts: list[str] = []
    for _ in range(ATTEMPTS):
        mock_server.reset_log()
        doc = ask_json(mock_server, isolated_home, a_model, b_model)
        assert [d["status"] for d in doc] == ["complete", "complete"]
        a, b = chat_record(mock_server, a_model), chat_record(mock_server, b_model)
        gap_ms = abs(a["received_ns"] - b["received_ns"]) / 1e6
        checks = [within(result, record) for result, record in zip(doc, (a, b), strict=True)]
        attempts.append(f"gap {gap_ms:.2f} ms; " + "; ".join(c[1] for c in checks))
        if gap_ms <= 1.0 and all(ok for ok, _ in checks):
            return
    pytest.fail("requests did not leave within 1 ms with exact figures: " + " | ".join(attempts))


def test_ask_json_shape(mock_server: MockServerProcess, isolated_home: Path) -> None:
    (result,) = ask_json(mock_server, isolated_home, "mock-instant")
    assert set(result) >= {
        "schema_version",
        "model",
        "endpoint",
        "status",
        "text",
        "reasoning",
        "finish_reason",
        "error",
        "metrics",
    }
    assert result["schema_version"] == 1 and result["endpoint"] == "mock"
    assert set(result["metrics"]) == set(JSON_KEYS)
    assert result["metrics"]["cost_usd"] is None  # no price known for a mock model


def _burst_body(n: int) -> str:
    """A whole chat stream of ``n`` one-token events, sent by the server in one write."""
    chunk = (
        'data: {"id":"chatcmpl-burst","object":"chat.completion.chunk","created":1,'
        '"model":"burst","choices":[{"index":0,"delta":{"content":"tok "},'
        '"finish_reason":null}]}\n\n'
    )
    end = (
        'data: {"id":"chatcmpl-burst","object":"chat.completion.chunk","created":1,'
        '"model":"burst","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        "data: [DONE]\n\n"
    )
    return chunk * n + end


def test_a_burst_on_one_stream_does_not_delay_anothers_stamps(
    mock_server: MockServerProcess, isolated_home: Path
) -> None:
    """One engine, two streams: A's 12,000 tokens arrive at once (one write) and take the engine
    well over a hundred milliseconds to decode; B's first token lands in the middle of that
    backlog. B must be stamped when its bytes arrive, not after A's backlog (the engine yields
    to the loop). (A burst paced by the server no longer makes a backlog: the engine decodes
    faster than the mock server sends.)"""
    burst, late = "timing-burst-in-one-write", "script:ttft=40,tps=50,n=5"
    mock_server.add_scenario(
        burst, {"body_instead": _burst_body(12_000), "content_type": "text/event-stream"}
    )
    attempts: list[str] = []
    for _ in range(ATTEMPTS):
        mock_server.reset_log()
        doc = ask_json(mock_server, isolated_home, burst, late)
        assert [d["status"] for d in doc] == ["complete", "complete"]
        a_rec, b_rec = chat_record(mock_server, burst), chat_record(mock_server, late)
        # The premise: B's first token is sent while A's burst is still being decoded.
        b_first_send = min(int(s["t_ns"]) for s in b_rec["sends"] if s["kind"] == "token")
        assert (b_first_send - a_rec["received_ns"]) / 1e6 < doc[0]["metrics"]["e2e_ms"] - 20
        srv_ttft, _ = server_figures(b_rec)
        ours = doc[1]["metrics"]["ttft_ms"]
        attempts.append(
            f"B TTFT ours {ours:.2f} ms vs server {srv_ttft:.2f} ms; "
            f"A's burst sent in one write, A e2e {doc[0]['metrics']['e2e_ms']:.0f} ms"
        )
        if abs(ours - srv_ttft) <= TTFT_TOLERANCE_MS:
            return
    pytest.fail("B's first token was stamped late behind A's burst: " + " | ".join(attempts))

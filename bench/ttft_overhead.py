"""TTFT overhead: our reported TTFT against the mock server's own send times.

The server waits a scripted 300 ms before the first token and logs when it received the request
and when it wrote the token. Overhead = our TTFT − the server's (first token written − request
received): what tokenrace adds. Cold: a fresh `tokenrace ask` process per run (the first request
of a process); warm: one engine, requests one after another on a kept-alive connection.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

from bench.common import REPO, Row, app_env, median, pct, temp_home
from providers.config import parse_config
from providers.engine import ChatRequest, Engine, collect
from providers.events import TOKEN_EVENTS, RequestSent
from providers.keys import KeyStore
from providers.metrics import compute_metrics
from tests.support.mock_server import MockServerProcess

MODEL = "script:ttft=300,tps=100,n=10"


def server_ttft_ms(record: dict[str, Any]) -> float:
    first = next(s for s in record["sends"] if s["kind"] in ("token", "reasoning"))
    return (int(first.get("t_start_ns") or first["t_ns"]) - int(record["received_ns"])) / 1e6


def last_record(server: MockServerProcess) -> dict[str, Any]:
    return [r for r in server.log() if r["path"].endswith("/chat/completions")][-1]


def cold(server: MockServerProcess, runs: int) -> list[float]:
    home = temp_home(server.base_url)
    out = []
    for _ in range(runs):
        r = subprocess.run(
            [sys.executable, "-m", "tui.cli", "ask", "-m", f"mock/{MODEL}", "--json", "hi"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=app_env(home),
            check=True,
            timeout=60,
        )
        ours = json.loads(r.stdout)[0]["metrics"]["ttft_ms"]
        out.append(ours - server_ttft_ms(last_record(server)))
    return out


def warm(server: MockServerProcess, runs: int) -> list[float]:
    async def go() -> list[float]:
        config = parse_config({"endpoints": {"mock": {"base_url": server.base_url}}})
        engine = Engine(config, KeyStore(use_keyring=False))
        out = []
        request = ChatRequest(f"mock/{MODEL}", ({"role": "user", "content": "hi"},))
        await collect(engine, request)  # open the connection
        for _ in range(runs):
            events = await collect(engine, request)
            assert any(isinstance(e, RequestSent) for e in events)
            assert any(isinstance(e, TOKEN_EVENTS) for e in events)
            ours = compute_metrics(events).ttft_ms
            assert ours is not None
            out.append(ours - server_ttft_ms(last_record(server)))
        await engine.aclose()
        return out

    return asyncio.run(go())


def run(quick: bool = False) -> list[Row]:
    runs = 3 if quick else 20
    with MockServerProcess() as server:
        results = {"cold": cold(server, runs), "warm": warm(server, runs)}
    rows = []
    for kind, values in results.items():
        med, p99 = median(abs(v) for v in values), pct((abs(v) for v in values), 99)
        assert med is not None and p99 is not None
        rows.append(
            Row(
                f"TTFT overhead ({kind}, {runs} runs)",
                "median ≤ 1 ms, p99 ≤ 3 ms",
                f"median {med:.2f} ms, p99 {p99:.2f} ms",
                med <= 1.0 and p99 <= 3.0,
                {"overhead_ms": values},
            )
        )
    return rows

"""A race with one pane per wire protocol (issue 17): chat, Anthropic, Gemini and Responses on the
mock server, streaming side by side, with the strip, the cost split and F6 filled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.mock_server import MockServerProcess
from tests.support.tui import make_app, pane_replies, scenario, send, wait_for_screen, wait_until
from tests.support.tui import replies_over as race_over
from tests.test_compare_screen import screen
from tests.test_tool_calls import PROTOCOLS, native_config
from tui.screens.summary import SummaryScreen
from tui.session.export import export_html, export_json, export_markdown

TEXT = "The same answer from every API."
PRICE = {"input": 1.0, "output": 4.0, "cached_input": 0.1}  # $ per 1M tokens


async def test_a_race_with_one_pane_per_protocol(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    name = scenario(
        mock_server, text=TEXT, ttft_ms=20, tps=200, prompt_tokens=100, cached_tokens=60
    ).split("/", 1)[1]
    models = [f"via-{p}/{name}" for p in PROTOCOLS]
    config = native_config(mock_server, prices={m: PRICE for m in models})
    app = make_app(config, isolated_home, models=models)
    async with app.run_test(size=(170, 45)) as pilot:
        await send(pilot, "race")
        await wait_until(pilot, lambda: race_over(app), timeout=30, what="the race")
        conv_id = screen(app).conv.id
        paths = {r["path"] for r in mock_server.log() if r["model"] == name}
        assert paths == {
            "/v1/chat/completions",
            "/v1/messages",
            f"/v1beta/models/{name}:streamGenerateContent",
            "/v1/responses",
        }
        for index in range(4):
            (reply,) = pane_replies(app, index)
            assert reply.status == "complete" and reply.body.source == TEXT
            m = screen(app).runs[index].final()
            # Every protocol's usage maps to the same split: 40 uncached, 60 cached, n output.
            assert (m.input_tokens, m.cached_tokens) == (100, 60)
            assert m.cost_input_usd == pytest.approx(40 * 1.0 / 1e6)
            assert m.cost_cached_usd == pytest.approx(60 * 0.1 / 1e6)
            assert m.cost_output_usd == pytest.approx((m.output_tokens or 0) * 4.0 / 1e6)
            assert m.prefill_tps is not None and m.ttft_ms is not None
            line = str(reply.metrics_line.render())
            assert "(in $" in line and "+ cached $0.000006 +" in line and "prefill ≤" in line
        strip = str(app.screen.query_one("#strip").render())
        assert all(f"{x} vs A" in strip for x in "BCD")
        assert "finishing order" in strip and all(f". {x}" in strip for x in "ABCD")
        assert "cost split" in strip and strip.count("cached $0.000006") == 4
        await pilot.press("f6")
        summary = await wait_for_screen(pilot, SummaryScreen)
        text = str(summary.query_one("#summary").render())
        assert all(m in text for m in models)
        assert "cost split" in text and text.count("cached $0.000006 (60 tok)") == 4
        assert "(upper bound)" in text
        # Exports carry the split: JSON per run, Markdown and HTML on each reply's line.
        store = app.store
        assert store is not None and store.flush()
        doc = json.loads(export_json(store, conv_id))
        figures = [m["metrics"] for m in doc["messages"] if m.get("metrics")]
        assert len(figures) == 4
        assert all(f["cost_cached_usd"] == pytest.approx(6e-6) for f in figures)
        assert all(f["prefill_tps"] and f["ttft_tool_ms"] is None for f in figures)
        assert export_markdown(store, conv_id).count("+ cached $0.000006 +") == 4
        assert export_html(store, conv_id).count("+ cached $0.000006 +") == 4

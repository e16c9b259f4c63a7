"""A stored two-pane race with a hostile reply, for export tests."""

from __future__ import annotations

import time
from pathlib import Path

from providers import paths
from providers.metrics import RunMetrics
from tui.session.store import Store, new_id

HOSTILE = (
    "Here <script>alert(1)</script> and [click](javascript:alert(2)) and "
    "<javascript:alert(3)> and [ok](https://example.com/x) "
    "![img](https://evil.example/p.png) [data](data:text/html,<b>x</b>)\n\n"
    '```html\n<script>bad()</script>\n```\n\n\x1b[31mred\x1b[0m <img src=x onerror="alert(4)">'
    ' <a href="javascript:alert(5)">raw</a> \ufffe'
)
SAFE = "A **fine** answer with `code` and a [link](https://example.org/)."


def store_race(prompt: str = "Compare <b>these</b>") -> tuple[Path, int, list[str]]:
    """A two-pane race (pane A hostile) with figures and a verdict; (db, conv id, models)."""
    db = paths.data_dir() / "history.db"
    store = Store(db)
    conv = new_id()
    models = ["mock/hostile", "mock/safe"]
    store.create_conversation(conv, "A <race> & more", "compare", {"temperature": 0.2})
    race_id = "race-0001-abcdef"
    for pane, (model, text) in enumerate(zip(models, (HOSTILE, SAFE), strict=True)):
        figures = RunMetrics(
            status="complete", ttft_ms=180.0 + 120 * pane, ttfo_ms=None,
            decode_tps=95.0 - 30 * pane, e2e_ms=900.0 + 200 * pane, client_overhead_ms=0.4,
            connect_ms=12.0, output_tokens=64, output_tokens_estimated=False, input_tokens=12,
            cached_tokens=None, reasoning_tokens=None, itl_p50_ms=10.0, itl_p95_ms=14.0,
            itl_max_ms=20.0, stalls=0, retries=0, retry_wait_ms=0.0, cost_usd=0.00012,
            cost_reported=False, overall_tps=70.0, token_events=64, finish_reason="stop",
        )  # fmt: skip
        store.save_message(new_id(), conv, "user", prompt, pane=pane)
        msg = new_id()
        store.save_message(msg, conv, "assistant", text, model=model, pane=pane)
        store.save_run(
            new_id(),
            message_id=msg,
            conv_id=conv,
            model=model,
            endpoint="mock",
            params={},
            metrics=figures,
            status="complete",
            started_at=time.time(),
            race_id=race_id,
            pane=pane,
        )
    store.save_verdict(conv, race_id, models[1], models)
    store.close()
    return db, conv, models

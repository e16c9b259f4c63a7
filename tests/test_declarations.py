"""One declaration per concept: the metric names, the OK statuses, and what is derived from them."""

from __future__ import annotations

import socket
import sqlite3
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from providers.metrics import (
    EMPTY_METRICS,
    METRIC_NAMES,
    RunMetrics,
    compute_metrics,
    metrics_from_record,
)
from tests.support.raw_server import RawServer
from tui.session.store import ADD_METRIC_COLUMNS, MIGRATIONS, Store, connect, migrate


def _every_figure_set() -> RunMetrics:
    """A RunMetrics where no field holds its empty value, so a lost field shows."""
    values: dict[str, Any] = {}
    for i, f in enumerate(fields(RunMetrics)):
        empty = getattr(EMPTY_METRICS, f.name)
        if f.name == "status":
            values[f.name] = "complete"
        elif f.name == "finish_reason":
            values[f.name] = "stop"
        elif isinstance(empty, bool):
            values[f.name] = not empty
        elif f.name in ("stalls", "retries", "token_events") or f.name.endswith("_tokens"):
            values[f.name] = 100 + i
        else:
            values[f.name] = 1.5 + i
    return RunMetrics(**values)


def test_a_stored_run_keeps_every_figure(tmp_path: Path) -> None:
    """Every field of RunMetrics survives the store and comes back the same."""
    m = _every_figure_set()
    assert all(getattr(m, k) != getattr(EMPTY_METRICS, k) for k in METRIC_NAMES)
    store = Store(tmp_path / "history.db")
    store.save_run(
        7, message_id=None, conv_id=None, model="m", endpoint="e", params={},
        metrics=m, status="complete", started_at=1.0, finished_at=2.0,
    )  # fmt: skip
    assert store.flush()
    (row,) = store.runs()
    assert metrics_from_record(row) == m
    store.close()


def test_metric_columns_migration_keeps_old_runs(tmp_path: Path) -> None:
    """A run stored before the new columns reads back with them unknown, the rest intact."""
    number = MIGRATIONS.index(ADD_METRIC_COLUMNS) + 1
    conn = connect(tmp_path / "history.db")
    migrate(conn, upto=number - 1)
    conn.execute(
        "INSERT INTO runs(id, model, endpoint, status, started_at, ttft_ms, output_tokens,"
        " output_tokens_estimated, stalls) VALUES (1, 'm', 'e', 'complete', 1.0, 12.5, 40, 0, 2)"
    )
    migrate(conn)
    row = conn.execute("SELECT * FROM runs").fetchone()
    got = metrics_from_record(row)
    assert got == replace(
        EMPTY_METRICS,
        status="complete",
        ttft_ms=12.5,
        output_tokens=40,
        output_tokens_estimated=False,
        stalls=2,
    )
    assert got.cache_write_tokens is None and got.prefill_tps is None
    conn.close()


def test_a_json_record_without_newer_figures_still_reads() -> None:
    """An export or log line written before a figure existed reads back with it unknown."""
    old = {"status": "length", "ttft_ms": 3.0, "cost_reported": 1, "retries": None}
    got = metrics_from_record(old)
    assert got.status == "length" and got.ttft_ms == 3.0
    assert got.cost_reported is True and got.retries == 0 and got.prefill_tps is None


def test_empty_metrics_are_those_of_a_reply_with_no_events() -> None:
    assert compute_metrics(()) == EMPTY_METRICS
    assert EMPTY_METRICS.status == "streaming" and EMPTY_METRICS.output_tokens is None


def test_json_record_round_trips() -> None:
    m = _every_figure_set()
    assert metrics_from_record(dict(m.to_json(), status=m.status, finish_reason="stop")) == m


def test_sqlite_row_is_a_record() -> None:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    row = conn.execute("SELECT 'error' AS status, 5 AS ttft_ms").fetchone()
    assert metrics_from_record(row) == replace(EMPTY_METRICS, status="error", ttft_ms=5)


def _run(model: str, status: str, cost: float | None, ttft: float) -> dict[str, object]:
    m = replace(EMPTY_METRICS, status=status, ttft_ms=ttft, output_tokens=10, cost_usd=cost)  # type: ignore[arg-type]
    return {"model": model, **m.to_json(), "status": status}


RUNS = [
    _run("priced", "complete", 0.5, 100.0),
    _run("priced", "error", None, 900.0),  # failed: no usage, so no cost
    _run("priced", "cancelled", 7.0, 5.0),  # stopped by the user: out of every figure
    _run("unpriced", "complete", None, 200.0),
    _run("unpriced", "length", None, 300.0),
]


def test_session_summary_and_replay_table_apply_one_cost_rule() -> None:
    """The F6 summary (stored runs) and a replay suite's table (live results) give the same
    row for the same runs: cancelled runs out, unknown cost '—' (never $0), partial '≥'."""
    from tui.session.model_summary import cost_text
    from tui.session.race import summarise
    from tui.session.replay import RunResult, summarize

    from_store = {s.model: s for s in summarise(RUNS)}
    results = [
        RunResult(0, "p", str(r["model"]), 0, str(r["status"]), "", None, metrics_from_record(r))
        for r in RUNS
    ]
    from_replay = {s.model: s for s in summarize(results, ["priced", "unpriced"])}
    for model in ("priced", "unpriced"):
        a, b = from_store[model], from_replay[model]
        assert (a.replies, a.failures, a.ttft, a.output_tokens, a.cost_usd, a.cost_known) == (
            b.replies, b.failures, b.ttft, b.output_tokens, b.cost_usd, b.cost_known,
        )  # fmt: skip
    priced, unpriced = from_store["priced"], from_store["unpriced"]
    assert (priced.replies, priced.failures, priced.output_tokens) == (1, 1, 20)
    assert priced.ttft == [100.0]
    assert priced.cost_usd == 0.5 and not priced.cost_known
    assert cost_text(priced.cost_usd, priced.cost_known).startswith("≥$0.5")
    assert unpriced.cost_usd is None and cost_text(unpriced.cost_usd, unpriced.cost_known) == "—"
    assert from_replay["unpriced"].to_json()["cost_usd"] is None


def test_only_the_discovery_module_asks_for_models() -> None:
    """Every ``/models`` request of the app is made in providers/discovery.py (and the native
    protocols' listing it calls): no module of providers or tui builds that URL itself."""
    import ast

    root = Path(__file__).resolve().parents[1]
    allowed = {"providers/discovery.py", "providers/protocols/listing.py"}
    found: list[str] = []
    for package in ("providers", "tui"):
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"))
            # Docstrings may speak of /models.
            docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
            for node in ast.walk(tree):
                if id(node) in docs or not isinstance(node, ast.Constant):
                    continue
                value = node.value
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                # "/models/…" is Gemini's generate path, not a listing.
                listing = isinstance(text, str) and "/models" in text
                if listing and not str(text).startswith("/models/") and rel not in allowed:
                    found.append(f"{rel}:{node.lineno}")
    assert found == []


async def test_a_server_answers_only_once_its_models_do(raw_server: RawServer) -> None:
    """What the local pool waits for: 200 on GET /v1/models (a 503 while loading is not up)."""
    from providers.discovery import answers
    from tests.support.raw_server import Script

    raw_server.push(Script([b"loading"], status=503, chunked=False))
    raw_server.push(Script([b'{"data": []}'], status=200, chunked=False))
    url = raw_server.base_url
    assert await answers(url) is False
    assert await answers(url) is True
    assert [r.path for r in raw_server.requests] == ["/v1/models", "/v1/models"]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    assert await answers(f"http://127.0.0.1:{port}/v1") is False

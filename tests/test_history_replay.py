"""Prompt history, resume, replay, suites, export, the metrics log and crash safety."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.cli import REPO, run_cli
from tests.support.mock_server import MockServerProcess
from tests.support.tui import (
    make_app,
    mock_config,
    replies,
    replies_over,
    scenario,
    screen_of,
    send,
    wait_for_screen,
    wait_until,
)
from tui.launch import resume_conversation
from tui.screens.chat import ChatScreen
from tui.screens.history_search import HistorySearch
from tui.screens.replay_results import ReplayResults
from tui.session.state import UiState
from tui.session.store import Store
from tui.widgets.prompt_box import PromptBox
from tui.widgets.user_message import UserMessage


async def test_history_survives_a_restart_and_ctrl_r_finds_it(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    model = scenario(mock_server, text="ok", ttft_ms=2)
    db = isolated_home / "history.db"
    app = make_app(mock_config(mock_server), isolated_home, models=[model], store=Store(db))
    async with app.run_test(size=(100, 30)) as pilot:
        for text in ("how do I parse TOML in python", "explain the GIL"):
            await send(pilot, text)
            await wait_until(pilot, lambda: replies_over(app))
    assert app.store is not None
    app.store.close()
    app2 = make_app(mock_config(mock_server), isolated_home, models=[model], store=Store(db))
    async with app2.run_test(size=(100, 30)) as pilot:
        prompt = app2.screen.query_one(PromptBox)
        prompt.focus()
        await pilot.press("up")
        assert prompt.text == "explain the GIL"
        prompt.clear_prompt()
        await pilot.press("ctrl+r")
        await wait_for_screen(pilot, HistorySearch)
        await pilot.press(*"toml")
        await pilot.pause(0.1)
        assert "parse TOML" in str(app2.screen.query_one("#preview").render())
        await pilot.press("enter")
        await wait_for_screen(pilot, ChatScreen)
        assert app2.screen.query_one(PromptBox).text == "how do I parse TOML in python"
        # Ctrl+S in the search sends at once.
        app2.screen.query_one(PromptBox).clear_prompt()
        await pilot.press("ctrl+r")
        await wait_for_screen(pilot, HistorySearch)
        await pilot.press(*"GIL", "ctrl+s")
        await wait_until(pilot, lambda: isinstance(app2.screen, ChatScreen) and replies_over(app2))
        assert [u.text for u in app2.screen.query(UserMessage)] == ["explain the GIL"]


async def test_resume_reopens_the_last_conversation(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    model = scenario(mock_server, text="first reply", ttft_ms=2)
    db = isolated_home / "history.db"
    app = make_app(mock_config(mock_server), isolated_home, models=[model], store=Store(db))
    app.state = UiState()
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "remember me")
        await wait_until(pilot, lambda: replies_over(app))
        conv_id = screen_of(app, ChatScreen).conv.id
    assert app.store is not None
    app.store.close()
    store = Store(db)
    conv = resume_conversation(store, app.state)
    assert conv is not None and conv.id == conv_id
    app2 = make_app(mock_config(mock_server), isolated_home, store=store, conversation=conv)
    async with app2.run_test(size=(100, 30)) as pilot:
        await wait_for_screen(pilot, ChatScreen)
        screen = app2.screen
        assert isinstance(screen, ChatScreen)
        assert screen.model == model  # the model that wrote the last reply
        assert [w.body.source for w in replies(app2)] == ["first reply"]
        await send(pilot, "and again")
        await wait_until(pilot, lambda: len(replies(app2)) == 2 and replies_over(app2))
    reqs = [r for r in mock_server.log() if r["model"] == model.split("/")[1]]
    assert [m["content"] for m in reqs[-1]["body"]["messages"]] == [
        "remember me",
        "first reply",
        "and again",
    ]


async def test_replay_once_and_n_times_in_chat(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    model = scenario(mock_server, text="same answer", ttft_ms=5, tps=500)
    app = make_app(mock_config(mock_server), isolated_home, models=[model])
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, "measure me")
        await wait_until(pilot, lambda: replies_over(app))
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: len(replies(app)) == 2 and replies_over(app))
        await pilot.press("alt+g")
        await pilot.pause(0.2)
        await pilot.press("backspace", "3", "enter")
        await wait_for_screen(pilot, ReplayResults, timeout=20)
        results = app.screen
        assert isinstance(results, ReplayResults) and results.runs == 3
        (row,) = results.rows
        assert row.model == model and row.replies == 3 and row.ttft_p50_ms is not None
    reqs = [r for r in mock_server.log() if r["model"] == model.split("/")[1]]
    assert len(reqs) == 5
    # Every replay carries the same history as the original request.
    assert all([m["content"] for m in r["body"]["messages"]] == ["measure me"] for r in reqs)


async def test_replay_to_every_pane(isolated_home: Path, mock_server: MockServerProcess) -> None:
    a = scenario(mock_server, text="A says", ttft_ms=5)
    b = scenario(mock_server, text="B says", ttft_ms=5)
    app = make_app(mock_config(mock_server), isolated_home, models=[a, b])
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "both")
        await wait_until(pilot, lambda: replies_over(app))
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: replies_over(app) and len(replies(app)) == 4)
    for model in (a, b):
        reqs = [r for r in mock_server.log() if r["model"] == model.split("/")[1]]
        assert len(reqs) == 2
        assert [m["content"] for m in reqs[1]["body"]["messages"]] == ["both"]


SUITE = [
    {"prompt": "give good json one", "expect": "json", "json_mode": True},
    {"prompt": "give bad json two", "expect": "json"},
    {"prompt": "give good json three", "expect": "json", "system": "Reply in JSON."},
    {"prompt": "free text please"},
]


def write_suite(path: Path) -> Path:
    path.write_text("# a comment line\n" + "\n".join(json.dumps(x) for x in SUITE) + "\n")
    return path


def test_replay_suite_counts_and_outputs(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    replies_by_prompt = {
        "good json": '{"ok": true, "n": 1}',
        "bad json": "{'ok': yes",
        "free text": "just words",
    }
    a = scenario(mock_server, json_reply_by_prompt=replies_by_prompt, ttft_ms=3)
    # The mock answers with the first key found in the prompt: the specific one goes first.
    b = scenario(
        mock_server,
        json_reply_by_prompt={"good json three": "not json", **replies_by_prompt},
        ttft_ms=3,
    )
    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\n'
    )
    suite = write_suite(isolated_home / "suite.jsonl")
    out_json, out_csv = isolated_home / "out.json", isolated_home / "out.csv"
    r = run_cli(
        "replay",
        str(suite),
        "-m",
        a,
        "-m",
        b,
        "--runs",
        "2",
        "--concurrency",
        "3",
        "--json",
        str(out_json),
        "--csv",
        str(out_csv),
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(out_json.read_text())
    assert len(doc["runs"]) == len(SUITE) * 2 * 2
    first = doc["runs"][0]
    assert set(first) >= {
        "prompt_index",
        "prompt",
        "model",
        "run",
        "status",
        "text",
        "json_valid",
        "metrics",
    }
    assert set(first["metrics"]) >= {"ttft_ms", "decode_tps", "output_tokens", "cost_usd"}
    by_model = {s["model"]: s for s in doc["summary"]}
    # a: prompts 0 and 2 valid, 1 invalid → 4 valid of 6 expected over 2 runs; b: only prompt 0.
    assert (by_model[a]["json_valid"], by_model[a]["json_expected"]) == (4, 6)
    assert (by_model[b]["json_valid"], by_model[b]["json_expected"]) == (2, 6)
    for run in doc["runs"]:
        idx = run["prompt_index"]
        if idx == 3:
            assert run["json_valid"] is None
    assert by_model[a]["replies"] == 8 and by_model[a]["failures"] == 0
    # The table printed on stdout says the same.
    line_a = next(ln for ln in r.stdout.splitlines() if ln.startswith(a[:38]))
    assert " 4/6 " in line_a and " 8 " in line_a
    # The CSV has one row per run, matching the JSON.
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert len(rows) == len(doc["runs"])
    for row, run in zip(rows, doc["runs"], strict=True):
        assert row["model"] == run["model"] and int(row["prompt_index"]) == run["prompt_index"]
        want = "" if run["json_valid"] is None else str(run["json_valid"]).lower()
        assert row["json_valid"] == want
        assert float(row["ttft_ms"]) == pytest.approx(run["metrics"]["ttft_ms"])
    valid_csv = sum(1 for x in rows if x["model"] == a and x["json_valid"] == "true")
    assert valid_csv == by_model[a]["json_valid"]


def test_replay_suite_errors_name_the_line(isolated_home: Path) -> None:
    bad = isolated_home / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": 3}\n')
    r = run_cli("replay", str(bad), "-m", "mock/x")
    assert r.returncode == 2 and "bad.jsonl:2" in r.stderr and "prompt" in r.stderr


async def test_suite_from_the_tui_fills_a_live_table(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from textual.widgets import DataTable

    from tui.screens.suite import SuiteScreen

    model = scenario(
        mock_server,
        json_reply_by_prompt={"good json": "[1, 2]", "bad json": "nope", "free text": "hi"},
        ttft_ms=3,
    )
    suite = write_suite(isolated_home / "suite.jsonl")
    app = make_app(mock_config(mock_server), isolated_home, models=[model])
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, f"/suite {suite}")
        await wait_for_screen(pilot, SuiteScreen)
        screen = app.screen
        assert isinstance(screen, SuiteScreen)
        await wait_until(pilot, lambda: len(screen.results) == 4 and not screen.running)
        table = screen.query_one(DataTable)
        row = table.get_row(model)
        assert row[1] == "4" and row[3] == "2/3"


def test_export_both_formats_never_contains_keys(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    canary = "sk-canary-export-0000111122223333"
    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\napi_key_env = "MOCK_KEY"\n'
    )
    store = Store(isolated_home / "data" / "history.db")
    from tui.session.conversation import Conversation
    from tui.session.store import new_id

    conv = Conversation(title="Export me")
    conv.add_user("What is 2+2?", store)
    store.save_message(
        new_id(), conv.id, "assistant", f"4 (and {canary} leaked?)", model="mock/mock-fast"
    )
    store.flush()
    store.close()
    from providers import secrets

    secrets.register(canary)
    env = {"MOCK_KEY": canary}
    # Run an ask so the CLI process knows the key and must redact it.
    md = run_cli("export", "--format", "md", env=env)
    js = run_cli("export", "--format", "json", env=env)
    assert md.returncode == 0 and js.returncode == 0, md.stderr + js.stderr
    assert "# Export me" in md.stdout and "### mock/mock-fast" in md.stdout
    doc = json.loads(js.stdout)
    assert doc["title"] == "Export me" and [m["role"] for m in doc["messages"]] == [
        "user",
        "assistant",
    ]
    assert canary not in md.stdout + md.stderr and canary not in js.stdout + js.stderr
    assert "sk-…3333" in md.stdout


async def test_export_from_the_app_with_metrics(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from tui.screens.export_dialog import ExportDialog

    model = scenario(mock_server, text="exported answer", ttft_ms=5)
    app = make_app(mock_config(mock_server), isolated_home, models=[model])
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "export this")
        await wait_until(pilot, lambda: replies_over(app))
        for key, ext in (("m", "md"), ("j", "json")):
            await pilot.press("ctrl+s")
            await wait_for_screen(pilot, ExportDialog)
            await pilot.press(key)
            await pilot.pause(0.3)
            exports = list((isolated_home / "data" / "exports").glob(f"*.{ext}"))
            assert len(exports) == 1, ext
        md = next((isolated_home / "data" / "exports").glob("*.md")).read_text()
        assert "exported answer" in md and "TTFT" in md and model in md
        data = json.loads(next((isolated_home / "data" / "exports").glob("*.json")).read_text())
        reply = data["messages"][1]
        assert reply["metrics"]["ttft_ms"] is not None and reply["endpoint"] == "mock"


async def test_metrics_log_and_prometheus_file(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    prom = isolated_home / "tokenrace.prom"
    a = scenario(mock_server, text="one two three", ttft_ms=5, prompt_tokens=11)
    b = scenario(mock_server, status=401, error_body={"error": {"message": "no"}})
    config = mock_config(
        mock_server,
        metrics={"prometheus_file": str(prom)},
        prices={a: {"input": 1.0, "output": 2.0}},
    )
    app = make_app(config, isolated_home, models=[a])
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(2):
            await send(pilot, "count")
            await wait_until(pilot, lambda: replies_over(app))
        chat = screen_of(app, ChatScreen)
        chat.set_model(b)
        await send(pilot, "fail")
        await wait_until(
            pilot, lambda: replies_over(app) and chat.run is not None and chat.run.model == b
        )
        conv_id = chat.conv.id
    assert app.store is not None and app.store.flush()
    runs = app.store.runs(conv_id)
    log_lines = (isolated_home / "data" / "runs.jsonl").read_text().splitlines()
    assert len(log_lines) == len(runs) == 3
    record = json.loads(log_lines[0])
    assert {"model", "endpoint", "status", "ttft_ms", "output_tokens", "cost_usd"} <= set(record)
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    tokens = {
        (s.labels["model"], s.labels["kind"]): s.value for s in families["tokenrace_tokens"].samples
    }
    requests = {
        (s.labels["model"], s.labels["status"]): s.value
        for s in families["tokenrace_requests"].samples
    }
    cost = {s.labels["model"]: s.value for s in families["tokenrace_cost_usd"].samples}
    assert tokens[(a, "output")] == sum(r["output_tokens"] for r in runs if r["model"] == a)
    assert tokens[(a, "input")] == sum(r["input_tokens"] for r in runs if r["model"] == a)
    assert requests[(a, "complete")] == 2 and requests[(b, "error")] == 1
    assert cost[a] == pytest.approx(sum(r["cost_usd"] for r in runs if r["model"] == a))
    ttft = families["tokenrace_ttft_seconds"]
    count = next(
        s.value for s in ttft.samples if s.name.endswith("_count") and s.labels["model"] == a
    )
    assert count == 2


@pytest.mark.skipif(sys.platform == "win32", reason="platform: SIGKILL is POSIX")
def test_sigkill_mid_stream_leaves_a_consistent_db_with_the_partial_reply(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    name = f"kill-{uuid.uuid4().hex[:6]}"
    mock_server.add_scenario(name, {"n_tokens": 2000, "ttft_ms": 50, "tps": 40})
    env = dict(os.environ, TOKENRACE_HOME=str(isolated_home))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.stream_into_store", mock_server.base_url, name],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "SENT"
        time.sleep(3.5)
        killed_ns = time.perf_counter_ns()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    record = next(r for r in mock_server.log() if r["model"] == name)
    sent = [s for s in record["sends"] if s["kind"] == "token"]
    sent_before = [s for s in sent if s["t_ns"] <= killed_ns - 1_000_000_000]
    db = sqlite3.connect(isolated_home / "data" / "history.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = db.execute("SELECT role, content, status FROM messages ORDER BY id").fetchall()
    assert rows[0][:1] == ("user",)
    role, content, _status = rows[1]
    assert role == "assistant"
    words = len(content.split())
    # Everything the server had sent more than a second before the kill is in the database.
    assert words >= len(sent_before) > 40, (words, len(sent_before), len(sent))
    db.close()

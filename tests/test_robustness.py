"""Hostile servers and broken state (issue 15): nothing gets through, nothing received is lost.

Every test talks to a server over a real loopback socket: the byte-exact ``RawServer`` in the
test's loop (Pilot tests and headless subprocesses alike).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from providers.capabilities import ChatParams
from providers.config import parse_config
from providers.engine import ChatRequest, Engine, collect
from providers.events import TextDelta, Usage, fold
from providers.keys import KeyStore
from tests.support.raw_server import RawServer, Script
from tests.support.tui import make_app, replies_over, screen_of, wait_until
from tui.screens.chat import ChatScreen
from tui.screens.compare import CompareScreen
from tui.session.store import Store
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.prompt_box import PromptBox

REPO = Path(__file__).resolve().parent.parent
SSE = {"Content-Type": "text/event-stream"}
HELLO = ({"role": "user", "content": "hi"},)
LONE = "\ud800"  # a lone UTF-16 surrogate: JSON can spell it, UTF-8 cannot hold it


def event(obj: dict[str, Any]) -> bytes:
    # ensure_ascii keeps the lone surrogate as the escape "\ud800", as a hostile server sends it
    return f"data: {json.dumps(obj)}\n\n".encode()


def delta(text: str, finish: str | None = None) -> bytes:
    return event({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]})


def reply(*texts: str, usage: dict[str, Any] | None = None) -> Script:
    chunks = [delta(t) for t in texts] + [delta("", "stop")]
    if usage is not None:
        chunks.append(event({"choices": [], "usage": usage}))
    return Script(chunks=[*chunks, b"data: [DONE]\n\n"], headers=dict(SSE))


def hostile() -> Script:
    """A lone surrogate in a delta and a usage count no column can hold."""
    return reply(
        f"bad {LONE} char", " then more", usage={"prompt_tokens": 3, "completion_tokens": 1e20}
    )


def config_for(url: str, **extra: Any) -> Any:
    return parse_config({"endpoints": {"srv": {"base_url": url, "models": ["m"]}}, **extra})


async def send(pilot: Any, text: str) -> None:
    prompt = pilot.app.screen.query_one(PromptBox)
    prompt.focus()
    prompt.set_prompt(text)
    await pilot.press("enter")


# --- item 2: one bad value ---------------------------------------------------------------


async def test_lone_surrogate_and_huge_usage_decode_well_formed(raw_server: RawServer) -> None:
    raw_server.push(hostile())
    eng = Engine(config_for(raw_server.base_url), KeyStore(use_keyring=False))
    try:
        events = await collect(eng, ChatRequest("srv/m", HELLO, ChatParams()))
        text = fold(events).text
        assert text == "bad \ufffd char then more"
        text.encode("utf-8")  # well-formed
        usage = next(e for e in events if isinstance(e, Usage))
        assert usage.completion is None and usage.prompt == 3  # 1e20 is no token count
        # Even a history that still holds a lone surrogate goes out as well-formed UTF-8.
        raw_server.push(reply("ok"))
        history = ({"role": "user", "content": f"x{LONE}y"},)
        events = await collect(eng, ChatRequest("srv/m", history, ChatParams()))
        assert fold(events).text == "ok"
        body = raw_server.requests[-1].body.decode("utf-8")  # strict: raises if ill-formed
        assert "x\ufffdy" in body
    finally:
        await eng.aclose()
    assert all(not isinstance(e, TextDelta) or LONE not in e.text for e in events)


def test_store_writer_survives_any_value_and_says_so(isolated_home: Path) -> None:
    errors: list[str] = []
    store = Store(isolated_home / "h.db", on_error=errors.append)
    try:
        store.create_conversation(1, "t")

        def boom(_c: sqlite3.Connection) -> None:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")

        store.submit(boom)
        store.save_message(2, 1, "assistant", f"kept {LONE} anyway")
        store.submit(lambda c: c.execute("INSERT INTO messages(id) VALUES (1)"))  # constraint
        store.save_message(3, 1, "user", "after the failures")
        assert store.flush(5), "the writer thread died"
        assert [r["content"] for r in store.messages(1)] == [
            "kept \ufffd anyway",
            "after the failures",
        ]
        assert any("OverflowError" in e and "skipped" in e for e in errors)
        assert store._thread.is_alive()
    finally:
        store.close()


async def _saves_continue(app: Any, raw_server: RawServer, over: Any, panes: int) -> None:
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "first")
        await wait_until(pilot, lambda: over(app), timeout=20, what="the hostile reply")
        raw_server.default = reply("second answer")
        await send(pilot, "second")
        await wait_until(
            pilot,
            lambda: over(app) and len(app.screen.query(AssistantMessage)) >= 2 * panes,
            timeout=20,
            what="the second reply",
        )
        shown = [m.body.source for m in app.screen.query(AssistantMessage)]
        assert "bad \ufffd char then more" in shown and "second answer" in shown
        assert app.store.flush(10)
        conv_id = app.screen.conv.id
        rows = app.store.messages(conv_id)
        contents = [r["content"] for r in rows if r["pane"] == 0]
        assert contents == ["first", "bad \ufffd char then more", "second", "second answer"]
        runs = app.store.runs(conv_id)
        assert len(runs) == 2 * panes and all(r["status"] == "complete" for r in runs)
        # The second request carried the first reply back, as well-formed UTF-8.
        last = raw_server.requests[-1].body.decode("utf-8")
        assert "bad \ufffd char" in last
        assert app.store._thread.is_alive()


async def test_chat_saves_continue_after_a_bad_value(
    isolated_home: Path, raw_server: RawServer
) -> None:
    raw_server.default = hostile()
    errors: list[str] = []
    store = Store(isolated_home / "history.db", on_error=errors.append)
    app = make_app(config_for(raw_server.base_url), isolated_home, models=["srv/m"], store=store)

    await _saves_continue(app, raw_server, replies_over, 1)
    assert errors == []


async def test_compare_saves_continue_after_a_bad_value(
    isolated_home: Path, raw_server: RawServer
) -> None:
    raw_server.default = hostile()
    errors: list[str] = []
    store = Store(isolated_home / "history.db", on_error=errors.append)
    app = make_app(
        config_for(raw_server.base_url), isolated_home, models=["srv/m", "srv/m"], store=store
    )

    await _saves_continue(app, raw_server, replies_over, 2)
    assert errors == []


async def _cli(*args: str, wait_s: float = 60) -> tuple[int, str, str]:
    """``tokenrace ARGS`` in a subprocess while this loop keeps serving the raw server."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui.cli",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env=dict(os.environ),
    )
    out, err = await asyncio.wait_for(proc.communicate(), wait_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode("utf-8"), err.decode("utf-8")


def write_config(home: Path, url: str, extra: str = "") -> None:
    (home / "config.toml").write_text(
        f'[endpoints.srv]\nbase_url = "{url}"\nmodels = ["m"]\n{extra}'
    )


async def test_headless_ask_and_replay_survive_a_bad_value(
    isolated_home: Path, raw_server: RawServer
) -> None:
    raw_server.default = hostile()
    write_config(isolated_home, raw_server.base_url)
    code, out, err = await _cli("ask", "-m", "srv/m", "hi")
    assert code == 0, err
    assert "bad \ufffd char then more" in out and "Traceback" not in err
    code, out, err = await _cli("ask", "-m", "srv/m", "--json", "hi")
    assert code == 0, err
    assert json.loads(out)[0]["text"] == "bad \ufffd char then more"
    suite = isolated_home / "suite.jsonl"
    suite.write_text('{"prompt": "hi"}\n')
    js, cs = isolated_home / "out.json", isolated_home / "out.csv"
    code, out, err = await _cli(
        "replay", str(suite), "-m", "srv/m", "--json", str(js), "--csv", str(cs)
    )
    assert code == 0, err
    assert json.loads(js.read_text())["runs"][0]["text"] == "bad \ufffd char then more"
    assert "bad \ufffd char" in cs.read_text("utf-8")


# --- item 11: one estimator; a failed pane is not "faster" --------------------------------


async def test_live_and_final_estimates_agree_without_usage(raw_server: RawServer) -> None:
    from tui.session.conversation import LiveRun

    # Batched deltas (many characters each) and no usage: n is estimated from characters.
    words = [f"{'word ' * 8}{i} " for i in range(14)]
    script = reply(*words)
    script.delays_s = [0.02] * len(script.chunks)
    raw_server.push(script)
    eng = Engine(config_for(raw_server.base_url), KeyStore(use_keyring=False))
    try:
        events = await collect(eng, ChatRequest("srv/m", HELLO, ChatParams()))
    finally:
        await eng.aclose()
    last_token = max(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    run = LiveRun("srv/m", events[0].t_ns, None, 3)
    run.feed(events[: last_token + 1])
    live = run.live(events[last_token].t_ns)
    run.feed(events[last_token + 1 :])
    final = run.final()
    assert final.output_tokens_estimated and final.output_tokens is not None
    assert final.output_tokens > 14  # characters / 4, not 14 events
    assert live.tokens == final.output_tokens
    assert live.decode_tps is not None and final.decode_tps is not None
    assert abs(live.decode_tps - final.decode_tps) < 1e-6 * final.decode_tps


async def test_a_failed_pane_is_not_rated_faster(isolated_home: Path) -> None:
    async with RawServer() as fast_fail, RawServer() as steady:
        # A: steady decoding; B: a quick burst of tokens, then the connection drops.
        a = reply(*[f"a{i} " for i in range(10)])
        a.delays_s = [0.05] * len(a.chunks)
        steady.default = a
        b = Script(chunks=[delta(f"b{i} ") for i in range(10)], headers=dict(SSE), ending="abort")
        fast_fail.default = b
        config = parse_config(
            {
                "endpoints": {
                    "a": {"base_url": steady.base_url, "models": ["m"]},
                    "b": {"base_url": fast_fail.base_url, "models": ["m"]},
                }
            }
        )
        app = make_app(config, isolated_home, models=["a/m", "b/m"])
        async with app.run_test(size=(160, 40)) as pilot:
            await send(pilot, "race")

            def over() -> bool:
                s = app.screen
                return (
                    isinstance(s, CompareScreen)
                    and len(s.runs) == 2
                    and not s.streaming
                    and all(r.shown_final for r in s.runs.values())
                )

            await wait_until(pilot, over, timeout=20, what="the race")
            s = app.screen
            assert isinstance(s, CompareScreen)
            assert s.runs[1].final().status == "interrupted"
            strip = str(s.query_one("#strip").render())
            this_prompt = strip.split("session", maxsplit=1)[0]
            assert "faster" not in this_prompt and "slower" not in this_prompt
            assert "interrupted" in this_prompt and "not compared" in this_prompt


# --- item 5: replay stops on Ctrl+C and plans lazily ----------------------------------------


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def test_replay_stops_on_ctrl_c_and_writes_what_finished(
    isolated_home: Path, raw_server: RawServer
) -> None:
    import signal
    import time

    script = reply("an ", "answer")
    script.delays_s = [0.05] * len(script.chunks)
    raw_server.default = script
    write_config(isolated_home, raw_server.base_url)
    suite = isolated_home / "suite.jsonl"
    suite.write_text('{"prompt": "one"}\n{"prompt": "two"}\n')
    js, cs = isolated_home / "out.json", isolated_home / "out.csv"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui.cli",
        "replay",
        str(suite),
        "-m",
        "srv/m",
        "--runs",
        "99999999999999999999",
        "--concurrency",
        "2",
        "--json",
        str(js),
        "--csv",
        str(cs),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 30
        while len(raw_server.requests) < 6:
            assert time.monotonic() < deadline, f"only {len(raw_server.requests)} requests"
            assert proc.returncode is None
            await asyncio.sleep(0.05)
        rss = _rss_mb(proc.pid)
        assert rss < 200, f"{rss:.0f} MB: the plan was built in memory"
        proc.send_signal(signal.SIGINT)
        at_signal = len(raw_server.requests)
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    await asyncio.sleep(0.3)
    assert proc.returncode == 130, err.decode()
    # At most the requests already being sent when the signal landed; none after.
    assert len(raw_server.requests) <= at_signal + 2
    assert b"interrupted" in err and b"Traceback" not in err
    runs = json.loads(js.read_text())["runs"]
    assert len(runs) >= 4 and all(r["status"] == "complete" for r in runs)
    assert [r["prompt"] for r in runs[:2]] == ["one", "two"]
    assert len(cs.read_text().splitlines()) == len(runs) + 1


# --- item 10: ids that cannot collide, and the migration to them -------------------------------

_MAKE_IDS = (
    "import sys, time\n"
    "from tui.session.store import new_id\n"
    "start = float(sys.argv[1])\n"
    "while time.time() < start: pass\n"  # both processes make ids in the same instant
    "print('\\n'.join(str(new_id()) for _ in range(150_000)))\n"
)


def test_ids_from_two_processes_never_collide() -> None:
    import subprocess
    import time

    start = str(time.time() + 1.5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MAKE_IDS, start], stdout=subprocess.PIPE, cwd=REPO, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    a, b = ({int(x) for x in out} for out in outs)
    assert len(a) == len(b) == 150_000  # unique within each process
    assert not a & b, f"{len(a & b)} ids made by both processes"
    assert [int(x) for x in outs[0]] == sorted(int(x) for x in outs[0])  # time-ordered


def _old_id(us: int, seq: int) -> int:
    """An id of schema 1: microseconds since the epoch × 1000 + a per-process counter."""
    return us * 1000 + seq % 1000


def test_migration_3_maps_every_id_and_keeps_the_order(isolated_home: Path) -> None:
    from tui.session.conversation import Conversation
    from tui.session.store import MIGRATIONS, connect, migrate, new_id

    db = isolated_home / "history.db"
    conn = connect(db)
    assert migrate(conn, upto=2) == 2  # the schema before the new ids
    conn.execute("PRAGMA foreign_keys = OFF")  # rows in the old shape, inserted by hand
    us = 1_764_000_000_000_000  # late 2025
    conv = _old_id(us, 0)
    ids = [_old_id(us + 1, 1), _old_id(us + 1, 2), _old_id(us + 2_000, 3)]
    conn.execute(
        "INSERT INTO conversations(id, title, created_at, updated_at) VALUES (?, 't', 0, 0)",
        (conv,),
    )
    for i, mid in enumerate(ids):
        conn.execute(
            "INSERT INTO messages(id, conversation_id, role, content, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, 0, 0)",
            (mid, conv, "user" if i % 2 == 0 else "assistant", f"m{i}"),
        )
    conn.execute(
        "INSERT INTO runs(id, message_id, conversation_id, model, endpoint, status, started_at) "
        "VALUES (?, ?, ?, 'srv/m', 'srv', 'complete', 0)",
        (_old_id(us + 3, 4), ids[1], conv),
    )
    conn.execute(
        "INSERT INTO prompt_history(id, conversation_id, text, created_at) VALUES (?, ?, 'm0', 0)",
        (_old_id(us + 4, 5), conv),
    )
    conn.execute(
        "INSERT INTO verdicts(id, conversation_id, race_id, winner, models, created_at) "
        "VALUES (?, ?, 'r', 'tie', '[]', 0)",
        (_old_id(us + 5, 6), conv),
    )
    conn.close()

    conn = connect(db)
    assert migrate(conn) == len(MIGRATIONS) >= 3
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    new_conv = conn.execute("SELECT id FROM conversations").fetchone()[0]
    assert new_conv != conv and new_conv < new_id()
    rows = conn.execute("SELECT id, content FROM messages ORDER BY id").fetchall()
    assert [r[1] for r in rows] == ["m0", "m1", "m2"]  # same order
    assert len({r[0] for r in rows}) == 3
    run = conn.execute("SELECT message_id, conversation_id FROM runs").fetchone()
    assert (run[0], run[1]) == (rows[1][0], new_conv)
    for table in ("prompt_history", "verdicts"):
        assert conn.execute(f"SELECT conversation_id FROM {table}").fetchone()[0] == new_conv
    conn.close()

    store = Store(db)
    try:
        loaded = Conversation.load(store, new_conv)
        assert loaded is not None
        assert [t.content for t in loaded.turns(0)] == ["m0", "m1", "m2"]
        assert loaded.turns(0)[1].metrics is not None  # the run still belongs to its reply
        loaded.add_user("a new prompt", store)  # sorts after the migrated messages
        assert store.flush()
        assert [r["content"] for r in store.messages(new_conv)][-1] == "a new prompt"
    finally:
        store.close()


# --- item 6: the start gate never waits for a request that cannot start ----------------------


async def test_max_concurrency_below_the_panes_does_not_stall(raw_server: RawServer) -> None:
    import time

    from providers.events import Notice
    from providers.start_gate import StartGate

    raw_server.default = reply("one ", "answer")
    cfg = parse_config(
        {"endpoints": {"srv": {"base_url": raw_server.base_url, "max_concurrency": 1}}}
    )
    eng = Engine(cfg, KeyStore(use_keyring=False))
    gate = StartGate(2)
    t = time.monotonic()
    try:
        both = await asyncio.gather(
            *(collect(eng, ChatRequest("srv/m", HELLO, ChatParams()), gate=gate) for _ in range(2))
        )
    finally:
        await eng.aclose()
    took = time.monotonic() - t
    assert all(fold(evs).text == "one answer" for evs in both)
    assert took < 3, f"{took:.1f} s: the gate waited for a request that could not start"
    waits = [e for evs in both for e in evs if isinstance(e, Notice) and "free slot" in e.message]
    assert len(waits) == 1 and "max_concurrency" in waits[0].message


async def test_a_hanging_tls_handshake_does_not_hold_the_other_pane(
    raw_server: RawServer,
) -> None:
    import time

    from providers.events import Notice
    from providers.start_gate import GATE_HOLD_S, StartGate

    accepted: list[asyncio.StreamWriter] = []

    async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)  # accepts TCP, never answers the TLS ClientHello

    hang = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = hang.sockets[0].getsockname()[1]
    raw_server.default = reply("ready")
    cfg = parse_config(
        {
            "endpoints": {
                "ok": {"base_url": raw_server.base_url},
                "tls": {"base_url": f"https://127.0.0.1:{port}/v1", "timeouts": {"connect": 8}},
            }
        }
    )
    eng = Engine(cfg, KeyStore(use_keyring=False))
    gate = StartGate(2)
    t = time.monotonic()
    try:
        ok_task = asyncio.create_task(
            collect(eng, ChatRequest("ok/m", HELLO, ChatParams()), gate=gate)
        )
        tls_task = asyncio.create_task(
            collect(eng, ChatRequest("tls/m", HELLO, ChatParams()), gate=gate)
        )
        ok = await asyncio.wait_for(ok_task, 20)
        ok_took = time.monotonic() - t
        tls_task.cancel()
        await asyncio.gather(tls_task, return_exceptions=True)
    finally:
        await eng.aclose()
        for w in accepted:
            w.transport.abort()
        hang.close()
    assert fold(ok).text == "ready"
    assert ok_took < GATE_HOLD_S + 1.5, f"the ready pane was held {ok_took:.1f} s"
    assert any(isinstance(e, Notice) and "not simultaneous" in e.message for e in ok)


# --- item 4: a cap on a reply; a long paragraph's cost bounded; keys work under any stream ------


def _endless_script(kb: int) -> Script:
    from tests.support.hostile_stream import words_kb

    return Script(chunks=[delta(words_kb(i)) for i in range(kb)], headers=dict(SSE))


def test_max_reply_bytes_is_a_config_key(isolated_home: Path) -> None:
    import pytest

    from providers.config import DEFAULT_MAX_REPLY_BYTES, ConfigError

    assert parse_config({}).max_reply_bytes == DEFAULT_MAX_REPLY_BYTES >= 1_000_000
    assert parse_config({"engine": {"max_reply_bytes": 5000}}).max_reply_bytes == 5000
    with pytest.raises(ConfigError, match="max_reply_bytes"):
        parse_config({"engine": {"max_reply_bytes": 0}})


async def test_a_reply_stops_at_the_cap_and_keeps_its_text(raw_server: RawServer) -> None:
    from providers.metrics import compute_metrics

    raw_server.push(_endless_script(3000))  # 3 MB, no newline
    cfg = parse_config(
        {
            "endpoints": {"srv": {"base_url": raw_server.base_url}},
            "engine": {"max_reply_bytes": 100_000},
        }
    )
    eng = Engine(cfg, KeyStore(use_keyring=False))
    try:
        events = await asyncio.wait_for(collect(eng, ChatRequest("srv/m", HELLO, ChatParams())), 20)
    finally:
        await eng.aclose()
    t = fold(events)
    assert t.error is not None and t.error.kind == "reply_cap"
    assert "max_reply_bytes" in t.error.message
    assert len(t.text.encode()) == 100_000  # kept, up to the cap exactly
    assert compute_metrics(events).status == "error"


async def test_headless_ask_ends_an_endless_reply_at_the_cap(isolated_home: Path) -> None:
    from tests.support.hostile_stream import HostileServer

    with HostileServer() as srv:
        write_config(isolated_home, srv.base_url, "[engine]\nmax_reply_bytes = 300000\n")
        code, out, _err = await _cli("ask", "-m", "srv/endless", "--json", "go", wait_s=60)
    doc = json.loads(out)[0]
    assert code == 1 and doc["status"] == "error" and doc["error_kind"] == "reply_cap"
    assert len(doc["text"].encode()) == 300_000


async def test_a_huge_open_paragraph_costs_a_bounded_frame() -> None:
    from textual.app import App, ComposeResult

    from tests.support.hostile_stream import words_kb
    from tui.widgets import streaming_markdown as sm
    from tui.widgets.streaming_markdown import StreamingMarkdown, render_markdown

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield StreamingMarkdown("", driven=True)

    app = Host()
    async with app.run_test(size=(100, 40)) as pilot:
        view = app.query_one(StreamingMarkdown)
        sm_budget_lines = 2 * sm.PARAGRAPH_FRAME_CHARS // 90 + 20
        text = "".join(words_kb(i) for i in range(600))  # 600 KB in one paragraph
        for i in range(0, len(text), 100_000):  # arriving far faster than it can be drawn
            before = view.rendered_lines
            view.append(text[i : i + 100_000])
            view.sync()
            assert view.rendered_lines - before <= sm_budget_lines  # not the 100 KB that came
        # It catches up by itself, a frame's worth at a time, and ends exactly right.
        await wait_until(pilot, lambda: view._paragraph.behind == 0, timeout=60, what="catch-up")
        view.finish()
        shown = [s.text.rstrip() for s in view._closed_lines]
        whole = view._render_strips(render_markdown(text[:60_000], True), view._width)
        assert shown[: len(whole) - 3] == [s.text.rstrip() for s in whole][:-3]
        assert len(shown) > 6000


def _hostile_config(url: str, cap: int) -> Any:
    return parse_config(
        {
            "endpoints": {"srv": {"base_url": url, "models": ["endless", "fine"]}},
            "engine": {"max_reply_bytes": cap},
        }
    )


def _runs(app: Any) -> list[Any]:
    s = app.screen
    if isinstance(s, CompareScreen):
        return list(s.runs.values())
    return [s.run] if isinstance(s, ChatScreen) and s.run is not None else []


async def _endless_reply_ends_at_the_cap(isolated_home: Path, models: list[str]) -> None:
    from tests.support.hostile_stream import HostileServer

    with HostileServer() as srv:
        app = make_app(_hostile_config(srv.base_url, 400_000), isolated_home, models=models)
        async with app.run_test(size=(160, 40)) as pilot:
            await send(pilot, "go on forever")
            await wait_until(
                pilot,
                lambda: len(_runs(app)) == len(models) and all(r.done for r in _runs(app)),
                timeout=30,
                what="the cap",
            )
            for run in _runs(app):
                assert run.status == "error" and run.final().status == "error"
                assert len(run.text.encode()) == 400_000  # the text up to the cap is kept
            await wait_until(
                pilot, lambda: all(r.shown_final for r in _runs(app)), timeout=60, what="drawn"
            )
            shown = [m.body.source for m in app.screen.query(AssistantMessage)]
            assert [len(t) for t in shown] == [400_000] * len(models)
            assert app.store is not None and app.store.flush(10)
            screen = app.screen
            assert isinstance(screen, (ChatScreen, CompareScreen))
            rows = app.store.runs(screen.conv.id)
            assert [r["error_kind"] for r in rows] == ["reply_cap"] * len(models)


async def test_chat_endless_reply_ends_at_the_cap(isolated_home: Path) -> None:
    await _endless_reply_ends_at_the_cap(isolated_home, ["srv/endless"])


async def test_compare_endless_reply_ends_at_the_cap(isolated_home: Path) -> None:
    await _endless_reply_ends_at_the_cap(isolated_home, ["srv/endless", "srv/endless"])


async def _esc_during_an_endless_stream(isolated_home: Path, models: list[str]) -> None:
    import time

    from tests.support.hostile_stream import HostileServer

    with HostileServer() as srv:
        # A cap far beyond what arrives in the test: the stream is endless here.
        app = make_app(_hostile_config(srv.base_url, 1 << 30), isolated_home, models=models)
        async with app.run_test(size=(160, 40)) as pilot:
            await send(pilot, "go on forever")
            await wait_until(
                pilot,
                lambda: (
                    len(_runs(app)) == len(models)
                    and all(r.text_len > 1_500_000 for r in _runs(app))
                ),
                timeout=30,
                what="1.5 MB streamed",
            )
            t = time.monotonic()
            await pilot.press("escape")
            await wait_until(
                pilot, lambda: all(r.done for r in _runs(app)), timeout=20, what="Esc to cancel"
            )
            took = time.monotonic() - t
            assert all(r.status == "cancelled" for r in _runs(app))
            assert took < 3, f"Esc took {took:.1f} s under an endless stream"


async def test_chat_esc_works_during_an_endless_stream(isolated_home: Path) -> None:
    await _esc_during_an_endless_stream(isolated_home, ["srv/endless"])


async def test_compare_esc_works_during_an_endless_stream(isolated_home: Path) -> None:
    await _esc_during_an_endless_stream(isolated_home, ["srv/endless", "srv/endless"])


# --- item 7: a damaged database is salvaged; a locked one loses nothing at quit ---------------


def _fill(db: Path, conversations: int = 20, per: int = 60) -> dict[int, list[str]]:
    """A history with many small messages (they span many pages); returns what was saved."""
    from tui.session.conversation import Conversation

    store = Store(db)
    saved: dict[int, list[str]] = {}
    for c in range(conversations):
        conv = Conversation()
        conv.title = f"conversation {c}"
        conv.ensure_saved(store)
        texts = [f"MARK-{c}-{i} " + "words " * 20 for i in range(per)]
        for i, text in enumerate(texts):
            store.save_message(c * 1000 + i + 1, conv.id, "user", text)
        saved[conv.id] = texts
    assert store.close() is None
    return saved


def _damage(db: Path, marker: str) -> None:
    """Break the b-tree page that holds ``marker`` (its page type byte), as a bad disk would."""
    con = sqlite3.connect(db)
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(db.read_bytes())
    at = data.find(marker.encode())
    assert at > 0
    page = at // page_size
    data[page * page_size] = 0x2A  # not a b-tree page type
    db.write_bytes(bytes(data))


def test_a_damaged_database_is_salvaged_and_both_paths_are_said(isolated_home: Path) -> None:
    db = isolated_home / "data" / "history.db"
    db.parent.mkdir(parents=True)
    saved = _fill(db)
    _damage(db, "MARK-10-30 ")
    told: list[str] = []
    store = Store(db, on_error=told.append)
    try:
        # Found at open, or by the first read that touches the page: salvaged either way.
        kept = sum(len(store.messages(cid)) for cid in saved)
        assert store.salvaged is not None
        damaged = store.salvaged.damaged
        assert damaged.exists() and damaged.name.startswith("history.db.corrupt-")
        assert any(str(db) in m and str(damaged) in m and "damaged" in m for m in told)
        rows = {c.id: c for c in store.conversations()}
        assert set(rows) == set(saved)  # every conversation row was readable
        total = sum(len(t) for t in saved.values())
        assert total - 60 <= kept < total  # one page of messages lost, the rest saved
        # It keeps working: writes go to the fresh file.
        store.save_message(999_999, next(iter(saved)), "user", "after the salvage")
        assert store.flush()
        assert store.messages(next(iter(saved)))[-1]["content"] == "after the salvage"
    finally:
        store.close()


def test_export_and_resume_on_a_damaged_database(isolated_home: Path) -> None:
    from tests.support.cli import run_cli
    from tui.launch import resume_conversation
    from tui.session.state import UiState

    db = isolated_home / "data" / "history.db"
    db.parent.mkdir(parents=True)
    saved = _fill(db, conversations=6)
    _damage(db, "MARK-3-30 ")
    damaged_conv = list(saved)[3]
    r = run_cli("export", str(damaged_conv), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "corrupt-" in r.stderr and str(db) in r.stderr
    assert 0 < len(json.loads(r.stdout)["messages"]) < len(saved[damaged_conv])
    r = run_cli("export", "--list")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == len(saved)
    store = Store(db)
    try:
        conv = resume_conversation(store, UiState())
        assert conv is not None and conv.turns(0)
    finally:
        store.close()


async def test_f4_on_a_damaged_database(isolated_home: Path) -> None:
    from textual.widgets import OptionList

    from tui.screens.conversations import ConversationsScreen

    db = isolated_home / "history.db"
    saved = _fill(db, conversations=5)
    damaged_conv = list(saved)[2]
    _damage(db, "MARK-2-30 ")
    told: list[str] = []
    store = Store(db, on_error=told.append)
    app = make_app(
        config_for("http://127.0.0.1:9/v1"), isolated_home, store=store, models=["srv/m"]
    )

    def on_error(message: str) -> None:
        told.append(message)
        app.store_error(message)

    store.on_error = on_error
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen), what="the chat")
        await pilot.press("f4")
        await wait_until(pilot, lambda: isinstance(app.screen, ConversationsScreen), what="F4")
        screen = app.screen
        assert isinstance(screen, ConversationsScreen)
        assert len(screen.rows) == len(saved)
        options = screen.query_one(OptionList)
        options.highlighted = [r.id for r in screen.rows].index(damaged_conv)
        options.focus()
        await pilot.press("enter")  # resume the conversation whose page is damaged
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, ChatScreen) and app.screen.conv.id == damaged_conv,
            what="the damaged conversation, resumed",
        )
        turns = screen_of(app, ChatScreen).conv.turns(0)
        assert 0 < len(turns) < len(saved[damaged_conv])
        await wait_until(
            pilot,
            lambda: any("corrupt-" in n.message for n in app._notifications),
            what="the notice",
        )
    assert any("corrupt-" in m and str(db) in m for m in told)


def test_quit_while_locked_saves_elsewhere_and_merges_next_time(isolated_home: Path) -> None:
    db = isolated_home / "history.db"
    told: list[str] = []
    store = Store(db, on_error=told.append)
    store.create_conversation(1, "t")
    assert store.flush()
    other = sqlite3.connect(db, timeout=0, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    try:
        store.save_message(2, 1, "user", "written while locked")
        store.save_message(3, 1, "assistant", "the reply, also while locked")
        message = store.close(wait_s=1.0)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert message is not None and "history-unsaved-" in message
    unsaved = list(isolated_home.glob("history-unsaved-*.db"))
    assert len(unsaved) == 1 and str(unsaved[0]) in message
    store = Store(db, on_error=told.append)  # the next start merges them
    try:
        contents = [r["content"] for r in store.messages(1)]
        assert contents == ["written while locked", "the reply, also while locked"]
        assert not list(isolated_home.glob("history-unsaved-*.db"))
        assert any("merged 1 file" in m for m in told)
    finally:
        store.close()


async def test_compare_two_panes_on_one_slot_race_without_a_stall(
    isolated_home: Path, raw_server: RawServer
) -> None:
    import time

    raw_server.default = reply("same ", "endpoint")
    config = parse_config(
        {
            "endpoints": {
                "srv": {"base_url": raw_server.base_url, "models": ["m"], "max_concurrency": 1}
            }
        }
    )
    app = make_app(config, isolated_home, models=["srv/m", "srv/m"])
    async with app.run_test(size=(160, 40)) as pilot:
        t = time.monotonic()
        await send(pilot, "race")

        def over() -> bool:
            s = app.screen
            return (
                isinstance(s, CompareScreen)
                and len(s.runs) == 2
                and not s.streaming
                and all(r.shown_final for r in s.runs.values())
            )

        await wait_until(pilot, over, timeout=20, what="the race")
        took = time.monotonic() - t
        assert took < 5, f"the race took {took:.1f} s"
        s = app.screen
        assert isinstance(s, CompareScreen)
        assert all(r.status == "complete" for r in s.runs.values())
        notes = [str(m.notices.render()) for m in s.query(AssistantMessage)]
        assert sum("free slot" in n for n in notes) == 1  # the wait is said where it happened


async def test_tiny_deltas_count_against_the_cap(raw_server: RawServer) -> None:
    # One character a delta: the cap bounds the events held, not only the text's bytes.
    raw_server.push(Script(chunks=[delta("x") for _ in range(5000)], headers=dict(SSE)))
    cfg = parse_config(
        {
            "endpoints": {"srv": {"base_url": raw_server.base_url}},
            "engine": {"max_reply_bytes": 8000},
        }
    )
    eng = Engine(cfg, KeyStore(use_keyring=False))
    try:
        events = await asyncio.wait_for(collect(eng, ChatRequest("srv/m", HELLO, ChatParams())), 30)
    finally:
        await eng.aclose()
    t = fold(events)
    assert t.error is not None and t.error.kind == "reply_cap"
    assert len(t.text) == 1000  # 8000 bytes / 8 a token event

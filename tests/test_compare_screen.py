"""The compare screen through Pilot, against the mock server and the real engine process."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from providers.events import RequestSent, StreamError
from tests.support.mock_server import MockServerProcess
from tests.support.tui import (
    chat_requests,
    make_app,
    mock_config,
    pane_replies,
    replies_over,
    scenario,
    send,
    wait_for_screen,
    wait_until,
)
from tests.test_timing import (
    BUSY_TTFT_TOLERANCE_MS,
    RATE_TOLERANCE,
    TTFT_TOLERANCE_MS,
    server_figures,
)
from tui.screens.compare import CompareScreen
from tui.screens.diff_view import DiffView
from tui.screens.model_picker import ModelPicker
from tui.screens.pane_chooser import PaneChooser
from tui.screens.summary import SummaryScreen
from tui.session.race import project, summarise
from tui.session.state import UiState
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.error_panel import ErrorPanel


def _two_panes(mock: MockServerProcess, home: Path, spec: dict[str, Any], **second: Any) -> Any:
    """The app racing two panes, each on its own scenario made from ``spec`` (the second's
    with ``second`` changed)."""
    models = [scenario(mock, **spec), scenario(mock, **{**spec, **second})]
    return make_app(mock_config(mock), home, models=models)


def screen(app: Any) -> CompareScreen:
    assert isinstance(app.screen, CompareScreen)
    return app.screen


async def test_panes_stream_side_by_side(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    a = scenario(mock_server, text="Alpha answer here.", ttft_ms=10, tps=200)
    b = scenario(mock_server, text="Beta answer, a bit slower.", ttft_ms=60, tps=100)
    app = make_app(mock_config(mock_server), isolated_home, models=[a, b])
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "race")
        await wait_until(pilot, lambda: replies_over(app), what="race")
        assert pane_replies(app, 0)[0].body.source == "Alpha answer here."
        assert pane_replies(app, 1)[0].body.source == "Beta answer, a bit slower."
        strip = str(app.screen.query_one("#strip").render())
        assert "◆ A" not in strip and "B vs A" in strip and "finishing order 1. A  2. B" in strip
        assert "▲ later" in strip  # B's first token came later than A's, said with a glyph
        # Narrower, the session's figures take a row of their own, under this prompt's: no
        # row wraps in the middle of a figure.
        await pilot.resize_terminal(120, 40)
        await pilot.pause(0.2)
        widget = app.screen.query_one("#strip")
        lines = str(widget.render()).split("\n")
        assert lines[0].startswith("● B vs A this prompt:") and "session" not in lines[0]
        assert lines[1].lstrip().startswith("session (1):")
        assert widget.size.height == len(lines) and all(len(ln) <= 120 for ln in lines)
        await pilot.resize_terminal(160, 40)
        # Each pane keeps its own history; both requests left together.
        reqs = chat_requests(mock_server, a) + chat_requests(mock_server, b)
        s = screen(app)
        # Left together: the engine's own t0 stamps (the moment each request's last byte went to
        # the socket) within 5 ms; bench/ holds the 1 ms target. The server's receipt adds its
        # own scheduling (6.7 ms apart once at load average 8), so it gets a busy machine's margin.
        t0 = [next(e.t_ns for e in s.runs[i].events if isinstance(e, RequestSent)) for i in (0, 1)]
        assert abs(t0[0] - t0[1]) < 5_000_000, t0
        assert abs(reqs[0]["received_ns"] - reqs[1]["received_ns"]) < 25_000_000
        assert [t.content for t in s.conv.turns(1)] == ["race", "Beta answer, a bit slower."]


async def test_each_pane_can_race_its_own_temperature(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    # One model, two configurations: /temperature A 0 and /temperature B 1.
    model = scenario(mock_server, text="Same model.", ttft_ms=5, tps=200)
    app = make_app(mock_config(mock_server), isolated_home, models=[model, model])
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "/temperature A 0")
        await send(pilot, "/temperature B 1")
        assert "T=0" in str(screen(app).pane(0).header.render())
        assert "T=1" in str(screen(app).pane(1).header.render())
        mock_server.reset_log()
        await send(pilot, "race")
        await wait_until(pilot, lambda: replies_over(app), what="race")
        sent = sorted(r["body"]["temperature"] for r in chat_requests(mock_server))
        assert sent == [0, 1]
        # A temperature for every pane replaces the per-pane ones.
        await send(pilot, "/temperature 0.5")
        assert "T=" not in str(screen(app).pane(1).header.render())
        mock_server.reset_log()
        await send(pilot, "again")
        await wait_until(pilot, lambda: replies_over(app), what="second race")
        sent = [r["body"]["temperature"] for r in chat_requests(mock_server)]
        assert sent == [0.5, 0.5]


async def test_cancel_one_pane_then_all(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    slow = scenario(mock_server, n_tokens=400, ttft_ms=10, tps=40)
    app = make_app(mock_config(mock_server), isolated_home, models=[slow, slow])
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "go")
        await wait_until(
            pilot,
            lambda: all(
                screen(app).runs.get(i) and screen(app).runs[i].text_len > 10 for i in (0, 1)
            ),
            what="both streaming",
        )
        await pilot.press("alt+2")
        await wait_until(pilot, lambda: screen(app).runs[1].done, timeout=3)
        s = screen(app)
        assert s.runs[1].status == "cancelled" and not s.runs[0].done  # A keeps streaming
        assert pane_replies(app, 1)[0].body.source  # the partial text stays
        await pilot.press("escape")
        await wait_until(pilot, lambda: replies_over(app), timeout=3, what="all cancelled")
        assert s.runs[0].status == "cancelled"


async def test_one_pane_failing_leaves_the_other_streaming(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    ok = scenario(mock_server, text="Fine answer.", ttft_ms=200, tps=50)
    bad = scenario(mock_server, status=500, error_body={"error": {"message": "boom"}})
    config = mock_config(mock_server, engine={"retries": 0})
    app = make_app(config, isolated_home, models=[ok, bad])
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "hello")
        await wait_until(pilot, lambda: replies_over(app), what="race")
        s = screen(app)
        assert s.runs[0].status == "complete" and s.runs[1].status == "error"
        assert pane_replies(app, 0)[0].body.source == "Fine answer."
        panel = s.pane(1).query_one(ErrorPanel)
        assert "HTTP 500" in panel.message and "boom" in panel.message
        assert "B did not finish" in str(app.screen.query_one("#strip").render())


async def test_model_change_in_one_pane(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    a = scenario(mock_server, text="from A", ttft_ms=5)
    b1 = scenario(mock_server, text="from B1", ttft_ms=5)
    b2 = scenario(mock_server, text="from B2", ttft_ms=5)
    app = make_app(mock_config(mock_server), isolated_home, models=[a, b1])
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "first")
        await wait_until(pilot, lambda: replies_over(app))
        await send(pilot, f"/model B {b2}")
        await pilot.pause(0.1)
        assert screen(app).models == [a, b2]
        await send(pilot, "second")
        await wait_until(pilot, lambda: replies_over(app) and len(pane_replies(app, 1)) == 2)
        assert [w.model for w in pane_replies(app, 1)] == [b1, b2]
        (req,) = [r for r in mock_server.log() if r["model"] == b2.split("/")[1]]
        # Pane B's own history went to the new model; pane A's did not leak into it.
        assert [m["content"] for m in req["body"]["messages"]] == ["first", "from B1", "second"]


async def test_model_change_with_the_picker(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    app = make_app(
        mock_config(mock_server),
        isolated_home,
        models=["mock/mock-fast", "mock/mock-fast"],
        start_engine=False,
    )
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("f2")
        await wait_for_screen(pilot, PaneChooser)
        await pilot.press("b")
        await wait_for_screen(pilot, ModelPicker)
        await pilot.press(*"mockslow", "enter")
        await wait_for_screen(pilot, CompareScreen)
        assert screen(app).models == ["mock/mock-fast", "mock/mock-slow"]


async def test_verdict_diff_summary_and_projection(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    a = scenario(mock_server, text="one\ntwo\nthree", ttft_ms=5, prompt_tokens=100)
    b = scenario(mock_server, text="one\n2\nthree", ttft_ms=30, prompt_tokens=100)
    config = mock_config(
        mock_server, prices={a: {"input": 1.0, "output": 2.0}, b: {"input": 3.0, "output": 4.0}}
    )
    app = make_app(config, isolated_home, models=[a, b])
    async with app.run_test(size=(170, 50)) as pilot:
        for prompt in ("q1", "q2"):
            await send(pilot, prompt)
            await wait_until(pilot, lambda: replies_over(app))
            await pilot.press("f9")
            await wait_for_screen(pilot, PaneChooser)
            await pilot.press("b" if prompt == "q1" else "t")
            await wait_for_screen(pilot, CompareScreen)
        s = screen(app)
        await pilot.press("f8")
        await wait_for_screen(pilot, DiffView)
        diff = str(app.screen.query_one("#diff").render())
        assert "-two" in diff and "+2" in diff
        await pilot.press("escape")
        assert app.store is not None and app.store.flush()
        verdicts = app.store.verdicts(s.conv.id)
        assert [v["winner"] for v in verdicts] == [b, "tie"]
        assert json.loads(verdicts[0]["models"]) == [a, b]
        runs = app.store.runs(s.conv.id)
        assert len(runs) == 4 and {r["race_id"] for r in runs} == {v["race_id"] for v in verdicts}
        await pilot.press("f6")
        await wait_for_screen(pilot, SummaryScreen)
        summary = app.screen
        assert isinstance(summary, SummaryScreen)
        expected = summarise(runs, verdicts)
        assert summary.rows == expected
        by_model = {r.model: r for r in expected}
        assert by_model[b].wins == 1 and by_model[a].ties == 1 and by_model[b].ties == 1
        assert by_model[a].replies == 2
        stored_cost = sum(r["cost_usd"] for r in runs if r["model"] == a)
        assert by_model[a].cost_usd == pytest.approx(stored_cost)
        text = str(summary.query_one("#summary").render())
        assert a[:40] in text and b[:40] in text
        # The projection uses the prices: 50M in, 10M out by default.
        proj = str(summary.query_one("#projection").render())
        expected_a = project([a], 50_000_000, 10_000_000, config)[0].monthly_usd
        assert expected_a == pytest.approx(50 * 1.0 + 10 * 2.0)
        assert "$70.00" in proj and "$190.00" in proj and "cheapest" in proj
        from textual.widgets import Input

        app.screen.query_one("#in-per-month", Input).value = "1M"
        await pilot.pause(0.1)
        assert "$21.00" in str(summary.query_one("#projection").render())


async def test_four_panes(isolated_home: Path, mock_server: MockServerProcess) -> None:
    models = [scenario(mock_server, text=f"pane {i}", ttft_ms=5 + i * 10) for i in range(4)]
    app = make_app(mock_config(mock_server), isolated_home, models=[*models, models[0]])
    async with app.run_test(size=(200, 40)) as pilot:
        assert len(screen(app).panes) == 4  # a fifth -m is more than the screen takes
        await send(pilot, "all four")
        await wait_until(pilot, lambda: replies_over(app))
        assert [pane_replies(app, i)[0].body.source for i in range(4)] == [
            f"pane {i}" for i in range(4)
        ]


async def _measure_slow(
    home: Path, mock: MockServerProcess, models: list[str], slow_name: str
) -> tuple[float, float, float, float]:
    """Run the slow model alone (chat) or in a race; its TTFT and rate, ours and the server's."""
    from tui.screens.chat import ChatScreen

    app = make_app(mock_config(mock), home, models=models)
    async with app.run_test(size=(160, 45)) as pilot:
        await send(pilot, "count")
        if len(models) == 1:

            def done() -> bool:
                s = app.screen
                return isinstance(s, ChatScreen) and s.run is not None and s.run.shown_final

            await wait_until(pilot, done, timeout=30)
            assert isinstance(app.screen, ChatScreen) and app.screen.run is not None
            m = app.screen.run.final()
        else:
            await wait_until(pilot, lambda: replies_over(app), timeout=30)
            m = screen(app).runs[1].final()
            a = screen(app).runs[0].final()
            errors = [e for e in screen(app).runs[0].events if isinstance(e, StreamError)]
            assert a.status == "complete", errors
    record = [r for r in mock.log() if r["model"] == slow_name][-1]
    srv_ttft, srv_rate = server_figures(record)
    assert m.ttft_ms is not None and m.decode_tps is not None
    return m.ttft_ms, m.decode_tps, srv_ttft, srv_rate


@pytest.mark.alone  # timed against the server's clock (tests/conftest.py)
async def test_one_sides_rendering_never_moves_the_others_numbers(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    """B streams 50 tok/s; A pours a long code-heavy answer in large chunks meanwhile.
    B's figures match the server's clock racing as alone (3 ms alone, 10 ms racing; 2%)."""
    from tests.support.mock_server import builtin_scenarios

    spec = builtin_scenarios()["mock-markdown"]
    heavy_text = spec.get("text") or "".join(spec["tokens"])
    # ≈6,000 tokens in chunks of 100, 20 chunks a second: A's rendering keeps the UI busy for
    # the whole of B's reply, while the server and the engine have little to do for A. (Sent
    # as fast as the server can, A's burst held B's own sends back by up to a second and kept
    # the engine decoding: on a busy 2-core machine that measured the load, not the UI. A
    # paced high rate would measure the mock server's spin-wait, a whole core at 2,500 tok/s.)
    heavy = scenario(
        mock_server, text=heavy_text * 2, ttft_ms=5, tps=2000, tokens_per_chunk=100, spin=False
    )
    slow_name = f"slow-{uuid.uuid4().hex[:6]}"
    mock_server.add_scenario(slow_name, {"n_tokens": 60, "ttft_ms": 300, "tps": 50})
    slow = f"mock/{slow_name}"

    async def best_of(models: list[str], attempts: int) -> tuple[float, float, float, float]:
        # The scheduler of a loaded 2-core machine can delay one read by a few ms (the app,
        # the engine and the mock server share the cores): the best of several runs is what
        # the code does, as in tests/test_timing.py.
        runs = []
        for _ in range(attempts):
            runs.append(await _measure_slow(isolated_home, mock_server, models, slow_name))
            if abs(runs[-1][0] - runs[-1][2]) <= 1.0:
                break
        return min(runs, key=lambda r: abs(r[0] - r[2]))

    figures = {"alone": await best_of([slow], 3), "racing": await best_of([heavy, slow], 5)}
    ttft, rate, srv_ttft, srv_rate = figures["alone"]
    assert abs(ttft - srv_ttft) <= TTFT_TOLERANCE_MS, figures
    assert rate == pytest.approx(srv_rate, rel=RATE_TOLERANCE), figures
    # Racing, the app renders A on a machine whose two cores the app, the engine and the
    # server share: a read of B's first token can wait a few ms more for a core. Numbers
    # taken where pixels are drawn would be off by A's rendering, tens to hundreds of ms.
    ttft, rate, srv_ttft, srv_rate = figures["racing"]
    assert abs(ttft - srv_ttft) <= BUSY_TTFT_TOLERANCE_MS, figures
    assert rate == pytest.approx(srv_rate, rel=RATE_TOLERANCE), figures


async def test_compare_keys_are_in_help_and_the_palette(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from textual.binding import Binding
    from textual.widgets import Static

    from tui.screens.help_screen import HelpScreen

    app = make_app(
        mock_config(mock_server),
        isolated_home,
        models=["mock/mock-fast", "mock/mock-slow"],
        start_engine=False,
    )
    async with app.run_test(size=(120, 70)) as pilot:
        palette = [c.title for c in app.get_system_commands(app.screen)]
        await pilot.press("f1")
        await wait_for_screen(pilot, HelpScreen)
        text = "\n".join(str(s.render()) for s in app.screen.query(Static))
        for b in CompareScreen.BINDINGS:
            assert isinstance(b, Binding)
            described = b.tooltip or b.description
            assert described in text, described
            assert described in palette, described


def _reopened(app: Any) -> bool:
    return isinstance(app.screen, CompareScreen) and len(app.screen.query(AssistantMessage)) == 3


def _this_prompt(strip: str) -> str:
    """Pane B's ``this prompt:`` figures in the strip."""
    return strip.partition("B vs A")[2].partition("session")[0]


async def test_a_race_reopens_with_its_panes_strip_and_verdict(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    """#14 items 9 and 11: --resume (a new app given the stored conversation) and F4 reopen a
    race as a race: every pane, the comparison strip with its figures, the verdict."""
    from tui.launch import resume_conversation
    from tui.session.store import Store

    a = scenario(mock_server, text="Alpha answer here.", ttft_ms=10, tps=200)
    b = scenario(mock_server, text="Beta answer, a bit slower.", ttft_ms=60, tps=100)
    c = scenario(mock_server, text="Gamma.", ttft_ms=30, tps=100)
    store = Store(isolated_home / "history.db")
    state = UiState()
    app = make_app(
        mock_config(mock_server),
        isolated_home,
        models=[a, b, c],
        store=store,
        state=state,
        save_state=False,
    )
    async with app.run_test(size=(200, 40)) as pilot:
        await send(pilot, "race")
        await wait_until(pilot, lambda: replies_over(app), what="race")
        live_strip = str(app.screen.query_one("#strip").render())
        await pilot.press("f9")
        await wait_until(pilot, lambda: isinstance(app.screen, PaneChooser), what="chooser")
        await pilot.press("b")
        await wait_until(pilot, lambda: bool(screen(app).verdicts), what="verdict")
        conv_id = screen(app).conv.id
    store.flush()
    for how in ("resume", "f4"):
        conv = resume_conversation(store, state) if how == "resume" else None
        app = make_app(
            mock_config(mock_server),
            isolated_home,
            store=store,
            state=state,
            conversation=conv,
            models=None if conv else [a],
            save_state=False,
        )
        async with app.run_test(size=(200, 40)) as pilot:
            if how == "f4":
                app.open_conversation(conv_id)
            await wait_until(pilot, partial(_reopened, app), what=how)
            s = screen(app)
            assert s.models == [a, b, c], how
            assert [len(pane_replies(app, i)) for i in range(3)] == [1, 1, 1]
            strip = str(s.query_one("#strip").render())
            assert "this prompt: TTFT —" not in strip, (how, strip)
            assert "session (1)" in strip and "finishing order 1. A" in strip, (how, strip)
            assert "verdict: B best" in strip, (how, strip)
            # The same figures as when the race had just run.
            assert _this_prompt(strip) == _this_prompt(live_strip), (strip, live_strip)
            assert s.verdicts and s.verdicts[0][1] == b
    store.close()


async def test_compare_keys_are_remappable_and_help_shows_the_remap(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from textual.widgets import Static

    from tui.screens.help_screen import HelpScreen

    slow = scenario(mock_server, n_tokens=400, ttft_ms=10, tps=40)
    config = mock_config(mock_server, keys={"cancel_pane_b": "ctrl+f"})
    app = make_app(config, isolated_home, models=[slow, slow])
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = "\n".join(str(s.render()) for s in app.screen.query(Static))
        assert re.search(r"Ctrl\+F +Cancel pane B +\[cancel_pane_b\]", text), text
        assert re.search(r"F10 +Cancel one pane's reply \(press its letter\)", text), text
        await pilot.press("escape")
        await send(pilot, "go")
        await wait_until(
            pilot,
            lambda: all(
                screen(app).runs.get(i) and screen(app).runs[i].text_len > 10 for i in (0, 1)
            ),
            what="both streaming",
        )
        await pilot.press("alt+2")  # the default no longer cancels pane B
        await pilot.pause(0.3)
        assert not screen(app).runs[1].done
        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: screen(app).runs[1].done, timeout=3, what="B cancelled")
        assert screen(app).runs[1].status == "cancelled" and not screen(app).runs[0].done
        await pilot.press("f10")
        await wait_until(pilot, lambda: isinstance(app.screen, PaneChooser), what="chooser")
        await pilot.press("a")
        await wait_until(pilot, lambda: replies_over(app), timeout=3, what="A cancelled")
        assert screen(app).runs[0].status == "cancelled"


@pytest.mark.parametrize("when", ["streaming", "after the stream"])
async def test_a_fault_while_showing_a_reply_ends_it_and_the_screen_goes_on(
    isolated_home: Path,
    mock_server: MockServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    """A bug on our side while a pane shows its reply (here the widget raises) ends that
    reply with what it received and says so; the screen is not left streaming for good: the
    other pane finishes and the next prompt goes out."""
    ok = scenario(mock_server, text="Fine answer.", ttft_ms=50, tps=50)
    # The end of the stream comes 30 tokens (0.6 s) after "BOOM": on a loaded machine the
    # engine read "BOOM" and the end in one batch of a shorter reply, and the reply was then
    # whole (complete, the failure a notice on it: ``_failed``), not cut off in error.
    odd_text = "First part. BOOM second part." + " more" * 30
    odd = scenario(mock_server, text=odd_text, ttft_ms=50, tps=50)
    if when == "streaming":
        original = AssistantMessage.append_text

        def append_text(self: AssistantMessage, text: str) -> None:
            if "BOOM" in text:
                raise RuntimeError("drawing failed")
            original(self, text)

        monkeypatch.setattr(AssistantMessage, "append_text", append_text)
    else:
        finish_text = AssistantMessage.finish_text

        def failing_finish(self: AssistantMessage) -> None:
            if "BOOM" in self.body.source:
                raise RuntimeError("drawing failed")
            finish_text(self)

        monkeypatch.setattr(AssistantMessage, "finish_text", failing_finish)
    app = make_app(mock_config(mock_server), isolated_home, models=[ok, odd])
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "hello")
        await wait_until(pilot, lambda: replies_over(app), what="race")
        s = screen(app)
        assert not s.streaming
        assert s.runs[0].status == "complete"
        said = "tokenrace failed while showing this reply: RuntimeError: drawing failed"
        if when == "streaming":
            assert s.runs[1].status == "error" and "BOOM" in s.runs[1].text
            assert said in s.pane(1).query_one(ErrorPanel).message
        else:
            assert s.runs[1].status == "complete"
            assert s.runs[1].text == odd_text
            assert said in str(pane_replies(app, 1)[-1].notices.render())
        turns = s.conv.turns(1)
        assert turns[-1].content == s.runs[1].text  # kept, as received
        monkeypatch.undo()
        await send(pilot, "again")
        await wait_until(pilot, lambda: len(pane_replies(app, 0)) == 2, what="the next race")
        await wait_until(pilot, lambda: replies_over(app), what="the next race")
        assert [r.status for r in screen(app).runs.values()] == ["complete", "complete"]


async def test_a_frame_shows_what_the_engine_sent_while_the_last_one_was_drawn(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    """Text the engine has handed over but that no pane has fed yet (its batch waits for the
    loop to turn, as when it came during a frame) is drawn by the next frame, not the one
    after: the frame lets the loop feed it first."""
    import time

    from providers.events import TextDelta

    slow = {"text": "Slow start. " + "word " * 200, "ttft_ms": 50, "tps": 5}
    app = _two_panes(mock_server, isolated_home, slow)
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "hello")
        s = screen(app)
        await wait_until(pilot, lambda: all(r.run.text for r in s.replies.values()), what="text")
        assert s._frame_timer is not None
        s._frame_timer.pause()  # this test draws the frames
        await s._tick()
        for pane, reply in s.replies.items():
            assert reply.handle is not None
            reply.handle._push([TextDelta(t_ns=time.perf_counter_ns(), text=f" MARK{pane} ")])
        await s._tick()  # no turn of the loop in between: only the frame's own
        for pane, reply in s.replies.items():
            drawn = "".join(line.text for line in reply.widget.body._open_lines)
            assert f"MARK{pane}" in drawn
        await pilot.press("escape")


async def test_the_frame_pacer_is_told_while_a_pane_s_text_flies_by(
    isolated_home: Path, mock_server: MockServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race's frame clock tells the pacer (``fast``) while a streaming pane's text moves
    ``FAST_VIEWS_PER_S`` views a second or more, and no more once that reply has ended while
    a slow one still streams."""
    from tui.frame_pacer import FramePacer
    from tui.screens.race_screen import RaceScreen

    told: list[tuple[bool, bool]] = []  # (fast, the fast pane still streaming) at each tick
    frame = FramePacer.frame

    def traced(self: FramePacer, fast: bool = False) -> bool:
        race = app.screen
        if isinstance(race, RaceScreen) and 0 in race.replies:
            told.append((fast, not race.replies[0].run.done))
        return frame(self, fast)

    monkeypatch.setattr(FramePacer, "frame", traced)
    code = "```python\n" + "".join(f"x_{i} = {i}\n" for i in range(1500)) + "```\n"
    app = _two_panes(
        mock_server,
        isolated_home,
        {"text": code, "ttft_ms": 5, "tps": 3000},
        tps=40,
        text="slow " * 80,
    )
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "hello")
        await wait_until(pilot, lambda: replies_over(app), what="race", timeout=30)
    streaming = [fast for fast, on in told if on]
    after = [fast for fast, on in told if not on]
    assert sum(streaming) >= len(streaming) // 2, told  # from its first half-second on
    assert after and not any(after[5:]), told


@pytest.mark.parametrize("busy", [True, False], ids=["busy", "not-busy"])
async def test_race_panes_step_together_and_bigger_while_the_ui_is_busy(
    isolated_home: Path,
    mock_server: MockServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    busy: bool,
) -> None:
    """The race's frame clock passes the frame pacer's load to every pane: above
    ``STEP_BUSY`` a reply grows in steps of up to ``GROW_MAX_BUSY`` lines, below it of up to
    ``GROW_MAX`` (the step sizes: test_streaming_markdown); and a pane whose reply took a step
    has the others step along. Once a busy
    reply fills its view (less a jump: ``_may_tail``) it streams at its tail (``TAIL_VIEWS``):
    its reserved lines are then above its text, out of view; what the view shows starts
    within the text and ends with its last row or the blank rows left below it (``_gap``)."""
    from tui.screens import race_screen
    from tui.screens.pane_reply import PaneReply
    from tui.widgets.streaming_markdown import GROW_MAX, GROW_MAX_BUSY

    monkeypatch.setattr(race_screen, "STEP_BUSY", -1.0 if busy else 2.0)
    if not busy:
        # And slow on the replies' clock: a reply growing a view in ROOM_FILL_S takes the
        # rows left in its view, then its tail, busy or not (test_streaming_markdown).
        from itertools import count

        monkeypatch.setattr("tui.widgets.streaming_markdown._now", count(1000.0, 5.0).__next__)
    blank: list[int] = []
    most: set[int] = set()  # the most lines a step may reserve, as each frame passed it
    tails: list[tuple[int, int]] = []  # (text and gap rows, the view's) of tail mode frames
    along: list[int] = []
    frame, step_along = PaneReply.frame, PaneReply.step_along

    def framed(self: PaneReply, busy: bool = False) -> bool:
        stepped = frame(self, busy)
        body = self.widget.body
        most.add(body._grow_max)
        if body._finished:
            pass
        elif body.in_tail:
            tails.append((body._text_lines + body._gap, body._fill_rows()))
        else:
            blank.append(body._height() - body._closed_blocks.height - len(body._open_lines))
        return stepped

    def stepped_along(self: PaneReply) -> None:
        along.append(self.pane)
        step_along(self)

    monkeypatch.setattr(PaneReply, "frame", framed)
    monkeypatch.setattr(PaneReply, "step_along", stepped_along)
    code = "```python\n" + "".join(f"x_{i} = {i}\n" for i in range(400)) + "```\n"
    # At different rates: two identical streams can step in the very same frames throughout,
    # and then no pane has another to step along with (1 run in 10 here).
    fast = {"text": code, "ttft_ms": 5, "tps": 600}
    app = _two_panes(mock_server, isolated_home, fast, ttft_ms=60, tps=450)
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "hello")
        await wait_until(pilot, lambda: replies_over(app), what="race")
    assert blank
    if busy:
        # A busy reply takes its tail once it fills half its view: it takes one or two steps
        # before, and under load both panes often take them in the same frames, so no pane
        # may have had another to step along with (0 of 2-4 in a CI run). Step-along is
        # checked in the not-busy case, where the steps are many (10-13 along here).
        assert most == {GROW_MAX_BUSY} and max(blank) <= GROW_MAX_BUSY - 1, (most, max(blank))
        assert tails and all(text >= rows > 0 for text, rows in tails), tails
    else:
        assert most == {GROW_MAX} and max(blank) <= GROW_MAX - 1, (most, max(blank))
        assert along and not tails


def _slow_last_frames(monkeypatch: pytest.MonkeyPatch, wait_s: float) -> None:
    """Each reply's last text waits ``wait_s`` more for its frame (``PaneReply._frame_drawn``)."""
    from tui.screens.pane_reply import PaneReply

    frame_drawn = PaneReply._frame_drawn

    async def slow_frame(self: PaneReply) -> None:
        await asyncio.sleep(wait_s)
        await frame_drawn(self)

    monkeypatch.setattr(PaneReply, "_frame_drawn", slow_frame)


async def test_the_collector_waits_for_a_race_s_last_frames(
    isolated_home: Path, mock_server: MockServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine is idle once it has read every stream's end; a race's last texts are drawn
    after that. The collection that follows the last reply (up to 200 ms of a full or middle
    pass) waits until the screen has finished every reply: it ran first, and held three
    panes' last tokens off the screen. Here each last text waits 0.4 s for its frame."""
    import gc

    _slow_last_frames(monkeypatch, 0.4)
    app = _two_panes(mock_server, isolated_home, {"n_tokens": 200, "ttft_ms": 5, "tps": 800})
    collected: list[bool] = []  # the screen still drawing a reply, at each collection
    collect = gc.collect

    def logged(generation: int = 2) -> int:
        collected.append(bool(getattr(app.screen, "streaming", False)))
        return collect(generation)

    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause(0.3)
        monkeypatch.setattr(gc, "collect", logged)
        await send(pilot, "go")
        app._gc_full_wanted = True  # a full collection is due at the next quiet moment
        race = screen(app)

        def over_on_the_wire() -> bool:
            runs = [reply.run for reply in race.replies.values()]
            return len(runs) == 2 and all(run.done for run in runs) and not app.engine.active

        await wait_until(pilot, over_on_the_wire, what="the streams' ends")
        assert screen(app).streaming  # the engine is idle, the last texts wait for frames
        await wait_until(pilot, lambda: not screen(app).streaming, what="last frames")
        await wait_until(pilot, lambda: bool(collected), what="the collection after the race")
    assert collected and not any(collected), collected


async def test_a_reply_s_final_figures_wait_for_its_last_text(
    isolated_home: Path, mock_server: MockServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply's final figures are a pass over every event (20-40 ms at 8,000 tokens): they
    are computed once its last text is drawn (``PaneReply.finish``), never before it, by a
    frame's comparison strip or a checkpoint of a reply that is over on the wire. Each last
    text waits 0.2 s for its frame here, and the strip reads running figures meanwhile."""
    from tui.session.conversation import LiveRun

    early: list[str] = []
    final = LiveRun.final

    def watched(self: LiveRun) -> Any:
        if self.done and not self.shown_final:
            early.append(self.model)
        return final(self)

    _slow_last_frames(monkeypatch, 0.2)
    monkeypatch.setattr(LiveRun, "final", watched)
    monkeypatch.setattr("tui.session.conversation.CHECKPOINT_S", 0.0)  # a checkpoint a batch
    app = _two_panes(mock_server, isolated_home, {"n_tokens": 300, "ttft_ms": 5, "tps": 600})
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "go")
        await wait_until(pilot, lambda: replies_over(app), what="race")
        assert all(reply.run.final().output_tokens for reply in screen(app).replies.values())
    assert not early, early


@pytest.mark.parametrize("later_s", [0.25, 1.5], ids=["soon", "long"])
async def test_a_reply_s_bookkeeping_waits_for_the_others_to_end(
    isolated_home: Path,
    mock_server: MockServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    later_s: float,
) -> None:
    """A reply's figures and save ask for a layout of the screen (10-20 ms, and the layout
    30-60 ms at 4 × 2,000 tok/s): they wait while another pane streams, at most
    ``END_TOGETHER_S``, so that its last text is not kept off the screen by them. Its own
    last text is drawn when it comes (``draw_now``), as the others' are. Pane B ends
    ``later_s`` after pane A: A's figures come after B's end when it is soon, and do not wait
    for it when it is long."""
    from tui.screens.pane_reply import END_TOGETHER_S, PaneReply
    from tui.session.conversation import LiveRun
    from tui.textual_private import draw_now

    ended: dict[int, float] = {}  # pane: when its last batch was read (monotonic)
    figures: dict[int, float] = {}  # pane: when its bookkeeping ran
    drawn: list[int] = []  # panes whose last text draw_now was asked for
    finish, feed = PaneReply.finish, LiveRun.feed

    def finished(self: PaneReply) -> None:
        figures.setdefault(self.pane, time.monotonic())
        finish(self)

    def fed(self: Any, batch: Any) -> Any:
        delta = feed(self, batch)
        if self.done:
            ended.setdefault(0 if a.endswith(self.model) else 1, time.monotonic())
        return delta

    def drawing(screen: Any, views: Any) -> bool:
        views = list(views)
        drawn.extend(reply.pane for reply in screen.replies.values() if reply.widget.body in views)
        return draw_now(screen, views)

    monkeypatch.setattr(PaneReply, "finish", finished)
    monkeypatch.setattr(LiveRun, "feed", fed)
    monkeypatch.setattr("tui.screens.pane_reply.draw_now", drawing)
    ttft = 300  # after the send's own pauses
    a = scenario(mock_server, text="Alpha ends first.", ttft_ms=ttft, tps=200)
    b = scenario(mock_server, text="Beta ends later.", ttft_ms=ttft + int(later_s * 1000), tps=200)
    app = make_app(mock_config(mock_server), isolated_home, models=[a, b])
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "race")
        await wait_until(pilot, lambda: replies_over(app), what="race", timeout=20)
    assert sorted(drawn) == [0, 1] and sorted(ended) == sorted(figures) == [0, 1]
    if later_s < 1:
        assert later_s < END_TOGETHER_S and figures[0] >= ended[1], (ended, figures)
    else:
        assert figures[0] < ended[1], (ended, figures)
        assert figures[0] - ended[0] < END_TOGETHER_S + 1.0, (ended, figures)

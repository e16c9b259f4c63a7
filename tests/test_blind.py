"""Blind races: names hidden on every screen, toast, title and export until the verdict."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from providers.config import parse_config
from tests.support.mock_server import MockServerProcess
from tests.support.tui import make_app, scenario, send, wait_for_screen, wait_until
from tui.launch import blind_conversation
from tui.screens.compare import CompareScreen
from tui.screens.pane_chooser import PaneChooser
from tui.session import blind
from tui.session.conversation import Conversation
from tui.session.export import export_text
from tui.session.store import MIGRATIONS, connect, migrate
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.error_panel import ErrorPanel


def two_endpoints(mock: MockServerProcess, fast: str, slow: str) -> tuple[Any, list[str]]:
    """Two endpoints at the mock server (so an endpoint's name would say who is who)."""
    ids = [fast.split("/")[1], slow.split("/")[1]]
    config = parse_config(
        {
            "endpoints": {
                "ep-north": {"base_url": mock.base_url, "models": [ids[0]]},
                "ep-south": {"base_url": mock.base_url, "models": [ids[1]]},
            }
        }
    )
    return config, [f"ep-north/{ids[0]}", f"ep-south/{ids[1]}"]


def names_of(models: list[str]) -> list[str]:
    return [*models, *(m.split("/")[1] for m in models), "ep-north", "ep-south"]


def seen(app: Any) -> str:
    """Everything the user can see: the screen's text, every toast, and the titles."""
    svg = app.export_screenshot()
    text = html.unescape(re.sub(r"<[^>]+>", "", svg))
    toasts = " ".join(str(n.message) + str(n.title) for n in app._notifications)
    return re.sub(r"\s", "", f"{text} {toasts} {app.title} {app.sub_title}")


def leaks(text: str, names: list[str]) -> list[str]:
    return [n for n in names if n in text]


def race_over(app: Any) -> bool:
    s = app.screen
    return (
        isinstance(s, CompareScreen)
        and bool(s.runs)
        and all(r.shown_final for r in s.runs.values())
        and not s.streaming
    )


async def test_a_blind_race_hides_every_name_until_the_verdict(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    fast = scenario(mock_server, text="Quick reply.", ttft_ms=5, tps=200)
    slow = scenario(mock_server, text="A slower reply " * 6, ttft_ms=5, tps=30)
    config, models = two_endpoints(mock_server, fast, slow)
    names = names_of(models)
    conv, order = blind_conversation(models)
    app = make_app(config, isolated_home, models=order, conversation=conv)
    async with app.run_test(size=(200, 45)) as pilot:
        s = await wait_for_screen(pilot, CompareScreen)
        await send(pilot, "which is better?")
        fast_pane = order.index(models[0])
        # Replies appear together: the fast pane has finished, its text is not shown yet.
        await wait_until(pilot, lambda: s.runs[fast_pane].done and not s.runs[1 - fast_pane].done)
        assert s.replies[fast_pane].widget.body.source == ""
        await wait_until(pilot, lambda: race_over(app), what="race")
        assert s.replies[fast_pane].widget.body.source == "Quick reply."
        views = {"compare": seen(app)}
        # Timings are hidden by default: no figure, no sparkline.
        assert "TTFT—" in views["compare"] and not re.search(r"TTFT\d", views["compare"])
        assert not any(p.status.spark.data for p in s.panes)
        for key, name in (("f2", "F2"), ("f6", "F6"), ("f4", "F4"), ("f8", "F8"), ("f1", "F1")):
            await pilot.press(key)
            await pilot.pause(0.3)
            views[name] = seen(app)
            if not isinstance(app.screen, CompareScreen):
                await pilot.press("escape")
                await wait_for_screen(pilot, CompareScreen)
        await pilot.press("f3")  # back to chat would name pane A's model: refused
        assert isinstance(app.screen, CompareScreen)
        app.action_stats()  # the leaderboard's figures per model: refused too
        await pilot.pause(0.1)
        assert isinstance(app.screen, CompareScreen)
        app.notify(f"{models[1]} said something")  # any toast naming a model is scrubbed
        await pilot.press("ctrl+s")  # the export dialog, then a Markdown file
        await pilot.pause(0.2)
        await pilot.press("m")
        await wait_until(pilot, lambda: any("Exported" in n.message for n in app._notifications))
        views["export toast"] = seen(app)
        assert app.store is not None
        app.store.flush()
        for fmt_name in ("md", "json", "html"):
            views[fmt_name] = export_text(app.store, conv.id, fmt_name)
        await pilot.press("f9")
        chooser = await wait_for_screen(pilot, PaneChooser)
        views["F9"] = seen(app)
        for view, text in views.items():
            assert not leaks(text, names), (view, leaks(text, names))
        assert "modelA" in views["compare"] and "modelB" in views["F9"]
        # The verdict: pane A best. It is stored as blind, and the names come back.
        await pilot.press("a")
        await wait_until(pilot, lambda: app.screen is not chooser)
        await pilot.pause(0.2)
        after = seen(app)
        assert all(m in after for m in models), after
        assert s.pane(0).model == order[0] and order[0] in str(s.pane(0).header.render())
        assert re.search(r"TTFT \d", str(s.replies[0].widget.metrics_line.render()))
        app.store.flush()
        assert [bool(v["blind"]) for v in app.store.verdicts(conv.id)] == [True]
        assert order[0] in export_text(app.store, conv.id, "md")


async def test_an_unrevealed_blind_race_stays_blind_on_resume(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    a = scenario(mock_server, text="One.", ttft_ms=5, tps=200)
    b = scenario(mock_server, text="Two.", ttft_ms=5, tps=200)
    config, models = two_endpoints(mock_server, a, b)
    conv, order = blind_conversation(models, show_timings=True, live_replies=True)
    app = make_app(config, isolated_home, models=order, conversation=conv)
    async with app.run_test(size=(200, 40)) as pilot:
        await wait_for_screen(pilot, CompareScreen)
        await send(pilot, "hello")
        await wait_until(pilot, lambda: race_over(app), what="race")
        assert "TTFT" in seen(app)  # this race chose to show timings
    assert app.store is not None
    app.store.flush()
    loaded = Conversation.load(app.store, conv.id)
    assert loaded is not None and loaded.blind is not None and loaded.blind.hiding
    again = make_app(config, isolated_home, conversation=loaded)
    async with again.run_test(size=(200, 40)) as pilot:
        s = await wait_for_screen(pilot, CompareScreen)
        await pilot.pause(0.2)
        assert s.models == order  # the same panes, the same hidden order
        assert not leaks(seen(again), names_of(models))
        assert len(s.pane(0).query(AssistantMessage)) == 1


def test_blind_migration_keeps_old_verdicts_sighted(tmp_path: Path) -> None:
    number = MIGRATIONS.index(blind_migration()) + 1
    conn = connect(tmp_path / "h.db")
    migrate(conn, upto=number - 1)
    conn.execute(
        "INSERT INTO conversations(id, title, mode, settings, created_at, updated_at) "
        "VALUES (1, 't', 'compare', '{}', 0, 0)"
    )
    conn.execute(
        "INSERT INTO verdicts(id, conversation_id, race_id, winner, models, created_at) "
        "VALUES (1, 1, 'r', 'x/a', '[\"x/a\", \"y/b\"]', 0)"
    )
    migrate(conn)
    row = conn.execute("SELECT blind FROM verdicts").fetchone()
    assert row["blind"] == 0
    assert conn.execute("SELECT blind FROM conversations").fetchone()["blind"] is None
    conn.close()


def blind_migration() -> str:
    from tui.session.store import BLIND_RACES

    return BLIND_RACES


def test_scrub_replaces_whole_names_only() -> None:
    race = blind.BlindRace(["openai/gpt-4o", "openai/gpt-4o-mini"])
    text = "openai rejected gpt-4o-mini; gpt-4o answered; gpt-4orca is another"
    assert race.scrub(text) == (
        "a hidden endpoint rejected model B; model A answered; gpt-4orca is another"
    )
    # A name ending a clause or a sentence is a name; inside a longer name it is not.
    ollama = blind.BlindRace(["ollama/llama3", "ollama/qwen3"])
    said = "llama3: no key. Tried qwen3. Not llama3:8b or qwen3.5 or llama3.1:8b"
    assert ollama.scrub(said) == (
        "model A: no key. Tried model B. Not llama3:8b or qwen3.5 or llama3.1:8b"
    )
    race.revealed = True
    assert race.scrub(text) == text


def test_stats_show_blind_and_sighted_verdicts_apart() -> None:
    from tui.session.stats import report_text, stats_report

    rows: list[Any] = [
        {"winner": "x/a", "models": '["x/a", "y/b"]', "blind": 1},
        {"winner": "y/b", "models": '["x/a", "y/b"]', "blind": 0},
        {"winner": "y/b", "models": '["x/a", "y/b"]', "blind": 0},
    ]
    report = stats_report(rows)
    doc = report.as_dict()
    assert (doc["verdicts"], doc["blind_verdicts"], doc["sighted_verdicts"]) == (3, 1, 2)
    blind_a = next(m for m in doc["blind"]["models"] if m["model"] == "x/a")
    sighted_a = next(m for m in doc["sighted"]["models"] if m["model"] == "x/a")
    assert (blind_a["wins"], sighted_a["wins"], sighted_a["losses"]) == (1, 0, 2)
    text = report_text(report)
    assert "Blind verdicts only" in text and "1 blind, 2 sighted" in text


async def test_alt_h_starts_a_blind_race_of_the_same_models(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from tui.screens.blind_options import BlindOptions

    a = scenario(mock_server, text="One.", ttft_ms=5, tps=200)
    b = scenario(mock_server, text="Two.", ttft_ms=5, tps=200)
    config, models = two_endpoints(mock_server, a, b)
    app = make_app(config, isolated_home, models=models)
    async with app.run_test(size=(200, 40)) as pilot:
        sighted = await wait_for_screen(pilot, CompareScreen)
        assert models[0] in seen(app)
        await pilot.press("alt+h")
        await wait_for_screen(pilot, BlindOptions)
        await pilot.press("t", "enter")
        await wait_until(pilot, lambda: app.screen is not sighted and app.is_running)
        s = await wait_for_screen(pilot, CompareScreen)
        race = s.conv.blind
        assert race is not None and race.hiding and race.show_timings and not race.live_replies
        assert sorted(s.models) == sorted(models) and s.conv.id != sighted.conv.id
        await pilot.pause(0.1)
        assert not leaks(seen(app), names_of(models))


def test_a_hidden_race_shows_counts_only_whatever_figures_exist() -> None:
    from dataclasses import fields

    from providers.metrics import EMPTY_METRICS, RunMetrics
    from tui.session import blind

    race = blind.BlindRace(models=["x/a", "y/b"])
    values: dict[str, Any] = {
        f.name: (True if f.type == "bool" else 7 if "int" in str(f.type) else 1.5)
        for f in fields(RunMetrics)
        if f.name not in ("status", "finish_reason")
    }
    full = RunMetrics(**values, status="complete", finish_reason="stop")
    shown = blind.metrics(race, full)
    timing = [f.name for f in fields(RunMetrics) if f.name.endswith(("_ms", "_tps", "_usd"))]
    assert timing and all(getattr(shown, k) == getattr(EMPTY_METRICS, k) for k in timing)
    assert shown.prefill_tps is None and shown.cost_input_usd is None
    assert (shown.output_tokens, shown.input_tokens, shown.status) == (7, 7, "complete")


async def test_an_error_panel_is_blind_until_the_verdict_then_names_its_model(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    fast = scenario(mock_server, text="Quick reply.", ttft_ms=5, tps=200)
    denied = scenario(mock_server, status=401, error_body={"error": {"message": "no key"}})
    config, models = two_endpoints(mock_server, fast, denied)
    denied_id = models[1].split("/")[1]
    mock_server.add_scenario(
        denied_id, {"status": 401, "error_body": {"error": {"message": f"{denied_id}: no key"}}}
    )
    conv, order = blind_conversation(models)
    app = make_app(config, isolated_home, models=order, conversation=conv)
    async with app.run_test(size=(200, 45)) as pilot:
        s = await wait_for_screen(pilot, CompareScreen)
        await send(pilot, "which is better?")
        await wait_until(pilot, lambda: race_over(app), what="race")
        (panel,) = s.query(ErrorPanel)
        before = seen(app)
        assert not leaks(before, names_of(models)), leaks(before, names_of(models))
        assert panel.model.startswith("model ")
        await pilot.press("f9")
        await wait_for_screen(pilot, PaneChooser)
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen))
        await pilot.pause(0.2)
        shown = str(panel.render())
        assert models[1] in shown and f"{denied_id}: no key" in shown, shown

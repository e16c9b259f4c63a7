"""The leaderboard (issue 18): Wilson intervals, Bradley–Terry ratings, ``tokenrace stats``."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from providers import paths
from tests.support.cli import run_cli
from tests.support.mock_server import MockServerProcess
from tui.session.stats import (
    ModelStanding,
    bradley_terry,
    leaderboard,
    pairwise,
    parse_verdict,
    wilson_interval,
)
from tui.session.store import Store


def rows(*verdicts: tuple[str, list[str]]) -> list[dict[str, object]]:
    return [{"winner": w, "models": json.dumps(m)} for w, m in verdicts]


def rating(standing: ModelStanding) -> float:
    assert standing.rating is not None, standing.model
    return standing.rating


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    # Agresti & Coull's worked case (0 of 10): the interval is not degenerate at 0.
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-3)


def test_bradley_terry_two_models_is_the_log_odds() -> None:
    board = leaderboard(rows(*[("X", ["X", "Y"])] * 8, *[("Y", ["Y", "X"])] * 2))
    by = {s.model: rating(s) for s in board.standings}
    assert by["X"] - by["Y"] == pytest.approx(math.log(4), rel=1e-6)
    assert by["X"] + by["Y"] == pytest.approx(0.0, abs=1e-9)  # anchored, mean 0
    assert not board.bt_regularised


def test_best_of_n_panes_is_a_win_over_each_other_pane_and_a_tie_is_among_all() -> None:
    wins = pairwise(
        v
        for v in map(parse_verdict, rows(("A", ["A", "B", "C"]), ("tie", ["A", "B", "C"])))
        if v is not None
    )
    assert wins == {
        ("A", "B"): 1.5, ("A", "C"): 1.5, ("B", "A"): 0.5, ("B", "C"): 0.5,
        ("C", "A"): 0.5, ("C", "B"): 0.5,
    }  # fmt: skip
    board = leaderboard(rows(("A", ["A", "B", "C"]), ("tie", ["A", "B", "C"])))
    by = {s.model: s for s in board.standings}
    assert (by["A"].races, by["A"].wins, by["A"].ties, by["A"].losses) == (2, 1, 1, 0)
    assert (by["B"].races, by["B"].wins, by["B"].ties, by["B"].losses) == (2, 0, 1, 1)
    assert rating(by["B"]) == pytest.approx(rating(by["C"]))
    assert rating(by["A"]) > rating(by["B"])


def test_ratings_do_not_depend_on_the_order_of_verdicts() -> None:
    models = ["A", "B", "C", "D"]
    rng = random.Random(7)
    vs = []
    for _ in range(60):
        panes = rng.sample(models, rng.choice([2, 3, 4]))
        vs.append((rng.choice([*panes, "tie"]), panes))
    vs += [("A", ["A", "B"]), ("B", ["A", "B"]), ("D", ["D", "A"]), ("A", ["D", "A"])]
    first = {s.model: s.rating for s in leaderboard(rows(*vs)).standings}
    rng.shuffle(vs)
    second = {s.model: s.rating for s in leaderboard(rows(*vs)).standings}
    for m in models:
        assert first[m] == pytest.approx(second[m], abs=1e-8)


def test_the_mle_satisfies_the_likelihood_equations() -> None:
    # At the maximum, each model's expected wins equal its observed wins (Zermelo's equations).
    wins = {("A", "B"): 3.0, ("B", "A"): 1.0, ("B", "C"): 2.0, ("C", "B"): 2.0, ("C", "A"): 1.0,
            ("A", "C"): 2.0}  # fmt: skip
    r, regularised, _ = bradley_terry(wins)
    assert not regularised
    for m in "ABC":
        observed = sum(w for (a, _b), w in wins.items() if a == m)
        expected = 0.0
        for o in "ABC":
            if o != m:
                n = wins.get((m, o), 0.0) + wins.get((o, m), 0.0)
                expected += n * math.exp(r[m]) / (math.exp(r[m]) + math.exp(r[o]))
        assert expected == pytest.approx(observed, rel=1e-6)


def test_a_model_that_never_won_gets_a_finite_regularised_rating() -> None:
    board = leaderboard(rows(*[("X", ["X", "Y"])] * 3))
    assert board.bt_regularised
    by = {s.model: s for s in board.standings}
    assert by["X"].rating is not None and by["Y"].rating is not None
    assert math.isfinite(by["X"].rating) and by["X"].rating > by["Y"].rating


def test_stats_json_from_stored_verdicts(isolated_home: Path) -> None:
    store = Store(paths.data_dir() / "history.db")
    for i in range(10):
        winner = "mock/x" if i < 8 else "mock/y"
        panes = ["mock/x", "mock/y"] if i % 2 else ["mock/y", "mock/x"]
        store.save_verdict(None, f"race-{i}", winner, panes)
    store.close()
    r = run_cli("stats", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    by = {m["model"]: m for m in doc["models"]}
    x, y = by["mock/x"], by["mock/y"]
    assert (x["races"], x["wins"], x["ties"], x["losses"]) == (10, 8, 0, 2)
    assert x["win_rate"] == pytest.approx(0.8)
    assert x["win_rate_low"] == pytest.approx(0.49, abs=0.01)
    assert x["win_rate_high"] == pytest.approx(0.94, abs=0.01)
    assert x["rating"] - y["rating"] == pytest.approx(math.log(4), rel=0.01)
    assert doc["verdicts"] == 10 and doc["bt_regularised"] is False
    text = run_cli("stats")
    assert text.returncode == 0, text.stderr
    line = next(ln for ln in text.stdout.splitlines() if ln.startswith("mock/x"))
    assert "0.80 [0.49, 0.94]" in line and "+0.69" in line


def test_stats_with_no_history(isolated_home: Path) -> None:
    r = run_cli("stats", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["models"] == []


async def test_the_leaderboard_screen_opens_from_the_palette(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from textual.command import CommandPalette

    from tests.support.tui import make_app, mock_config, wait_for_screen
    from tui.screens.stats import StatsScreen

    store = Store(isolated_home / "history.db")
    for i in range(10):
        store.save_verdict(
            None, f"r{i}", "mock/x" if i < 8 else "mock/[bold]y", ["mock/x", "mock/[bold]y"]
        )
    store.flush()
    app = make_app(mock_config(mock_server), isolated_home, store=store, models=["mock/x"])
    async with app.run_test(size=(120, 30)) as pilot:
        from tui.screens.chat import ChatScreen

        await wait_for_screen(pilot, ChatScreen)
        app.action_command_palette()
        await wait_for_screen(pilot, CommandPalette)
        await pilot.press(*"leaderboard")
        await pilot.pause(0.5)
        await pilot.press("down", "enter")
        screen = await wait_for_screen(pilot, StatsScreen)
        text = str(screen.query_one("#leaderboard").render())
        assert "0.80 [0.49, 0.94]" in text and "+0.69" in text
        assert "mock/[bold]y" in text  # a name is text, never markup

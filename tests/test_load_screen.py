"""The load sweep from the command palette: steps fill a live table, run off the UI process."""

from __future__ import annotations

import os
from pathlib import Path

from textual.widgets import DataTable, Input

from tests.support.mock_server import MockServerProcess
from tests.support.tui import make_app, mock_config, scenario, wait_for_screen, wait_until
from tui.screens.load import LoadScreen


async def test_a_load_sweep_from_the_palette_fills_its_table_step_by_step(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    model = scenario(mock_server, ttft_ms=5, tps=200, n_tokens=5)
    suite = isolated_home / "suite.jsonl"
    suite.write_text('{"prompt": "hi"}\n', encoding="utf-8")
    app = make_app(mock_config(mock_server), isolated_home, models=[model])
    async with app.run_test(size=(160, 40)) as pilot:
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert "Load sweep: TTFT and throughput as streams grow" in commands
        app.action_load_sweep()
        screen = await wait_for_screen(pilot, LoadScreen)
        screen.query_one("#levels", Input).value = "1,2"
        screen.query_one("#requests", Input).value = "4"
        path = screen.query_one("#path", Input)
        path.value = str(suite)
        path.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(screen.results) == 2 and not screen.running, 30)
        table = screen.query_one(DataTable)
        assert table.row_count == 2
        assert [str(table.get_row_at(i)[2]) for i in range(2)] == ["4", "4"]
        # The requests ran in a child engine process, not in the app's.
        pids = {h.pid for r in screen.results for h in r.health}
        assert pids and os.getpid() not in pids
        assert {str(table.get_row_at(i)[9]) for i in range(2)} <= {"ok", "LIMITED"}

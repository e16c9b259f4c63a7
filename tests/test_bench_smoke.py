"""The benchmark scripts run (``bench/run.py --quick``), so they cannot rot.

This checks that every script runs to the end and reports every row; it does not hold the
figures to their targets: a CI machine's timings are not this project's to judge. The targets
are checked by ``python bench/run.py`` (bench/README.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support.cli import REPO

ROWS = (
    "TTFT overhead (cold",
    "TTFT overhead (warm",
    "Timestamp honesty under load",
    "Render lag, 2 panes",
    "Sustainable rate per pane (prose",
    "Sustainable rate per pane (code",
    "CPU, 2 panes × 100 tok/s of mixed markdown",
    "CPU, 2 panes × 100 tok/s of prose",
    "CPU, idle",
    "Cold start to first frame",
    "Headless ask",
    "Open a ",
    "Keystroke to echo",
    "App RSS",
    "Load capacity, one engine process",
    "Load capacity, the machine",
    "Final-token lag, 4 panes × 2,000 tok/s, 400 tokens, 4 tokens/event",
    "Final-token lag, 4 panes × 2,000 tok/s, 400 tokens, 1 token/event",
    "Render lag, 4 panes × 500 tok/s",
    "Sustainable rate per pane (prose, 4 panes",
    "Sustainable rate per pane (code, 4 panes",
    "CPU, 4 panes × 2,000 tok/s",
    "Timestamp honesty, 4 panes",
    "Cold start to a usable chat screen",
    "Engine at 4 × 2,000 events/s",
    "Final-token lag vs elia",  # measured, or skipped with how to install elia
)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="the terminal rows need tmux")
# Fifteen scripts, four at a time: about a minute on a quiet machine, and up to twice the
# suite's 120 s default on a busy one (the subprocess's own limit is 300 s).
@pytest.mark.timeout(290)
def test_every_benchmark_runs_and_reports_its_rows() -> None:
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--quick"],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads((REPO / "bench" / "results" / "run-quick.json").read_text())
    names = [row["name"] for row in doc["rows"]]
    for prefix in ROWS:
        assert any(n.startswith(prefix) for n in names), (prefix, names)
    for row in doc["rows"]:
        assert row["measured"] and not row["measured"].startswith("crashed"), row
        assert row["target"], row
    assert "PASS" in result.stdout or "FAIL" in result.stdout  # the table was printed

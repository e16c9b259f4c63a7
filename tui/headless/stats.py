"""``tokenrace stats [--json]``: the leaderboard of stored verdicts beside each model's figures."""

from __future__ import annotations

import argparse
import json
import sys

from providers import paths
from tui.session.stats import report_text, stats_report
from tui.session.store import Store, StoreError


def main(argv: list[str]) -> int:
    """``tokenrace stats`` entry point."""
    p = argparse.ArgumentParser(
        prog="tokenrace stats",
        description="Leaderboard: wins, ties, losses, win rate with a Wilson 95%% interval and a "
        "Bradley-Terry rating per model, from the verdicts you gave (F9), beside median TTFT, "
        "decode rate and cost per reply.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    ns = p.parse_args(argv)
    db = paths.data_dir() / "history.db"
    if not db.exists():
        report = stats_report([], [])
    else:
        try:
            store = Store(db)
        except StoreError as exc:
            print(f"tokenrace stats: {exc}", file=sys.stderr)
            return 1
        try:
            report = stats_report(store.verdicts(), store.runs())
        finally:
            store.close()
    if ns.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=True))
    elif not report.all.standings:
        print("No verdicts or runs yet: race models (tokenrace -m A -m B) and press F9.")
    else:
        sys.stdout.write(report_text(report))
    return 0

"""``tokenrace stats [--json]``: the leaderboard of stored verdicts beside each model's figures."""

from __future__ import annotations

import argparse
import json
import sys

from providers import paths
from providers.inert import inert_label
from tui.session.stats import Leaderboard, leaderboard
from tui.session.store import Store, StoreError


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def table(board: Leaderboard) -> str:
    """The leaderboard as aligned plain text."""
    head = [
        "model",
        "races",
        "W",
        "T",
        "L",
        "win rate (95% CI)",
        "rating",
        "TTFT p50",
        "tok/s p50",
        "$/reply",
    ]
    rows = [head]
    for s in board.standings:
        rate = (
            "—"
            if s.win_rate is None
            else f"{s.win_rate:.2f} [{s.win_rate_low:.2f}, {s.win_rate_high:.2f}]"
        )
        rows.append(
            [
                inert_label(s.model),
                str(s.races),
                str(s.wins),
                str(s.ties),
                str(s.losses),
                rate,
                _num(s.rating, "+.2f"),
                "—" if s.ttft_p50_ms is None else f"{s.ttft_p50_ms:.0f} ms",
                _num(s.decode_p50_tps, ".1f"),
                "—" if s.cost_per_reply_usd is None else f"${s.cost_per_reply_usd:.5f}",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    note = f"{board.verdicts} verdicts (all sighted: verdicts carry no blind flag yet)."
    if board.bt_regularised:
        note += (
            " Ratings regularised: a model never won or never lost, so each compared pair"
            " got one virtual tie."
        )
    return "\n".join([*lines, "", note]) + "\n"


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
        board = leaderboard([], [])
    else:
        try:
            store = Store(db)
        except StoreError as exc:
            print(f"tokenrace stats: {exc}", file=sys.stderr)
            return 1
        try:
            board = leaderboard(store.verdicts(), store.runs())
        finally:
            store.close()
    if ns.json:
        print(json.dumps(board.as_dict(), indent=2, ensure_ascii=True))
    elif not board.standings:
        print("No verdicts or runs yet: race models (tokenrace -m A -m B) and press F9.")
    else:
        sys.stdout.write(table(board))
    return 0

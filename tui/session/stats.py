"""The leaderboard: verdicts turned into wins, Wilson intervals and Bradley–Terry ratings.

Pure computation over stored rows (no UI, no I/O). How verdicts count:

- A verdict names the best pane of an N-pane race, or ``tie``. "Best" is a win over each other
  pane's model; a tie is a tie among all of them. A model in two panes of one race is counted
  once in that race and is never compared with itself.
- Win rate is ``wins / races`` (a tie is not a win), with a Wilson score 95% interval.
- The Bradley–Terry rating is the maximum-likelihood strength over all pairwise results of all
  stored verdicts, found by the MM (Zermelo) iteration; a tie counts as half a win each way
  (the usual "ties as half wins" treatment, so the likelihood stays the plain BT one). Ratings
  are natural logs of strength, anchored to mean 0 within each group of models that were ever
  compared with each other: a gap of ``ln 4`` means 4:1 odds of being judged better. Unlike
  Elo, the result does not depend on the order the verdicts were given in.
- When the maximum-likelihood estimate does not exist (a model never beat, or never lost to,
  the rest of its group, so its rating would run off to ±∞), every compared pair gets one
  virtual tie before fitting, and ``bt_regularised`` says so.

Verdicts given in a blind race (names hidden until the verdict) carry a blind flag: the
leaderboard counts all verdicts, and also shows the blind ones and the sighted ones apart.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from providers.inert import inert_label
from providers.metrics import OK_STATUSES

Z95 = 1.959963984540054


class Row(Protocol):
    """A stored row read by column name: a ``sqlite3.Row`` or a plain dict."""

    def __getitem__(self, key: str, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class ModelStanding:
    """One model's row of the leaderboard."""

    model: str
    races: int
    wins: int
    ties: int
    losses: int
    win_rate: float | None
    win_rate_low: float | None
    win_rate_high: float | None
    rating: float | None
    replies: int
    ttft_p50_ms: float | None
    decode_p50_tps: float | None
    cost_per_reply_usd: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Leaderboard:
    """Standings, best rating first, and how the ratings were found."""

    standings: list[ModelStanding]
    verdicts: int
    bt_regularised: bool
    bt_iterations: int
    blind_verdicts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdicts": self.verdicts,
            "sighted_verdicts": self.verdicts - self.blind_verdicts,
            "blind_verdicts": self.blind_verdicts,
            "rating_scale": "natural log of Bradley-Terry strength, mean 0 per compared group",
            "bt_regularised": self.bt_regularised,
            "bt_iterations": self.bt_iterations,
            "models": [s.as_dict() for s in self.standings],
        }


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% by default)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True, slots=True)
class Verdict:
    """One judged race: its distinct models in pane order, and the winner (``None``: a tie)."""

    models: tuple[str, ...]
    winner: str | None


def parse_verdict(row: Row) -> Verdict | None:
    """A stored verdict row as a ``Verdict``; ``None`` when it judges fewer than two models."""
    raw = row["models"]
    try:
        models = json.loads(raw) if isinstance(raw, str) else list(raw)
    except ValueError:
        return None
    distinct = tuple(dict.fromkeys(str(m) for m in models))
    winner = str(row["winner"])
    if len(distinct) < 2:
        return None
    if winner == "tie":
        return Verdict(distinct, None)
    if winner not in distinct:
        return None
    return Verdict(distinct, winner)


def pairwise(verdicts: Iterable[Verdict]) -> dict[tuple[str, str], float]:
    """``wins[(a, b)]``: how often ``a`` was judged better than ``b`` (ties give half each way)."""
    wins: dict[tuple[str, str], float] = {}
    for v in verdicts:
        if v.winner is None:
            for a in v.models:
                for b in v.models:
                    if a != b:
                        wins[(a, b)] = wins.get((a, b), 0.0) + 0.5
        else:
            for b in v.models:
                if b != v.winner:
                    wins[(v.winner, b)] = wins.get((v.winner, b), 0.0) + 1.0
    return wins


def _groups(models: list[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Models split into groups that were compared with each other (connected components)."""
    parent = {m: m for m in models}

    def find(m: str) -> str:
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    for a, b in edges:
        parent[find(a)] = find(b)
    out: dict[str, list[str]] = {}
    for m in models:
        out.setdefault(find(m), []).append(m)
    return list(out.values())


def _strongly_connected(group: list[str], wins: Mapping[tuple[str, str], float]) -> bool:
    """Whether every model of the group beat, through some chain, every other (MLE exists)."""
    if len(group) < 2:
        return True
    members = set(group)

    def reach(start: str, forward: bool) -> set[str]:
        seen = {start}
        todo = [start]
        while todo:
            m = todo.pop()
            for (a, b), w in wins.items():
                if w <= 0 or a not in members or b not in members:
                    continue
                src, dst = (a, b) if forward else (b, a)
                if src == m and dst not in seen:
                    seen.add(dst)
                    todo.append(dst)
        return seen

    return reach(group[0], True) == members and reach(group[0], False) == members


def bradley_terry(
    wins: Mapping[tuple[str, str], float], tol: float = 1e-12, max_iter: int = 100_000
) -> tuple[dict[str, float], bool, int]:
    """Log-strengths by MM iteration, mean 0 per compared group; (ratings, regularised, iters)."""
    models = sorted({m for pair in wins for m in pair})
    pairs = {tuple(sorted(p)) for p, w in wins.items() if w > 0}
    groups = _groups(models, pairs)  # type: ignore[arg-type]
    work = dict(wins)
    regularised = not all(_strongly_connected(g, work) for g in groups)
    if regularised:
        for a, b in pairs:
            work[(a, b)] = work.get((a, b), 0.0) + 0.5
            work[(b, a)] = work.get((b, a), 0.0) + 0.5
    total_wins = {m: 0.0 for m in models}
    games: dict[tuple[str, str], float] = {}
    for (a, b), w in work.items():
        total_wins[a] += w
        key = (a, b) if a < b else (b, a)
        games[key] = games.get(key, 0.0) + w
    opponents: dict[str, list[tuple[str, float]]] = {m: [] for m in models}
    for (a, b), n in games.items():
        opponents[a].append((b, n))
        opponents[b].append((a, n))
    strength = {m: 1.0 for m in models}
    iters = 0
    while iters < max_iter:
        iters += 1
        new: dict[str, float] = {}
        for m in models:
            denom = sum(n / (strength[m] + strength[o]) for o, n in opponents[m])
            new[m] = total_wins[m] / denom if denom > 0 else strength[m]
        # Normalise each group to a geometric mean of 1 so the scale does not drift.
        for g in groups:
            mean_log = sum(math.log(new[m]) for m in g) / len(g)
            for m in g:
                new[m] = math.exp(math.log(new[m]) - mean_log)
        change = max(abs(math.log(new[m]) - math.log(strength[m])) for m in models)
        strength = new
        if change < tol:
            break
    return {m: math.log(strength[m]) for m in models}, regularised, iters


def is_blind(row: Row) -> bool:
    """Whether a stored verdict was given in a blind race (rows from before the flag: no)."""
    try:
        return bool(row["blind"])
    except (KeyError, IndexError):
        return False


def leaderboard(verdict_rows: Iterable[Row], run_rows: Iterable[Row] = ()) -> Leaderboard:
    """Per model: races, wins, ties, losses, Wilson win rate, BT rating, and run figures."""
    parsed = [(parse_verdict(r), is_blind(r)) for r in verdict_rows]
    verdicts = [v for v, _ in parsed if v is not None]
    blind_count = sum(1 for v, b in parsed if v is not None and b)
    races: dict[str, int] = {}
    wins: dict[str, int] = {}
    ties: dict[str, int] = {}
    for v in verdicts:
        for m in v.models:
            races[m] = races.get(m, 0) + 1
            if v.winner is None:
                ties[m] = ties.get(m, 0) + 1
            elif v.winner == m:
                wins[m] = wins.get(m, 0) + 1
    ratings, regularised, iters = bradley_terry(pairwise(verdicts)) if verdicts else ({}, False, 0)
    by_model: dict[str, list[Row]] = {}
    for r in run_rows:
        if r["status"] != "cancelled":
            by_model.setdefault(str(r["model"]), []).append(r)
    standings = []
    for m in sorted(set(races) | set(by_model)):
        n = races.get(m, 0)
        w = wins.get(m, 0)
        t = ties.get(m, 0)
        low, high = wilson_interval(w, n) if n else (None, None)
        ok = [r for r in by_model.get(m, []) if r["status"] in OK_STATUSES]
        ttfts = [float(r["ttft_ms"]) for r in ok if r["ttft_ms"] is not None]
        rates = [float(r["decode_tps"]) for r in ok if r["decode_tps"] is not None]
        costs = [float(r["cost_usd"]) for r in ok if r["cost_usd"] is not None]
        standings.append(
            ModelStanding(
                model=m,
                races=n,
                wins=w,
                ties=t,
                losses=n - w - t,
                win_rate=w / n if n else None,
                win_rate_low=low,
                win_rate_high=high,
                rating=ratings.get(m),
                replies=len(ok),
                ttft_p50_ms=statistics.median(ttfts) if ttfts else None,
                decode_p50_tps=statistics.median(rates) if rates else None,
                # Only when every reply has a known cost: a partial sum would understate it.
                cost_per_reply_usd=(
                    sum(costs) / len(costs) if ok and len(costs) == len(ok) else None
                ),
            )
        )
    standings.sort(
        key=lambda s: (s.rating is None, -(s.rating or 0.0), -(s.win_rate or 0.0), s.model)
    )
    return Leaderboard(standings, len(verdicts), regularised, iters, blind_count)


@dataclass(frozen=True, slots=True)
class StatsReport:
    """The leaderboard over every verdict, and over the blind and the sighted ones apart."""

    all: Leaderboard
    blind: Leaderboard
    sighted: Leaderboard

    def as_dict(self) -> dict[str, Any]:
        doc = self.all.as_dict()
        doc["blind"] = self.blind.as_dict()
        doc["sighted"] = self.sighted.as_dict()
        return doc


def stats_report(verdict_rows: Iterable[Row], run_rows: Iterable[Row] = ()) -> StatsReport:
    """``leaderboard`` of all verdicts, of the blind ones, and of the sighted ones."""
    rows = list(verdict_rows)
    runs = list(run_rows)
    return StatsReport(
        leaderboard(rows, runs),
        leaderboard([r for r in rows if is_blind(r)], runs),
        leaderboard([r for r in rows if not is_blind(r)], runs),
    )


def report_text(report: StatsReport) -> str:
    """All verdicts' table; then the blind and the sighted ones apart when both exist."""
    text = leaderboard_text(report.all)
    if report.blind.verdicts and report.sighted.verdicts:
        parts = (("Blind verdicts only", report.blind), ("Sighted verdicts only", report.sighted))
        for name, board in parts:
            text += f"\n{name}:\n\n" + leaderboard_text(board)
    return text


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def leaderboard_text(board: Leaderboard) -> str:
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
    blind = board.blind_verdicts
    note = f"{board.verdicts} verdicts ({blind} blind, {board.verdicts - blind} sighted)."
    if board.bt_regularised:
        note += (
            " Ratings regularised: a model never won or never lost, so each compared pair"
            " got one virtual tie."
        )
    return "\n".join([*lines, "", note]) + "\n"

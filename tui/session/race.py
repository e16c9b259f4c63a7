"""Comparisons between panes and the session summary, as plain numbers (no textual).

Pane A is the baseline: for every other pane, ΔTTFT (ms), the decode-rate ratio and the cost
ratio, for the last prompt and as medians over the session. The summary and the monthly
projection are computed from stored runs, so what the screen says is what the database holds.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from providers.config import Config
from providers.metrics import OK_STATUSES, RunMetrics, metrics_from_record
from providers.prices import model_info

if TYPE_CHECKING:  # the summary's types: imported by ``summarise``, not at start-up
    from tui.session.model_summary import ModelSummary
    from tui.session.stats import Row

PANE_LETTERS = "ABCD"


@dataclass(frozen=True, slots=True)
class Delta:
    """One pane against pane A; None where either side has no figure."""

    ttft_ms: float | None  # positive: slower first token than A
    tps_ratio: float | None  # above 1: faster decoding than A
    cost_ratio: float | None  # above 1: dearer than A
    # Set when a side's reply failed or was cancelled: (side, status); nothing is compared then.
    failed: tuple[str, str] | None = None


FAILED_STATUSES = ("error", "interrupted", "cancelled")


def compare(base: RunMetrics | None, other: RunMetrics | None) -> Delta:
    """``other`` against ``base`` for one prompt; a failed reply is rated neither way."""
    if base is None or other is None:
        return Delta(None, None, None)
    # A reply that failed after a few quick tokens would otherwise read "faster" or "cheaper".
    if other.status in FAILED_STATUSES:
        return Delta(None, None, None, ("other", other.status))
    if base.status in FAILED_STATUSES:
        return Delta(None, None, None, ("A", base.status))
    ttft = (
        other.ttft_ms - base.ttft_ms
        if other.ttft_ms is not None and base.ttft_ms is not None
        else None
    )
    tps = other.decode_tps / base.decode_tps if other.decode_tps and base.decode_tps else None
    cost = other.cost_usd / base.cost_usd if other.cost_usd is not None and base.cost_usd else None
    return Delta(ttft, tps, cost)


SESSION_RACES = 1000  # the session comparison covers this many recent races


@dataclass
class RaceLog:
    """Finished races of this screen (the last ``SESSION_RACES``): per pane, its metrics."""

    races: list[dict[int, RunMetrics]] = field(default_factory=list)

    def add(self, race: Mapping[int, RunMetrics]) -> None:
        self.races.append(dict(race))
        if len(self.races) > SESSION_RACES:
            del self.races[: len(self.races) - SESSION_RACES]

    def session_delta(self, pane: int) -> Delta:
        """Medians over races where both A and ``pane`` completed."""
        ttft: list[float] = []
        tps: list[float] = []
        cost: list[float] = []
        for race in self.races:
            a, b = race.get(0), race.get(pane)
            if a is None or b is None or a.status not in OK_STATUSES or b.status not in OK_STATUSES:
                continue
            d = compare(a, b)
            for value, into in ((d.ttft_ms, ttft), (d.tps_ratio, tps), (d.cost_ratio, cost)):
                if value is not None:
                    into.append(value)
        return Delta(_median(ttft), _median(tps), _median(cost))

    def count(self, pane: int) -> int:
        return sum(1 for r in self.races if pane in r and 0 in r)


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def split_row(panes: Sequence[tuple[str, RunMetrics | None]]) -> str:
    """The strip's cost split and prefill rate per pane: ``A in $… + out $… · prefill ≤… tok/s``
    (empty when no pane has either)."""
    from tui.format import cost_split_text, prefill_text

    cells = []
    for label, m in panes:
        if m is None:
            continue
        bits = [b for b in (cost_split_text(m), prefill_text(m)) if b]
        if bits:
            cells.append(f"{label} " + " · ".join(bits))
    return "   ".join(cells)


def finishing_order(finish_ns: Mapping[int, int | None]) -> list[int]:
    """Panes in the order their replies ended (panes that failed or were cancelled last)."""
    done = [(t, p) for p, t in finish_ns.items() if t is not None]
    return [p for _, p in sorted(done)] + sorted(p for p, t in finish_ns.items() if t is None)


def summarise(runs: Iterable[Row], verdicts: Iterable[Row] = ()) -> list[ModelSummary]:
    """Per model, from stored run rows (or ``to_json`` records with a status) and verdicts:
    the rules of ``tui.session.model_summary``, plus wins and ties."""
    from tui.session.model_summary import ModelSummary

    by_model: dict[str, ModelSummary] = {}
    for r in runs:
        model = str(r["model"])
        summary = by_model.get(model) or ModelSummary(model)
        if summary.add(str(r["status"]), metrics_from_record(r)):
            by_model[model] = summary
    for v in verdicts:
        winner = str(v["winner"])
        models = json.loads(v["models"]) if isinstance(v["models"], str) else list(v["models"])
        for m in models if winner == "tie" else [winner]:
            counted = by_model.get(m)
            if counted is None:  # a model with no counted run has no row
                continue
            if winner == "tie":
                counted.ties += 1
            else:
                counted.wins += 1
    return sorted(by_model.values(), key=lambda s: s.model)


@dataclass(frozen=True, slots=True)
class Projection:
    """A month of the user's workload on one model."""

    model: str
    monthly_usd: float | None
    basis: str  # "price table" / "config" / "observed cost per token" / "unknown price"


def project(
    models: Iterable[str],
    input_per_month: int,
    output_per_month: int,
    config: Config | None,
    summaries: Sequence[ModelSummary] = (),
) -> list[Projection]:
    """Monthly cost of ``input``/``output`` tokens per month on each model.

    The list price when known; otherwise the cost per token observed this session (a provider
    that reports its own cost, like OpenRouter); otherwise unknown.
    """
    observed = {s.model: s for s in summaries}
    out: list[Projection] = []
    for model in models:
        info = model_info(model, config)
        if info.price is not None:
            monthly = (
                input_per_month * info.price.input + output_per_month * info.price.output
            ) / 1_000_000
            out.append(Projection(model, monthly, info.price.source))
            continue
        s = observed.get(model)
        tokens = (s.input_tokens + s.output_tokens) if s else 0
        if s is not None and s.cost_known and s.cost_usd and tokens:
            per_token = s.cost_usd / tokens
            out.append(
                Projection(
                    model,
                    per_token * (input_per_month + output_per_month),
                    "observed cost per token",
                )
            )
        else:
            out.append(Projection(model, None, "unknown price"))
    return out

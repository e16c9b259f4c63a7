"""One model's figures over its runs: the row of the session summary (F6, replay N times) and of
a replay suite's table (the app's and ``tokenrace replay``'s).

The rules, once:
- A cancelled run stays out of every figure (DESIGN §5): the user stopped it, so its TTFT, its
  tokens and its cost say nothing about the model.
- A reply that ended ``complete`` or ``length`` is a reply; any other ending is a failure. Only
  replies feed TTFT and the decode rate; tokens and cost count failures too (an interrupted or
  failed reply may have been billed for what it streamed).
- Cost is the sum of the known costs. It is unknown (``—``) when no run's cost is known, never
  $0 (DESIGN §2); it is a lower bound (``≥``) when some runs' cost is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from providers.metrics import OK_STATUSES, RunMetrics, percentile


@dataclass
class ModelSummary:
    """One model's replies, failures, TTFT and decode-rate percentiles, tokens and cost."""

    model: str
    replies: int = 0
    failures: int = 0
    ttft: list[float] = field(default_factory=list)
    decode: list[float] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_sum: float = 0.0
    costs_known: int = 0
    costs_unknown: int = 0
    wins: int = 0
    ties: int = 0
    cached_tokens: int = 0
    # The cost split over runs priced from our table (DESIGN §4): input, cached, cache write,
    # output; None until one such run is counted.
    cost_split: tuple[float, float, float, float] | None = None
    prefill: list[float] = field(default_factory=list)  # input ÷ TTFT of each reply

    def add(self, status: str, m: RunMetrics) -> bool:
        """Count one run; False when it stays out (cancelled)."""
        if status == "cancelled":
            return False
        if status in OK_STATUSES:
            self.replies += 1
            if m.ttft_ms is not None:
                self.ttft.append(m.ttft_ms)
            if m.decode_tps is not None:
                self.decode.append(m.decode_tps)
            if m.prefill_tps is not None:
                self.prefill.append(m.prefill_tps)
        else:
            self.failures += 1
        self.input_tokens += m.input_tokens or 0
        self.output_tokens += m.output_tokens or 0
        self.cached_tokens += m.cached_tokens or 0
        if m.cost_input_usd is not None:
            a, b, c, d = self.cost_split or (0.0, 0.0, 0.0, 0.0)
            self.cost_split = (
                a + m.cost_input_usd,
                b + (m.cost_cached_usd or 0.0),
                c + (m.cost_cache_write_usd or 0.0),
                d + (m.cost_output_usd or 0.0),
            )
        if m.cost_usd is None:
            self.costs_unknown += 1
        else:
            self.costs_known += 1
            self.cost_sum += m.cost_usd
        return True

    @property
    def ttft_p50_ms(self) -> float | None:
        return percentile(self.ttft, 50)

    @property
    def ttft_p95_ms(self) -> float | None:
        return percentile(self.ttft, 95)

    @property
    def decode_p50_tps(self) -> float | None:
        return percentile(self.decode, 50)

    @property
    def prefill_p50_tps(self) -> float | None:
        """Median input ÷ TTFT: an upper bound of the server's prefill speed."""
        return percentile(self.prefill, 50)

    @property
    def cost_usd(self) -> float | None:
        """The sum of the known costs; None when none is known."""
        return self.cost_sum if self.costs_known else None

    @property
    def cost_known(self) -> bool:
        """Every counted run's cost is known (and there was one)."""
        return self.costs_known > 0 and self.costs_unknown == 0


def cost_text(cost_usd: float | None, complete: bool) -> str:
    """A summed cost: ``—`` when unknown, ``≥`` when some runs had no price."""
    from tui import format as fmt

    if cost_usd is None:
        return "—"
    return ("" if complete else "≥") + fmt.usd(cost_usd)

"""How figures are written, the same in the TUI, headless output and exports (no textual)."""

from __future__ import annotations

import math

from providers.metrics import RunMetrics

DASH = "—"
APPROX = "≈"


def ms(value: float | None) -> str:
    """``412 ms`` / ``3.24 s`` / —."""
    if value is None:
        return DASH
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def tps(value: float | None) -> str:
    """``86.3 tok/s`` / —."""
    if value is None:
        return DASH
    return f"{value:,.0f} tok/s" if value >= 1000 else f"{value:.1f} tok/s"


def tokens(value: int | None, estimated: bool = False) -> str:
    """``245 tok`` / ``≈245 tok``."""
    if value is None:
        return DASH
    return f"{APPROX if estimated else ''}{value:,} tok"


def usd(value: float | None, estimated: bool = False) -> str:
    """Dollars with enough digits to tell cheap models apart: ``$0.000147``."""
    if value is None or not math.isfinite(value) or value < 0:
        return DASH  # not a price: refused where it arrived, never printed in 300 digits
    if value == 0:
        return "$0"  # free (a local model): zero whatever the token counts
    prefix = APPROX if estimated else ""
    if value >= 1e6:
        return f"{prefix}${value:.3g}"
    if value >= 1:
        return f"{prefix}${value:,.2f}"
    if value >= 0.01:
        return f"{prefix}${value:.4f}"
    return f"{prefix}${value:.6f}"


def cost_is_estimated(m: RunMetrics) -> bool:
    """Cost rests on an estimate when token counts were estimated or the prompt size was."""
    return not m.cost_reported and (m.output_tokens_estimated or m.input_tokens is None)


def summary_line(model: str, m: RunMetrics) -> str:
    """The one-line summary ``ask`` prints to stderr: the model, then ``metrics_text``."""
    return f"{model} · {metrics_text(m)}"


STATUS_GLYPHS = {
    "streaming": "● streaming",
    "complete": "✓ complete",
    "length": "✂ cut at max tokens",
    "filtered": "⚠ filtered by the provider",
    "cancelled": "⊘ cancelled",
    "interrupted": "⚡ interrupted",
    "error": "✗ error",
}


def prefill_text(m: RunMetrics) -> str | None:
    """``prefill ≤4,210 tok/s``: input tokens ÷ TTFT, an upper bound of the server's prefill
    speed (TTFT also holds queueing and the network), hence the ≤."""
    return None if m.prefill_tps is None else f"prefill ≤{tps(m.prefill_tps)}"


def cost_split_text(m: RunMetrics) -> str | None:
    """``in $0.0012 + cached $0.0001 + out $0.0040``: the cost split (DESIGN §4), when priced
    from our table (a provider's own figure comes as one number); cache parts when present."""
    if m.cost_input_usd is None or m.cost_output_usd is None or not m.cost_usd:
        return None
    estimated = cost_is_estimated(m)
    parts = [f"in {usd(m.cost_input_usd, estimated)}"]
    if m.cached_tokens:
        parts.append(f"cached {usd(m.cost_cached_usd)}")
    if m.cache_write_tokens:
        parts.append(f"cache write {usd(m.cost_cache_write_usd)}")
    parts.append(f"out {usd(m.cost_output_usd, m.output_tokens_estimated)}")
    return " + ".join(parts)


def metrics_text(m: RunMetrics) -> str:
    """The compact line under a finished reply."""
    parts = [STATUS_GLYPHS.get(m.status, m.status), f"TTFT {ms(m.ttft_ms)}"]
    if m.ttfo_ms is not None and m.ttft_ms is not None and m.ttfo_ms - m.ttft_ms > 1:
        parts.append(f"TTFO {ms(m.ttfo_ms)}")
    if m.ttft_tool_ms is not None:
        parts.append(f"first tool call {ms(m.ttft_tool_ms)}")
    prefill = prefill_text(m)
    split = cost_split_text(m)
    parts += [
        tps(m.decode_tps),
        *([prefill] if prefill else []),
        tokens(m.output_tokens, m.output_tokens_estimated),
        f"e2e {ms(m.e2e_ms)}",
        usd(m.cost_usd, cost_is_estimated(m)) + (f" ({split})" if split else ""),
    ]
    if m.image_tokens:  # only where the server reported it (Gemini, some OpenAI models)
        parts.append(f"images {m.image_tokens:,} input tok")
    if m.retries:
        parts.append(f"{m.retries} retr{'y' if m.retries == 1 else 'ies'} (+{ms(m.retry_wait_ms)})")
    if m.stalls:
        parts.append(f"{m.stalls} stall{'s' if m.stalls > 1 else ''}")
    return " · ".join(parts)

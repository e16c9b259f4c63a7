"""Prices ($ per 1M tokens) and context lengths: a built-in table, overridable from config."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from providers.config import Config
from providers.model_ref import ModelRef, endpoint_of

_TABLE = Path(__file__).with_name("prices.toml")
# Presets that reach the same provider through its OpenAI-compatible endpoint: same prices.
_SAME_PROVIDER = {"anthropic-openai": "anthropic", "gemini-openai": "gemini"}
# Anthropic bills a 5-minute cache write at 1.25 × the input price (its pricing page).
_ANTHROPIC_CACHE_WRITE = 1.25


@dataclass(frozen=True, slots=True)
class Price:
    """$ per 1M tokens; ``cached_input`` falls back to ``input`` when a provider has no discount."""

    input: float
    output: float
    cached_input: float | None = None
    source: str = "built-in"
    cache_write_input: float | None = None  # falls back to ``input`` when unknown

    def cost(self, prompt: int, completion: int, cached: int = 0, cache_write: int = 0) -> float:
        """Cost in $ of one request (DESIGN §4); ``cached`` and ``cache_write`` are in prompt."""
        return sum(self.split(prompt, completion, cached, cache_write))

    def split(
        self, prompt: int, completion: int, cached: int = 0, cache_write: int = 0
    ) -> tuple[float, float, float, float]:
        """The cost in $ of (uncached input, cached input, cache writes, output)."""
        cached = max(0, min(cached, prompt))
        cache_write = max(0, min(cache_write, prompt - cached))
        cached_rate = self.cached_input if self.cached_input is not None else self.input
        write_rate = self.cache_write_input if self.cache_write_input is not None else self.input
        return (
            (prompt - cached - cache_write) * self.input / 1_000_000,
            cached * cached_rate / 1_000_000,
            cache_write * write_rate / 1_000_000,
            completion * self.output / 1_000_000,
        )


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the table knows of one model: price, context length, provenance."""

    ref: str
    price: Price | None
    context: int | None


@cache
def builtin_table() -> dict[str, Any]:
    """The parsed built-in table (``as_of`` and ``models``)."""
    with _TABLE.open("rb") as fh:
        return tomllib.load(fh)


def as_of() -> str:
    """The date the built-in prices were read off the providers' pages."""
    return str(builtin_table().get("as_of", "unknown"))


def builtin_models(endpoint: str | None = None) -> list[str]:
    """Model refs in the built-in table, optionally for one endpoint."""
    refs = list(builtin_table()["models"])
    if endpoint is None:
        return refs
    return [r for r in refs if endpoint_of(r) == endpoint]


def model_info(ref: str, config: Config | None = None) -> ModelInfo:
    """Price and context length for ``endpoint/model``: config first, then the built-in table.

    Prices match the exact ``endpoint/model`` only (a gateway may charge differently); context
    length, a property of the model, also falls back to the same model id on another endpoint.
    """
    endpoint = config.endpoints.get(endpoint_of(ref)) if config is not None else None
    if (
        config is not None
        and endpoint is not None
        and endpoint.managed
        and ref not in config.prices
    ):
        from providers.local import CONTEXT

        # The local model costs nothing per token; its context is what its server is given.
        return ModelInfo(ref=ref, price=Price(0.0, 0.0, 0.0, source="local"), context=CONTEXT)
    table: dict[str, dict[str, Any]] = builtin_table()["models"]
    ep_name, model_id = (parsed := ModelRef.loose(ref)).endpoint, parsed.model
    provider = _SAME_PROVIDER.get(ep_name, ep_name) if endpoint is None or endpoint.preset else ""
    row = table.get(ref) or table.get(f"{provider}/{model_id}")
    price: Price | None = None
    context: int | None = None
    if row is not None:
        write = row.get("cache_write_input")
        if write is None and provider == "anthropic":
            write = float(row["input"]) * _ANTHROPIC_CACHE_WRITE
        price = Price(
            input=float(row["input"]),
            output=float(row["output"]),
            cached_input=float(row["cached_input"]) if "cached_input" in row else None,
            source=f"built-in, as of {as_of()}",
            cache_write_input=float(write) if write is not None else None,
        )
        context = int(row["context"]) if "context" in row else None
    else:
        for other, orow in table.items():
            if ModelRef.loose(other).model == model_id and "context" in orow:
                context = int(orow["context"])
                break
    override = config.prices.get(ref) if config is not None else None
    if override is not None:
        if override.input is not None and override.output is not None:
            price = Price(
                input=override.input,
                output=override.output,
                cached_input=override.cached_input,
                source="config",
            )
        elif price is not None and (override.input is not None or override.output is not None):
            price = Price(
                input=override.input if override.input is not None else price.input,
                output=override.output if override.output is not None else price.output,
                cached_input=(
                    override.cached_input
                    if override.cached_input is not None
                    else price.cached_input
                ),
                source="config + built-in",
            )
        if override.context is not None:
            context = override.context
    return ModelInfo(ref=ref, price=price, context=context)


def format_price(price: Price | None) -> str:
    """``$0.15 / $0.60`` (input / output per 1M), or an em dash when unknown."""
    if price is None:
        return "—"
    return f"${price.input:g} / ${price.output:g}"


def format_context(context: int | None) -> str:
    """``128k`` / ``1M`` / —."""
    if context is None:
        return "—"
    if context >= 1_000_000:
        return f"{context / 1_000_000:.3g}M"
    if context >= 1000:
        return f"{round(context / 1000):d}k"
    return str(context)

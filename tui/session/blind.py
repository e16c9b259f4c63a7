"""Blind races: which name to show for a model, and what to hide, until the verdict (no textual).

Every display path asks this module: pane headers, status bars, replies, errors, the strip,
notifications, F2/F4/F6, and exports. While a race is blind and unrevealed a pane's model is
shown as ``model A``, ``model B``…, and any text that names a hidden model (its full
``endpoint/model`` reference, its model id, its endpoint) has the name replaced. Timings and
cost can give a fast or cheap provider away, so the user chooses per race whether they show;
and whether replies appear as they stream or all together when every pane has finished.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from providers.metrics import EMPTY_METRICS, RunMetrics

LETTERS = "ABCD"
HIDDEN_ENDPOINT = "a hidden endpoint"
HIDDEN_MODEL = "a hidden model"
LOCKED = "Blind race: the models stay hidden until the verdict (F9)."
FIGURES_HIDDEN = "Blind race: timings and cost are hidden until the verdict (F9)."
# A name inside a longer word or id (``gpt-4o`` inside ``gpt-4o-mini``) is not that name.
_NAME_CHAR = r"[\w./:@-]"
# Where a hidden name ends: no name character follows, except a '.' or ':' that ends a sentence
# or a clause ("s-05: no key", "used gpt-4o."), not one inside a longer name ("llama3:8b").
_NAME_END = rf"(?![\w/@-]|[.:]{_NAME_CHAR})"

_T = TypeVar("_T")


@dataclass
class BlindRace:
    """One blind race: its models in pane order (shuffled), and what the user chose to see."""

    models: list[str] = field(default_factory=list)
    revealed: bool = False
    show_timings: bool = False
    live_replies: bool = False

    @property
    def hiding(self) -> bool:
        return not self.revealed

    def label(self, index: int) -> str:
        """``model B``: how pane ``index``'s model is named while hidden."""
        return f"model {LETTERS[index]}" if 0 <= index < len(LETTERS) else HIDDEN_MODEL

    def name(self, model: str | None, index: int | None = None) -> str:
        """The name to show for ``model`` (in pane ``index`` when known)."""
        if not self.hiding:
            return model or "?"
        if index is None and model in self.models:
            index = self.models.index(model)
        return self.label(index) if index is not None else HIDDEN_MODEL

    def replacements(self) -> list[tuple[str, str]]:
        """Every hidden string and what replaces it, longest first (a full reference before
        the model id and endpoint it contains)."""
        pairs: dict[str, str] = {}
        endpoints: dict[str, set[int]] = {}
        for index, ref in enumerate(self.models):
            pairs.setdefault(ref, self.label(index))
            endpoint, _, model_id = ref.partition("/")
            if model_id:
                pairs.setdefault(model_id, self.label(index))
            if endpoint:
                endpoints.setdefault(endpoint, set()).add(index)
        for endpoint, panes in endpoints.items():
            only = next(iter(panes)) if len(panes) == 1 else None
            pairs.setdefault(
                endpoint, f"endpoint {LETTERS[only]}" if only is not None else HIDDEN_ENDPOINT
            )
        return sorted(pairs.items(), key=lambda p: -len(p[0]))

    def scrub(self, text: str) -> str:
        """``text`` with every hidden name replaced (unchanged once revealed)."""
        if not self.hiding or not text:
            return text
        for secret, shown in self.replacements():
            pattern = rf"(?<!{_NAME_CHAR}){re.escape(secret)}{_NAME_END}"
            # A function, so a backslash in a name is never read as a group reference.
            text = re.sub(pattern, _constant(shown), text)
        return text

    def hides_figures(self) -> bool:
        return self.hiding and not self.show_timings

    def holds_replies(self) -> bool:
        """Whether replies wait until every pane has finished, then appear together."""
        return self.hiding and not self.live_replies

    def to_json(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "revealed": self.revealed,
            "show_timings": self.show_timings,
            "live_replies": self.live_replies,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> BlindRace | None:
        if not isinstance(data, dict):
            return None
        models = data.get("models")
        return cls(
            models=[str(m) for m in models] if isinstance(models, list) else [],
            revealed=bool(data.get("revealed", False)),
            show_timings=bool(data.get("show_timings", False)),
            live_replies=bool(data.get("live_replies", False)),
        )


def _constant(value: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: value


def shuffled(models: Sequence[str], rng: random.Random | None = None) -> list[str]:
    """The models in a random pane order, so the command line's order says nothing."""
    out = list(models)
    (rng or random.SystemRandom()).shuffle(out)
    return out


def hiding(race: BlindRace | None) -> bool:
    return race is not None and race.hiding


def shown(race: BlindRace | None, model: str | None, index: int | None = None) -> str:
    """The name to show for ``model``: the model itself unless a blind race hides it."""
    if race is None:
        return model or "?"
    return race.name(model, index)


def shown_models(race: BlindRace | None, models: Sequence[str]) -> list[str]:
    return [shown(race, m, i) for i, m in enumerate(models)]


def scrub(race: BlindRace | None, text: str) -> str:
    """``text`` with hidden names replaced; unchanged outside an unrevealed blind race."""
    return text if race is None else race.scrub(text)


# What a hidden race still shows of a reply: its counts. Everything else (every timing, rate
# and cost, and any figure added later) is blanked, so a new figure cannot leak a race.
_SHOWN_WHILE_HIDDEN = (
    "status",
    "output_tokens",
    "output_tokens_estimated",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "image_tokens",
    "tool_calls",
    "token_events",
    "finish_reason",
)


def metrics(race: BlindRace | None, m: RunMetrics) -> RunMetrics:
    """A reply's figures as shown: only its counts while the race hides timings and cost."""
    if race is None or not race.hides_figures():
        return m
    return replace(EMPTY_METRICS, **{k: getattr(m, k) for k in _SHOWN_WHILE_HIDDEN})


def figures(race: BlindRace | None, f: _T, index: int | None = None) -> _T:
    """A status bar's live figures as shown: the model's label, timings blanked if hidden."""
    if race is None or not race.hiding:
        return f
    values: dict[str, Any] = {
        "model": race.name(getattr(f, "model", None), index),
        "retry_message": race.scrub(getattr(f, "retry_message", "")),
    }
    if race.hides_figures():
        values.update(ttft_ms=None, decode_tps=None, elapsed_ms=None, cost_usd=None)
    return replace(f, **values)  # type: ignore[type-var]


def spark(race: BlindRace | None, rates: list[float]) -> list[float]:
    """The decode-rate sparkline as shown: empty while timings are hidden."""
    return [] if race is not None and race.hides_figures() else rates


def live_line(race: BlindRace | None, line: str) -> str:
    """The line under a streaming reply: without its clock while timings are hidden."""
    if race is not None and race.hides_figures():
        return "● streaming"
    return scrub(race, line)


def topbar_bits(race: BlindRace | None) -> list[str]:
    """What the top bar says about a blind race."""
    if race is None:
        return []
    if race.revealed:
        return ["blind race revealed"]
    return [
        "BLIND",
        "timings shown" if race.show_timings else "timings hidden",
        "replies live" if race.live_replies else "replies together",
    ]


def reveal_text(race: BlindRace) -> str:
    """``A = x/y · B = z/w``: who was behind each label."""
    return " · ".join(f"{LETTERS[i]} = {m}" for i, m in enumerate(race.models))


def export_view(race: BlindRace | None, data: dict[str, Any]) -> dict[str, Any]:
    """An export's data as a blind race may show it: models by label, endpoints hidden,
    every other string scrubbed (the replies' own text is kept as the models wrote it)."""
    if race is None or not race.hiding:
        return data
    out = dict(data)
    messages = []
    for m in data.get("messages", []):
        item = dict(m)
        pane = item.get("pane")
        if item.get("model"):
            item["model"] = race.name(item["model"], pane if isinstance(pane, int) else None)
        if "endpoint" in item:
            item["endpoint"] = race.scrub(str(item["endpoint"]))
        if item.get("error"):
            item["error"] = race.scrub(str(item["error"]))
        if race.hides_figures():
            item.pop("metrics", None)
        messages.append(item)
    out["messages"] = messages
    out["blind"] = {
        "revealed": False,
        "show_timings": race.show_timings,
        "live_replies": race.live_replies,
    }
    return out

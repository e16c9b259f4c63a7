"""Run metrics from an event stream: one pure function, the definitions of DESIGN §4.

t0 = RequestSent of the last attempt; tF = first token event (text, reasoning or tool call);
tC = first text event; tL = last token event; n = output tokens.
TTFT = tF − t0; TTFO = tC − t0; decode rate = (n − n₁) / (tL − tF); end-to-end = tL − t0.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Final, Literal, Protocol

from providers.events import (
    TOKEN_EVENTS,
    Cancelled,
    Connected,
    Event,
    Finished,
    ReasoningDelta,
    RequestSent,
    ResponseHeaders,
    Retrying,
    StreamError,
    TextDelta,
    TokenCount,
    ToolCallDelta,
    Usage,
)
from providers.prices import Price

Status = Literal["complete", "length", "filtered", "cancelled", "interrupted", "error", "streaming"]

# When token events carry more than this many characters on average, they are batches of
# tokens, and counting events would undercount: estimate from characters instead.
_BATCHED_CHARS_PER_EVENT = 12.0
_CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """Everything we measured about one reply; None where it cannot be known."""

    status: Status
    ttft_ms: float | None
    ttfo_ms: float | None
    decode_tps: float | None
    e2e_ms: float | None
    client_overhead_ms: float | None
    connect_ms: float | None
    output_tokens: int | None
    output_tokens_estimated: bool
    input_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    itl_p50_ms: float | None
    itl_p95_ms: float | None
    itl_max_ms: float | None
    stalls: int
    retries: int
    retry_wait_ms: float
    cost_usd: float | None
    cost_reported: bool  # the provider's own figure (OpenRouter), not our price × tokens
    overall_tps: float | None
    token_events: int
    finish_reason: str | None
    cache_write_tokens: int | None = None  # written to the prompt cache (Anthropic)
    prefill_tps: float | None = None  # input tokens / TTFT: an upper bound of the prefill speed
    image_tokens: int | None = None  # input tokens the images cost, where the server says
    ttft_tool_ms: float | None = None  # first tool-call fragment − t0 (DESIGN §4)
    tool_calls: int = 0  # tool calls the reply made (choice 0)
    # The cost split (DESIGN §4), from our price table; None when the cost is unknown or is the
    # provider's own figure (which comes as one number).
    cost_input_usd: float | None = None  # uncached input
    cost_cached_usd: float | None = None  # input read from the prompt cache
    cost_cache_write_usd: float | None = None  # input written to the prompt cache
    cost_output_usd: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``metrics`` object of ``ask --json`` (and exports, and the metrics log)."""
        # Times and rates to the microsecond / thousandth; dollars are far smaller than that.
        return {
            k: (round(v, 12 if k.startswith("cost_") else 3) if isinstance(v, float) else v)
            for k in JSON_KEYS
            for v in (getattr(self, k),)
        }


# Statuses of a reply that ended as the model meant it to: counted in statistics, exit code 0.
OK_STATUSES: Final = ("complete", "length")

# Every figure of a run, by name: the one list the store's columns, exports, the metrics log
# and the CSV of a replay are made from.
METRIC_NAMES: Final = tuple(f.name for f in fields(RunMetrics) if f.name != "status")

# The ``metrics`` object's keys: the figures, without the finish reason (said beside it).
JSON_KEYS: Final = tuple(k for k in METRIC_NAMES if k != "finish_reason")


def status_of(events: Sequence[Event]) -> Status:
    """The reply's status from its events (DESIGN §4)."""
    status: Status = "streaming"
    for ev in events:
        if isinstance(ev, Cancelled):
            return "cancelled"
        if isinstance(ev, StreamError):
            # A stream that goes silent mid-reply ends like one that drops (DESIGN §5): the
            # text so far is whole up to where it stopped, and a retry may finish it.
            if ev.kind in ("interrupted", "timeout_idle"):
                return "interrupted"
            return "cancelled" if ev.kind == "cancelled" else "error"
        if isinstance(ev, Finished):
            if ev.reason == "length":
                status = "length"
            elif ev.reason == "content_filter":
                status = "filtered"
            else:
                status = "complete"
    return status


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation; None for no values."""
    if not values:
        return None
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _ms(ns: int) -> float:
    return ns / 1e6


def _chars(ev: Event) -> int:
    if isinstance(ev, (TextDelta, ReasoningDelta)):
        return len(ev.text)
    if isinstance(ev, ToolCallDelta):
        return len(ev.arguments) + len(ev.name or "")
    return 0


def compute_metrics(
    events: Sequence[Event],
    *,
    t_submit_ns: int | None = None,
    price: Price | None = None,
    stall_s: float = 1.0,
    prompt_estimate: int | None = None,
) -> RunMetrics:
    """All metrics of one reply from its events; pure, and the only place they are computed."""
    t0: int | None = None
    attempt_start = 0
    retries = 0
    retry_wait_ns = 0
    last_retry: Retrying | None = None
    for i, ev in enumerate(events):
        if isinstance(ev, Retrying):
            retries += 1
            last_retry = ev
            attempt_start = i + 1
        elif isinstance(ev, RequestSent):
            t0 = ev.t_ns
            if last_retry is not None:
                # The wait is what passed between the failure and the next request leaving.
                retry_wait_ns += max(0, ev.t_ns - last_retry.t_ns)
                last_retry = None

    attempt = events[attempt_start:]
    connect_ns: int | None = None
    tokens: list[Event] = []
    first_text: TextDelta | None = None
    first_tool: ToolCallDelta | None = None
    tool_indexes: set[int] = set()
    usage: Usage | None = None
    counted: TokenCount | None = None
    finish: str | None = None
    for ev in attempt:
        if isinstance(ev, TOKEN_EVENTS):
            tokens.append(ev)
            if first_text is None and isinstance(ev, TextDelta):
                first_text = ev
            if isinstance(ev, ToolCallDelta) and ev.choice == 0:
                first_tool = first_tool or ev
                tool_indexes.add(ev.index)
        elif isinstance(ev, Usage):
            usage = ev
        elif isinstance(ev, TokenCount):
            counted = ev
        elif isinstance(ev, Connected):
            connect_ns = ev.connect_ns
        elif isinstance(ev, Finished):
            finish = ev.reason
    status = status_of(events)

    t_first = tokens[0].t_ns if tokens else None
    t_last = tokens[-1].t_ns if tokens else None
    ttft = _ms(t_first - t0) if (t0 is not None and t_first is not None) else None
    ttfo = _ms(first_text.t_ns - t0) if (t0 is not None and first_text is not None) else None
    ttft_tool = _ms(first_tool.t_ns - t0) if (t0 is not None and first_tool is not None) else None
    e2e = _ms(t_last - t0) if (t0 is not None and t_last is not None) else None
    overhead = _ms(t0 - t_submit_ns) if (t0 is not None and t_submit_ns is not None) else None
    if overhead is not None and retries:
        overhead = max(0.0, overhead - _ms(retry_wait_ns))

    # --- output tokens n, and n₁ (tokens in the first token event) ---------------------------
    tally = _tally(tokens)
    streamed_reasoning = any(isinstance(e, ReasoningDelta) for e in tokens)
    reasoning_reported = usage.reasoning if usage is not None else None
    estimated = False
    n: int | None
    if usage is not None and usage.completion is not None:
        n = usage.completion
        if reasoning_reported and not streamed_reasoning:
            n = max(0, n - reasoning_reported)  # hidden reasoning never streamed: not decode
    elif counted is not None:
        n = counted.completion
    elif tokens:
        n = tally.estimate()
        estimated = True
    else:
        n = 0 if status != "streaming" else None
        estimated = usage is None

    decode: float | None = None
    if t_first is not None and t_last is not None:
        decode = tally.decode_rate(n, t_last - t_first)
    overall = None
    if n is not None and t0 is not None and t_last is not None and t_last > t0:
        overall = n / ((t_last - t0) / 1e9)

    gaps = [_ms(b.t_ns - a.t_ns) for a, b in itertools.pairwise(tokens)]
    stalls = sum(1 for g in gaps if g > stall_s * 1000)

    input_tokens = usage.prompt if usage is not None else None
    cached = usage.cached if usage is not None else None
    cache_write = usage.cache_write if usage is not None else None
    cost: float | None = None
    split: tuple[float, float, float, float] | None = None
    reported = False
    # A request that never left (no key, a refused connection, a bad config) cost nothing and
    # produced nothing: exact zeros, not estimates from the prompt's size.
    never_sent = (
        status != "streaming"
        and t0 is None
        and usage is None
        and not tokens
        and not any(isinstance(e, ResponseHeaders) for e in events)
    )
    if never_sent:
        n, estimated, input_tokens, cost = 0, False, 0, 0.0
    elif usage is not None and usage.cost_usd is not None:
        cost = usage.cost_usd
        reported = True
    elif price is not None and n is not None:
        prompt = input_tokens if input_tokens is not None else prompt_estimate
        if prompt is not None:
            # Billing counts hidden reasoning tokens too: usage.completion includes them.
            billed = usage.completion if usage is not None and usage.completion is not None else n
            split = price.split(prompt, billed, cached or 0, cache_write or 0)
            cost = sum(split)

    return RunMetrics(
        status=status,
        ttft_ms=ttft,
        ttfo_ms=ttfo,
        decode_tps=decode,
        e2e_ms=e2e,
        client_overhead_ms=overhead,
        connect_ms=_ms(connect_ns) if connect_ns is not None else (0.0 if t0 is not None else None),
        output_tokens=n,
        output_tokens_estimated=estimated,
        input_tokens=input_tokens,
        cached_tokens=cached,
        reasoning_tokens=reasoning_reported,
        itl_p50_ms=percentile(gaps, 50),
        itl_p95_ms=percentile(gaps, 95),
        itl_max_ms=max(gaps) if gaps else None,
        stalls=stalls,
        retries=retries,
        retry_wait_ms=_ms(retry_wait_ns),
        cost_usd=cost,
        cost_reported=reported,
        overall_tps=overall,
        token_events=len(tokens),
        finish_reason=finish,
        cache_write_tokens=cache_write,
        # Upper bound: TTFT also holds queueing and the network (DESIGN §4).
        prefill_tps=(input_tokens / (ttft / 1000.0)) if input_tokens and ttft else None,
        image_tokens=usage.image if usage is not None else None,
        ttft_tool_ms=ttft_tool,
        tool_calls=len(tool_indexes),
        cost_input_usd=split[0] if split else None,
        cost_cached_usd=split[1] if split else None,
        cost_cache_write_usd=split[2] if split else None,
        cost_output_usd=split[3] if split else None,
    )


class TokenTally:
    """Running counts of a reply's token events: the one estimator of n and n₁ (DESIGN §4).

    Fed one event at a time, it answers in O(1), so the live status bar and the final figures
    estimate the same way and agree.
    """

    __slots__ = ("chars", "events", "exact", "first_chars", "first_exact")

    def __init__(self) -> None:
        self.events = 0
        self.chars = 0
        self.exact: int | None = 0  # sum of the servers' per-chunk counts while every one has it
        self.first_chars = 0
        self.first_exact: int | None = None

    def add(self, ev: Event) -> None:
        """Count one token event."""
        chars = _chars(ev)
        exact = getattr(ev, "tokens", None)
        if self.events == 0:
            self.first_chars = chars
            self.first_exact = exact if isinstance(exact, int) else None
        self.events += 1
        self.chars += chars
        if self.exact is not None:
            self.exact = self.exact + exact if isinstance(exact, int) else None

    def estimate(self) -> int:
        """Token events, or characters / 4 when events are batches of tokens."""
        if self.events == 0:
            return 0
        if self.exact is not None:
            return self.exact
        if self.chars / self.events > _BATCHED_CHARS_PER_EVENT:
            return max(self.events, round(self.chars / _CHARS_PER_TOKEN))
        return self.events

    def first_event_tokens(self, n: int | None) -> int:
        """n₁: tokens that arrived in the first token event, so a batched first chunk is excluded.

        Exact when the server said how many tokens each chunk held. Otherwise: when the later
        events look like one token each (the common case of a batched first chunk), n₁ is what
        is left over, n − (k − 1); when every event is a batch, n₁ is the first event's share of
        the characters.
        """
        if self.events == 0 or n is None:
            return 0
        if self.first_exact is not None:
            return self.first_exact
        k = self.events
        if n <= k:
            return min(1, n)  # at most one token per event: the first event held one
        share = n * self.first_chars / self.chars if self.chars > 0 else 1.0
        leftover = n - (k - 1)
        if k > 1 and (n - share) / (k - 1) < 1.5:
            return leftover
        return max(1, min(round(share), leftover))

    def decode_rate(self, n: int | None, span_ns: int) -> float | None:
        """(n − n₁) / (tL − tF) in tok/s; None under two events or with no time between."""
        if self.events < 2 or n is None or span_ns <= 0:
            return None
        return (n - self.first_event_tokens(n)) / (span_ns / 1e9)


def _tally(tokens: Sequence[Event]) -> TokenTally:
    tally = TokenTally()
    for ev in tokens:
        tally.add(ev)
    return tally


# The figures of a reply before its first event: what a pane shows while it waits.
EMPTY_METRICS: Final = compute_metrics(())


class Record(Protocol):
    """A stored run read by column name: a ``sqlite3.Row`` or a dict."""

    def __getitem__(self, key: str, /) -> Any: ...


def metrics_from_record(record: Record) -> RunMetrics:
    """A ``RunMetrics`` rebuilt from a stored run (a database row or a JSON record).

    A name the record lacks, or holds as null where the figure is never unknown (counts,
    flags), keeps its value in ``EMPTY_METRICS``; flags stored as 0/1 come back as booleans.
    """
    values: dict[str, Any] = {}
    for name in METRIC_NAMES:
        empty = getattr(EMPTY_METRICS, name)
        try:
            v = record[name]
        except (KeyError, IndexError):  # a dict's miss, a sqlite3.Row's
            v = None
        if v is None:
            v = empty
        elif isinstance(empty, bool):
            v = bool(v)
        values[name] = v
    return replace(EMPTY_METRICS, status=record["status"], **values)

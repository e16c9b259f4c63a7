"""Load sweeps: concurrency or request-rate steps, with the client's own health in every step.

A sweep is a list of steps (``--concurrency 1,2,4`` or ``--rate 1,5,10``). Each step runs on one
or more *shards*: engine processes (this one, ``--procs N`` children, or Ray actors), each
stamping its own requests on its own node's clock. Shards send back one ``Sample`` per request;
the step's percentiles are taken over the merged samples, never averaged across shards. Each
shard also reports its ``Health`` for the step: the event loop's lag, its CPU, and the stamping
delay of a paced canary stream (``providers.canary``). A step whose stamping delay p99 is over
10 ms (DESIGN §4's honesty bound) is flagged: the client, not the server, may have set its
figures.

Safe with paid APIs: requests are never retried (a 429 is a failure), the cost is estimated
before the first request, ``max_cost_usd`` stops sending once reached, and a stop (Ctrl+C)
cancels what is in flight and keeps what finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import itertools
import math
import os
import platform
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol

from providers.capabilities import ChatParams
from providers.config import Config, Endpoint
from providers.engine import Engine, collect
from providers.events import TOKEN_EVENTS, RequestSent, StreamError, TextDelta
from providers.inert import inert_label
from providers.keys import Keyring, KeyStore
from providers.metrics import compute_metrics, percentile
from providers.prices import model_info
from providers.request import ChatRequest, messages_for
from providers.tokens import estimate_prompt_tokens
from tui.session.replay import SuiteItem

now_ns = time.perf_counter_ns
Mode = Literal["concurrency", "rate"]
OK_STATUSES = ("complete", "length")
# DESIGN §4: stamps are honest within 10 ms (p99); past it, the client is the bottleneck.
CLIENT_LIMIT_MS = 10.0
CANARY_ENDPOINT = "tokenrace-canary"
CANARY_PACE_MS = 20.0
LAG_TICK_S = 0.01
# An output-length guess for the cost estimate when a suite line sets no max_tokens.
ASSUMED_OUTPUT_TOKENS = 1000
# Streams one engine process sustains at 50 tok/s with stamping delay p99 <= 10 ms: 10-20 by
# bench/load_capacity.py on a saturated 2-core machine (bench/README.md); ``--procs auto``.
STREAMS_PER_PROCESS = 20


# --- parsing the command line's figures ------------------------------------------------------


class LoadError(ValueError):
    """A sweep that cannot run as asked; the message says why."""


_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|min|h)?\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``500ms``, ``2m``, ``1h`` or a bare number of seconds."""
    m = _DURATION_RE.match(text)
    if m is None:
        raise LoadError(f"not a duration: {text!r} (try 30s, 500ms, 2m)")
    unit = m.group(2) or "s"
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}[unit]
    value = float(m.group(1)) * scale
    if value <= 0:
        raise LoadError(f"a duration must be positive: {text!r}")
    return value


def parse_levels(text: str, *, whole: bool) -> list[float]:
    """``1,2,4`` as a list of positive numbers (whole numbers for concurrency)."""
    out: list[float] = []
    for raw in text.split(","):
        part = raw.strip()
        try:
            value = float(part)
        except ValueError:
            raise LoadError(f"not a number: {part!r} in {text!r}") from None
        if not math.isfinite(value) or value <= 0 or (whole and value != int(value)):
            kind = "a positive whole number" if whole else "a positive number"
            raise LoadError(f"each step must be {kind}: {part!r}")
        out.append(value)
    if not out:
        raise LoadError("give at least one step")
    return out


@dataclass(frozen=True, slots=True)
class Slo:
    """A latency target: a request is good when its TTFT and its p95 ITL are within it."""

    ttft_ms: float | None = None
    itl_ms: float | None = None

    def good(self, s: Sample) -> bool:
        """Whether ``s`` finished and met the target (a reply of one event has no ITL)."""
        if s.status not in OK_STATUSES:
            return False
        if self.ttft_ms is not None and (s.ttft_ms is None or s.ttft_ms > self.ttft_ms):
            return False
        return not (
            self.itl_ms is not None and s.itl_p95_ms is not None and s.itl_p95_ms > self.itl_ms
        )

    def text(self) -> str:
        parts = [f"{k}={v:g}ms" for k, v in (("ttft", self.ttft_ms), ("itl", self.itl_ms)) if v]
        return ",".join(parts) or "none"


def parse_slo(text: str) -> Slo:
    """``ttft=500ms,itl=50ms`` (either may be left out)."""
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("ttft", "itl"):
            raise LoadError(f"--slo takes ttft=…,itl=… (e.g. ttft=500ms,itl=50ms), not {part!r}")
        values[key] = parse_duration(raw if raw.strip()[-1:].isalpha() else raw + "ms") * 1000
    return Slo(values.get("ttft"), values.get("itl"))


# --- what shards report ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One request of a step, measured on its shard's node (every figure a difference of two
    stamps from that node's clock)."""

    step: int
    model: str
    shard: str
    prompt_index: int  # the suite line it sent (0-based)
    status: str
    failure: str | None  # the error's kind when it failed (e.g. rate_limit, server)
    ttft_ms: float | None
    ttfo_ms: float | None
    e2e_ms: float | None
    itl_ms: tuple[float, ...]
    itl_p95_ms: float | None
    output_tokens: int
    cost_usd: float | None
    sent_ns: int | None  # t0 on the shard's node clock (comparable on that node only)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["itl_ms"] = [round(g, 3) for g in self.itl_ms]
        return d


@dataclass(frozen=True, slots=True)
class Health:
    """One engine process's own health over one step."""

    shard: str
    node: str
    pid: int
    window_ms: float  # first request sent to last one finished, on this shard's clock
    loop_lag_p99_ms: float | None
    cpu_pct: float | None  # of one core, all threads of the process
    stamp_delay_p50_ms: float | None
    stamp_delay_p99_ms: float | None
    stamp_delay_max_ms: float | None
    canary_events: int
    canary_error: str | None = None

    @property
    def client_limited(self) -> bool:
        """Stamping delay p99 over the honesty bound: this process set the figures."""
        return self.stamp_delay_p99_ms is not None and self.stamp_delay_p99_ms > CLIENT_LIMIT_MS

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["client_limited"] = self.client_limited
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}


@dataclass(frozen=True, slots=True)
class StepPlan:
    """One step of the sweep, for all shards together."""

    index: int
    mode: Mode
    level: float  # streams per model, or requests per second per model
    requests: int | None  # per model; None: run for ``duration_s``
    duration_s: float | None
    seed: int = 0


@dataclass(frozen=True, slots=True)
class ShardStep:
    """One shard's part of a step."""

    index: int
    mode: Mode
    level: float
    requests: int | None
    duration_s: float | None
    seed: int
    shard_no: int
    offset: int  # which suite line this shard starts at, so the suite rotates across shards


def split_step(plan: StepPlan, shards: int) -> list[ShardStep | None]:
    """Each shard's part of ``plan``: streams, rate and requests shared out; None: no part."""
    busy = shards
    if plan.mode == "concurrency":
        busy = min(busy, int(plan.level))
    if plan.requests is not None:
        busy = min(busy, plan.requests)
    out: list[ShardStep | None] = []
    offset = 0
    for i in range(shards):
        if i >= busy:
            out.append(None)
            continue

        def share(total: int, i: int = i) -> int:
            return total // busy + (1 if i < total % busy else 0)

        requests = None if plan.requests is None else share(plan.requests)
        # Poisson streams add up to a Poisson stream of the summed rate.
        level = float(share(int(plan.level))) if plan.mode == "concurrency" else plan.level / busy
        out.append(
            ShardStep(plan.index, plan.mode, level, requests, plan.duration_s, plan.seed, i, offset)
        )
        offset += requests or 0
    return out


# --- one engine process's part: the shard ------------------------------------------------------


def arrivals(rate: float, key: str) -> Iterator[int]:
    """Poisson arrivals at ``rate`` a second: offsets in ns from the step's start, the same for
    the same ``key`` (seed, step, model and shard)."""
    rng = random.Random(key)
    at = 0
    while True:
        at += int(rng.expovariate(rate) * 1e9)
        yield at


def with_canary(config: Config, base_url: str) -> Config:
    """``config`` without retries (a sweep never retries) and with the canary endpoint."""
    ep = Endpoint(name=CANARY_ENDPOINT, base_url=base_url)
    return replace(config, retries=0, endpoints={**config.endpoints, CANARY_ENDPOINT: ep})


def _request(item: SuiteItem, model: str) -> ChatRequest:
    messages = messages_for([{"role": "user", "content": item.prompt}], item.system)
    params = ChatParams(
        temperature=item.temperature,
        max_tokens=item.max_tokens,
        json_mode=item.json_mode,
        json_schema=item.schema,
    )
    return ChatRequest(model=model, messages=messages, params=params)


class Shard:
    """One engine process's part of a sweep: sends its requests, reports samples and health."""

    def __init__(
        self,
        config: Config,
        items: Sequence[SuiteItem],
        models: Sequence[str],
        name: str = "main",
        *,
        canary: bool = True,
    ) -> None:
        self.config = replace(config, retries=0)
        self.items = list(items)
        self.models = list(models)
        self.name = name
        self.use_canary = canary
        self.canary_error: str | None = None
        self._canary_proc: Any = None
        self.engine: Engine | None = None
        self._stop = asyncio.Event()
        self._cancel = False
        self._inflight: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Start the canary server (a child process) and the engine."""
        if self.use_canary:
            from providers.canary import CanaryProcess

            try:
                self._canary_proc = await asyncio.to_thread(CanaryProcess().start)
                self.config = with_canary(self.config, self._canary_proc.base_url)
            except (OSError, RuntimeError) as exc:
                self.canary_error = f"the canary server did not start: {exc}"
        self.engine = Engine(self.config, KeyStore(Keyring(self.config.keyring_timeout_s)))
        # Warm: connections open, keys looked up, and the code of a stream's path imported
        # (lazy imports on the first request stall the loop for ~10 ms: a stamp late for a
        # reason no later request shares).
        await asyncio.gather(*(self.engine.warm(m) for m in dict.fromkeys(self.models)))
        if CANARY_ENDPOINT in self.config.endpoints:
            warm: list[float] = []
            task = asyncio.create_task(self._canary(self.engine, warm, []))
            deadline = time.monotonic() + 5
            # Polls a list the canary task fills (an Event per event would cost more).
            while len(warm) < 3 and not task.done() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def aclose(self) -> None:
        """Stop the engine and the canary."""
        if self.engine is not None:
            await self.engine.aclose()
        if self._canary_proc is not None:
            await asyncio.to_thread(self._canary_proc.stop)
            self._canary_proc = None

    def stop_sending(self, cancel: bool) -> None:
        """Start no more requests; ``cancel`` also drops those in flight (Ctrl+C)."""
        self._cancel = self._cancel or cancel
        self._stop.set()
        if cancel:
            for task in list(self._inflight):
                task.cancel()

    async def run_step(self, step: ShardStep, emit: Callable[[Sample], None]) -> Health:
        """Run this shard's part of a step; ``emit`` gets each request as it finishes."""
        if self.engine is None:
            await self.start()
        assert self.engine is not None
        engine = self.engine
        lags: list[float] = []
        delays: list[float] = []
        canary_error: list[str] = []
        helpers = [asyncio.create_task(self._watch_loop(lags))]
        if CANARY_ENDPOINT in self.config.endpoints:
            helpers.append(asyncio.create_task(self._canary(engine, delays, canary_error)))
            # The step starts once the canary streams: its delays then cover every request.
            deadline_s = time.monotonic() + 2
            while not delays and not helpers[-1].done() and time.monotonic() < deadline_s:  # noqa: ASYNC110
                await asyncio.sleep(0.002)
        t_start = now_ns()
        cpu_start = time.process_time()
        t_end = [t_start]
        deadline = None if step.duration_s is None else t_start + int(step.duration_s * 1e9)

        async def one(model: str, i: int) -> None:
            index = (step.offset + i) % len(self.items)
            request = _request(self.items[index], model)
            t_submit = now_ns()
            events = await collect(engine, request, t_submit_ns=t_submit)
            t_end[0] = max(t_end[0], now_ns())
            emit(self._sample(step.index, model, index, request, events, t_submit))

        def launch(model: str, i: int) -> asyncio.Task[None]:
            task = asyncio.create_task(one(model, i))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            return task

        def more(count: int) -> bool:
            if self._stop.is_set():
                return False
            if step.requests is not None and count >= step.requests:
                return False
            return deadline is None or now_ns() < deadline

        async def closed_loop(model: str, counter: list[int]) -> None:
            while more(counter[0]):
                i = counter[0]
                counter[0] += 1
                with contextlib.suppress(asyncio.CancelledError):
                    await launch(model, i)
                if self._cancel:
                    return

        async def open_loop(model: str, m: int) -> None:
            key = f"{step.seed}:{step.index}:{m}:{step.shard_no}"
            for i, offset in enumerate(arrivals(step.level, key)):
                at = t_start + offset
                if deadline is not None and at >= deadline:
                    return
                if not more(i):
                    return
                wait = (at - now_ns()) / 1e9
                if wait > 0:
                    stopped = asyncio.create_task(self._stop.wait())
                    done, _ = await asyncio.wait({stopped}, timeout=wait)
                    stopped.cancel()
                    if done:
                        return
                launch(model, i)

        try:
            if step.mode == "concurrency":
                counters = {m: [0] for m in self.models}
                await asyncio.gather(
                    *(
                        closed_loop(m, counters[m])
                        for m in self.models
                        for _ in range(int(step.level))
                    )
                )
            else:
                await asyncio.gather(*(open_loop(m, k) for k, m in enumerate(self.models)))
            # Requests still in flight when the step ends are awaited and counted in it.
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        wall_s = max(1e-9, (now_ns() - t_start) / 1e9)
        cpu = (time.process_time() - cpu_start) / wall_s * 100
        return Health(
            shard=self.name,
            node=platform.node(),
            pid=os.getpid(),
            window_ms=(t_end[0] - t_start) / 1e6,
            loop_lag_p99_ms=percentile(lags, 99),
            cpu_pct=cpu,
            stamp_delay_p50_ms=percentile(delays, 50),
            stamp_delay_p99_ms=percentile(delays, 99),
            stamp_delay_max_ms=max(delays) if delays else None,
            canary_events=len(delays),
            canary_error=self.canary_error or (canary_error[0] if canary_error else None),
        )

    def _sample(
        self,
        step: int,
        model: str,
        index: int,
        request: ChatRequest,
        events: list[Any],
        t_submit: int,
    ) -> Sample:
        m = compute_metrics(
            events,
            t_submit_ns=t_submit,
            price=model_info(model, self.config).price,
            stall_s=self.config.stall_s,
            prompt_estimate=estimate_prompt_tokens(request.messages),
        )
        tokens = [e.t_ns for e in events if isinstance(e, TOKEN_EVENTS)]
        gaps = tuple((b - a) / 1e6 for a, b in itertools.pairwise(tokens))
        failure = None
        if m.status not in OK_STATUSES:
            err = next((e for e in events if isinstance(e, StreamError)), None)
            failure = m.status if err is None or m.status == "interrupted" else err.kind
        sent = next((e.t_ns for e in events if isinstance(e, RequestSent)), None)
        return Sample(
            step=step,
            model=model,
            shard=self.name,
            prompt_index=index,
            status=m.status,
            failure=failure,
            ttft_ms=m.ttft_ms,
            ttfo_ms=m.ttfo_ms,
            e2e_ms=m.e2e_ms,
            itl_ms=gaps,
            itl_p95_ms=m.itl_p95_ms,
            output_tokens=m.output_tokens or 0,
            cost_usd=m.cost_usd,
            sent_ns=sent,
        )

    @staticmethod
    async def _watch_loop(lags: list[float]) -> None:
        """How late this event loop wakes a sleeper: the loop's lag, in ms."""
        while True:
            t = now_ns()
            await asyncio.sleep(LAG_TICK_S)
            lags.append(max(0.0, (now_ns() - t) / 1e6 - LAG_TICK_S * 1000))

    @staticmethod
    async def _canary(engine: Engine, delays: list[float], error: list[str]) -> None:
        """Read the canary through the same engine: each stamp minus the canary's send time."""
        from providers.canary import model_for

        request = ChatRequest(
            model=f"{CANARY_ENDPOINT}/{model_for(CANARY_PACE_MS)}",
            messages=({"role": "user", "content": "canary"},),
        )
        sent: list[int] = []
        async for ev in engine.stream(request):
            if isinstance(ev, TextDelta):
                with contextlib.suppress(ValueError, IndexError):
                    words = ev.text.split()
                    if words[0] == "void":  # the canary was descheduled as it sent that one
                        k = sent.index(int(words[1]))
                        del sent[k], delays[k]
                        continue
                    sent.append(int(words[0]))
                    delays.append((ev.t_ns - sent[-1]) / 1e6)
            elif isinstance(ev, StreamError):
                error.append(ev.message)
                return


# --- the shards a sweep runs on ----------------------------------------------------------------


class ShardPool(Protocol):
    """Engine processes a sweep runs on: this one, child processes, or Ray actors."""

    size: int

    async def start(self) -> None: ...

    async def run_step(
        self, parts: Sequence[ShardStep | None], emit: Callable[[Sample], None]
    ) -> list[Health]: ...

    def stop_sending(self, cancel: bool) -> None: ...

    async def aclose(self) -> None: ...


class InProcessPool:
    """One shard in this process (the default)."""

    size = 1

    def __init__(
        self, config: Config, items: Sequence[SuiteItem], models: Sequence[str], canary: bool = True
    ) -> None:
        self.shard = Shard(config, items, models, "main", canary=canary)

    async def start(self) -> None:
        await self.shard.start()

    async def run_step(
        self, parts: Sequence[ShardStep | None], emit: Callable[[Sample], None]
    ) -> list[Health]:
        part = parts[0]
        return [] if part is None else [await self.shard.run_step(part, emit)]

    def stop_sending(self, cancel: bool) -> None:
        self.shard.stop_sending(cancel)

    async def aclose(self) -> None:
        await self.shard.aclose()


def auto_procs(plans: Sequence[StepPlan], models: int) -> int:
    """``--procs auto``: enough processes for the busiest step, at most one per core."""
    peak = max(
        (p.level if p.mode == "concurrency" else p.level * 2) * models for p in plans
    )  # a rate step's streams in flight: about rate × reply time, guessed as 2 s
    return max(1, min(os.cpu_count() or 1, math.ceil(peak / STREAMS_PER_PROCESS)))


# --- the sweep -------------------------------------------------------------------------------


@dataclass
class StepResult:
    """One step: every request of every shard, and each shard's health."""

    plan: StepPlan
    samples: list[Sample] = field(default_factory=list)
    health: list[Health] = field(default_factory=list)
    stopped: str | None = None  # "interrupted" / "max_cost" when the step was cut short

    @property
    def client_limited(self) -> bool:
        return any(h.client_limited for h in self.health)

    @property
    def window_s(self) -> float:
        """The step's length: the longest shard window (each measured on its own clock)."""
        return max((h.window_ms for h in self.health), default=0.0) / 1000


@dataclass
class StepRow:
    """The figures of one step for one model (the table's row)."""

    step: int
    mode: Mode
    level: float
    model: str
    requests: int
    failures: dict[str, int]
    ttft: tuple[float | None, float | None, float | None]
    ttfo: tuple[float | None, float | None, float | None]
    itl: tuple[float | None, float | None, float | None]
    e2e: tuple[float | None, float | None, float | None]
    output_tps: float | None
    good: int
    goodput_rps: float | None
    cost_usd: float | None
    cost_complete: bool
    client_limited: bool
    stamp_delay_p99_ms: float | None
    loop_lag_p99_ms: float | None
    cpu_pct: list[float | None]
    shards: int

    def to_json(self) -> dict[str, Any]:
        def trio(name: str, v: tuple[float | None, ...]) -> dict[str, float | None]:
            return {f"{name}_p{q}_ms": _r(x) for q, x in zip((50, 90, 99), v, strict=True)}

        return {
            "step": self.step,
            "mode": self.mode,
            "level": self.level,
            "model": self.model,
            "requests": self.requests,
            "failed": sum(self.failures.values()),
            "failures": self.failures,
            **trio("ttft", self.ttft),
            **trio("ttfo", self.ttfo),
            **trio("itl", self.itl),
            **trio("e2e", self.e2e),
            "output_tps": _r(self.output_tps),
            "good": self.good,
            "goodput_rps": _r(self.goodput_rps),
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 8),
            "cost_complete": self.cost_complete,
            "client_limited": self.client_limited,
            "stamp_delay_p99_ms": _r(self.stamp_delay_p99_ms),
            "loop_lag_p99_ms": _r(self.loop_lag_p99_ms),
            "cpu_pct": [_r(c) for c in self.cpu_pct],
            "shards": self.shards,
        }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _trio(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    return (percentile(values, 50), percentile(values, 90), percentile(values, 99))


def rows_of(result: StepResult, models: Sequence[str], slo: Slo) -> list[StepRow]:
    """One row per model; percentiles over the merged requests of every shard."""
    out: list[StepRow] = []
    window = result.window_s
    delays = [h.stamp_delay_p99_ms for h in result.health if h.stamp_delay_p99_ms is not None]
    lags = [h.loop_lag_p99_ms for h in result.health if h.loop_lag_p99_ms is not None]
    for model in models:
        mine = [s for s in result.samples if s.model == model]
        ok = [s for s in mine if s.status in OK_STATUSES]
        failures: dict[str, int] = {}
        for s in mine:
            if s.status not in OK_STATUSES:
                key = s.failure or s.status
                failures[key] = failures.get(key, 0) + 1
        costs = [s.cost_usd for s in mine]
        known = [c for c in costs if c is not None]
        good = sum(1 for s in mine if slo.good(s))
        out.append(
            StepRow(
                step=result.plan.index,
                mode=result.plan.mode,
                level=result.plan.level,
                model=model,
                requests=len(mine),
                failures=failures,
                ttft=_trio([s.ttft_ms for s in ok if s.ttft_ms is not None]),
                ttfo=_trio([s.ttfo_ms for s in ok if s.ttfo_ms is not None]),
                itl=_trio([g for s in ok for g in s.itl_ms]),
                e2e=_trio([s.e2e_ms for s in ok if s.e2e_ms is not None]),
                output_tps=sum(s.output_tokens for s in ok) / window if window else None,
                good=good,
                goodput_rps=good / window if window else None,
                cost_usd=sum(known) if known else None,
                cost_complete=len(known) == len(costs),
                client_limited=result.client_limited,
                # The worst shard speaks for the step: one late process skews the merged figures.
                stamp_delay_p99_ms=max(delays) if delays else None,
                loop_lag_p99_ms=max(lags) if lags else None,
                cpu_pct=[h.cpu_pct for h in result.health],
                shards=len(result.health),
            )
        )
    return out


@dataclass
class CostEstimate:
    """What the sweep may cost, before the first request."""

    usd: float | None  # None: some model has no price, or the request count is not known
    requests: int | None
    note: str


def estimate_cost(
    items: Sequence[SuiteItem], models: Sequence[str], plans: Sequence[StepPlan], config: Config
) -> CostEstimate:
    """Requests × (the prompt's tokens × input price + max_tokens (or a guess) × output price)."""
    counts: list[float] = []
    for p in plans:
        if p.requests is not None:
            n = float(p.requests)
            if p.mode == "rate" and p.duration_s is not None:
                n = min(n, p.level * p.duration_s)
            counts.append(n)
        elif p.mode == "rate" and p.duration_s is not None:
            counts.append(p.level * p.duration_s)
        else:
            counts = []
            break
    per_model = math.ceil(sum(counts)) if counts else None
    total = 0.0
    unpriced = []
    for model in models:
        price = model_info(model, config).price
        if price is None:
            unpriced.append(model)
            continue
        each = [
            price.cost(
                estimate_prompt_tokens(_request(it, model).messages),
                it.max_tokens or ASSUMED_OUTPUT_TOKENS,
                0,
                0,
            )
            for it in items
        ]
        total += sum(each) / len(each) * (per_model or 0)
    requests = None if per_model is None else per_model * len(models)
    if per_model is None:
        note = "the request count is not known in advance (--duration with --concurrency)"
        return CostEstimate(None, None, note)
    out = f"each reply assumed max_tokens long, else {ASSUMED_OUTPUT_TOKENS} tokens"
    if unpriced:
        names = ", ".join(inert_label(m) for m in unpriced)
        return CostEstimate(None, requests, f"no price known for {names}")
    return CostEstimate(total, requests, out)


async def run_sweep(
    pool: ShardPool,
    plans: Sequence[StepPlan],
    *,
    on_sample: Callable[[Sample], None] | None = None,
    on_step: Callable[[StepResult], None] | None = None,
    max_cost_usd: float | None = None,
    stop: asyncio.Event | None = None,
) -> list[StepResult]:
    """Run every step in turn on ``pool``; stops early on ``stop`` or once ``max_cost_usd`` is
    spent (what is in flight then still finishes: it is paid for)."""
    results: list[StepResult] = []
    spent = [0.0]
    for plan in plans:
        if stop is not None and stop.is_set():
            break
        result = StepResult(plan)
        results.append(result)

        def emit(s: Sample, result: StepResult = result) -> None:
            result.samples.append(s)
            spent[0] += s.cost_usd or 0.0
            if on_sample is not None:
                on_sample(s)
            if max_cost_usd is not None and spent[0] >= max_cost_usd and result.stopped is None:
                result.stopped = "max_cost"
                pool.stop_sending(cancel=False)

        step = asyncio.create_task(pool.run_step(split_step(plan, pool.size), emit))
        waiter = asyncio.create_task(stop.wait()) if stop is not None else None
        try:
            done, _ = await asyncio.wait(
                {step, *([waiter] if waiter else [])}, return_when=asyncio.FIRST_COMPLETED
            )
            if step not in done:
                result.stopped = "interrupted"
                pool.stop_sending(cancel=True)
            result.health = await step
        finally:
            if waiter is not None:
                waiter.cancel()
        if on_step is not None:
            on_step(result)
        if result.stopped is not None:
            break
    return results


# --- output ----------------------------------------------------------------------------------


def _ms(v: float | None) -> str:
    return "—" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")


def level_text(mode: Mode, level: float) -> str:
    return f"{level:g}" if mode == "concurrency" else f"{level:g}/s"


TABLE_HEAD = (
    f"{'step':>6} {'model':<26} {'req':>5} {'fail':>4} {'TTFT p50':>8} {'p90':>6} {'p99':>6} "
    f"{'ITL p50':>7} {'p99':>6} {'E2E p50':>7} {'tok/s':>7} {'good':>5} {'cost':>9} "
    f"{'stamp p99':>9} {'client':>7}"
)


def table_line(row: StepRow) -> str:
    """One row of the live table (ms figures)."""
    cost = (
        "—" if row.cost_usd is None else ("" if row.cost_complete else "≥") + f"${row.cost_usd:.4f}"
    )
    flag = "LIMITED" if row.client_limited else "ok"
    if row.stamp_delay_p99_ms is None:
        flag = "?"
    return (
        f"{level_text(row.mode, row.level):>6} {inert_label(row.model)[:26]:<26} {row.requests:>5} "
        f"{sum(row.failures.values()):>4} {_ms(row.ttft[0]):>8} {_ms(row.ttft[1]):>6} "
        f"{_ms(row.ttft[2]):>6} {_ms(row.itl[0]):>7} {_ms(row.itl[2]):>6} {_ms(row.e2e[0]):>7} "
        f"{_ms(row.output_tps):>7} {row.good:>5} {cost:>9} {_ms(row.stamp_delay_p99_ms):>9} "
        f"{flag:>7}"
    )


def table(rows: Sequence[StepRow]) -> str:
    """Every step and model; times in ms, client = LIMITED when the client set the figures."""
    return "\n".join([TABLE_HEAD, "-" * len(TABLE_HEAD), *(table_line(r) for r in rows)])


CSV_FIELDS = (
    "step", "mode", "level", "model", "requests", "failed", "ttft_p50_ms", "ttft_p90_ms",
    "ttft_p99_ms", "ttfo_p50_ms", "ttfo_p90_ms", "ttfo_p99_ms", "itl_p50_ms", "itl_p90_ms",
    "itl_p99_ms", "e2e_p50_ms", "e2e_p90_ms", "e2e_p99_ms", "output_tps", "good", "goodput_rps",
    "cost_usd", "client_limited", "stamp_delay_p99_ms", "loop_lag_p99_ms",
)  # fmt: skip


def to_csv(rows: Sequence[StepRow]) -> str:
    """One line per step and model."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        d = r.to_json()
        writer.writerow(
            {k: "" if d.get(k) is None else str(d[k]).lower() if isinstance(d[k], bool) else d[k]
             for k in CSV_FIELDS}
        )  # fmt: skip
    return buf.getvalue()


def to_json(
    results: Sequence[StepResult], models: Sequence[str], slo: Slo, meta: dict[str, Any]
) -> dict[str, Any]:
    """The ``--json`` document: per step its rows, shards' health and every request."""
    return {
        **meta,
        "slo": {"ttft_ms": slo.ttft_ms, "itl_ms": slo.itl_ms},
        "client_limit_ms": CLIENT_LIMIT_MS,
        "steps": [
            {
                "step": r.plan.index,
                "mode": r.plan.mode,
                "level": r.plan.level,
                "client_limited": r.client_limited,
                "stopped": r.stopped,
                "window_ms": round(r.window_s * 1000, 3),
                "rows": [row.to_json() for row in rows_of(r, models, slo)],
                "health": [h.to_json() for h in r.health],
                "requests": [s.to_json() for s in r.samples],
            }
            for r in results
        ],
    }

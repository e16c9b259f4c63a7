"""Replay suites: every prompt of a JSONL file on every model, N times, with a table per model.

A suite line is ``{"prompt": "...", "system": "...", "json_mode": true, "expect": "json"}``;
only ``prompt`` is required, and ``expect: "json"`` means the reply must parse as JSON. A line
may carry a JSON Schema, inline (``"schema": {...}``) or as ``"schema_file"`` (relative to the
suite file): it is sent in each protocol's structured-output form, and each reply is checked
against it (``schema_valid``); a schema implies ``expect: "json"``. ``"images": ["a.png"]``
(relative to the suite file) attaches images to the prompt. The same
runner serves ``tokenrace replay`` (engine in-process) and the TUI (engine process): it takes a
function that streams one request and returns its events.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from providers.attachments import Image, ImageError, load_image
from providers.capabilities import ChatParams
from providers.config import Config, Role
from providers.events import Event, fold
from providers.inert import inert, inert_label
from providers.metrics import JSON_KEYS, RunMetrics, compute_metrics
from providers.prices import model_info
from providers.request import ChatRequest, messages_for
from providers.tokens import estimate_prompt_tokens
from providers.tools import ToolDef, valid_calls
from tui.session.model_summary import ModelSummary, cost_text

now_ns = time.perf_counter_ns
_ALLOWED_KEYS = {
    "prompt", "system", "json_mode", "expect", "temperature", "max_tokens", "name", "schema",
    "schema_file", "images", "tools", "tools_file", "role",
}  # fmt: skip

T = TypeVar("T")


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class SuiteItem:
    """One prompt of a suite."""

    prompt: str
    system: str | None = None
    json_mode: bool = False
    expect: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    schema: dict[str, Any] | None = None
    images: tuple[Image, ...] = ()  # from ``"images": ["path", …]``, relative to the suite
    tools: tuple[ToolDef, ...] = ()  # tools the model may call; its calls are checked


def _item_images(obj: dict[str, Any], path: Path, no: int) -> tuple[Image, ...]:
    """The line's images, read (and recognised) when the suite loads, not mid-run."""
    names = obj.get("images", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise SuiteError(f'{path}:{no}: "images" must be a list of file names')
    try:
        return tuple(load_image(path.parent / Path(n).expanduser()) for n in names)
    except ImageError as exc:
        raise SuiteError(f"{path}:{no}: {exc}") from None


def _inline_or_file(
    obj: dict[str, Any],
    key: str,
    path: Path,
    no: int,
    parse: Callable[[Any, str], T],
    load: Callable[[Path], T],
    error: type[Exception],
) -> T | None:
    """The line's ``key``, inline or from ``key_file`` (relative to the suite): parsed with
    ``parse``, read with ``load``; their ``error`` becomes a SuiteError naming the line."""
    file_key = f"{key}_file"
    if key in obj and file_key in obj:
        raise SuiteError(f'{path}:{no}: give "{key}" or "{file_key}", not both')
    try:
        if key in obj:
            return parse(obj[key], f"{path}:{no}")
        if file_key in obj:
            name = obj[file_key]
            if not isinstance(name, str) or not name:
                raise SuiteError(f'{path}:{no}: "{file_key}" must be a file name')
            return load(path.parent / name)
    except error as exc:
        raise SuiteError(str(exc) if file_key not in obj else f"{path}:{no}: {exc}") from None
    return None


def _item_tools(obj: dict[str, Any], path: Path, no: int) -> tuple[ToolDef, ...]:
    """The line's tool definitions, inline or from ``tools_file`` (relative to the suite)."""
    from providers.tools import ToolsError, load_tools, parse_tools

    return _inline_or_file(obj, "tools", path, no, parse_tools, load_tools, ToolsError) or ()


def _item_schema(obj: dict[str, Any], path: Path, no: int) -> dict[str, Any] | None:
    """The line's JSON Schema, inline or from ``schema_file`` (relative to the suite)."""
    from tui.session.structured import SchemaError, check_schema, load_schema

    return _inline_or_file(obj, "schema", path, no, check_schema, load_schema, SchemaError)


def _item_role(obj: dict[str, Any], roles: Mapping[str, Role], path: Path, no: int) -> Role | None:
    """The ``[roles.NAME]`` the line names (its own keys win over the role's)."""
    name = obj.get("role")
    if name is None:
        return None
    if not isinstance(name, str):
        raise SuiteError(f'{path}:{no}: "role" must be a role name')
    from tui.session.roles import RoleError, find_role

    try:
        return find_role(roles, name)
    except RoleError as exc:
        raise SuiteError(f"{path}:{no}: {exc}") from None


def load_suite(path: Path, roles: Mapping[str, Role] | None = None) -> list[SuiteItem]:
    """Read a JSONL suite; blank lines and lines starting with # are skipped. A line's
    ``"role"`` is looked up in ``roles`` (config's) and filled in under the line's own keys."""
    from tui.session.structured import read_utf8

    text = read_utf8(path, SuiteError)
    items: list[SuiteItem] = []
    for no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"{path}:{no}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise SuiteError(f"{path}:{no}: each line must be a JSON object")
        unknown = set(obj) - _ALLOWED_KEYS
        if unknown:
            raise SuiteError(f"{path}:{no}: unknown key(s) {', '.join(sorted(unknown))}")
        prompt = obj.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise SuiteError(f'{path}:{no}: "prompt" must be a non-empty string')
        expect = obj.get("expect")
        if expect not in (None, "json"):
            raise SuiteError(f'{path}:{no}: "expect" can only be "json"')
        system = obj.get("system")
        if system is not None and not isinstance(system, str):
            raise SuiteError(f'{path}:{no}: "system" must be a string')
        json_mode = obj.get("json_mode", False)
        if not isinstance(json_mode, bool):
            raise SuiteError(f'{path}:{no}: "json_mode" must be true or false')
        temperature = obj.get("temperature")
        if temperature is not None and not isinstance(temperature, (int, float)):
            raise SuiteError(f'{path}:{no}: "temperature" must be a number')
        max_tokens = obj.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise SuiteError(f'{path}:{no}: "max_tokens" must be a positive integer')
        schema = _item_schema(obj, path, no)
        role = _item_role(obj, roles or {}, path, no)
        if role is not None:
            from tui.session.roles import RoleError, apply_role

            try:
                applied = apply_role(role, None, ChatParams())
            except RoleError as exc:
                raise SuiteError(f"{path}:{no}: {exc}") from None
            system = applied.system if system is None else system
            temperature = applied.params.temperature if temperature is None else temperature
            max_tokens = applied.params.max_tokens if max_tokens is None else max_tokens
            json_mode = json_mode or applied.params.json_mode
            schema = applied.params.json_schema if schema is None else schema
        items.append(
            SuiteItem(
                prompt=prompt,
                system=system,
                json_mode=json_mode,
                expect=expect,
                temperature=float(temperature) if temperature is not None else None,
                max_tokens=max_tokens,
                schema=schema,
                images=_item_images(obj, path, no),
                tools=_item_tools(obj, path, no),
            )
        )
    if not items:
        raise SuiteError(f"{path}: the suite has no prompts")
    return items


def json_valid(text: str) -> bool:
    """Whether ``text`` (surrounding whitespace aside) parses as JSON."""
    try:
        json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return False
    return True


@dataclass
class RunResult:
    """One prompt on one model, one time."""

    prompt_index: int
    prompt: str
    model: str
    run: int
    status: str
    text: str
    json_valid: bool | None
    metrics: RunMetrics
    error: str | None = None
    schema_valid: bool | None = None  # None: the prompt had no schema
    schema_error: str | None = None  # where and why the first check failed
    tool_calls: int | None = None  # None: the prompt offered no tools
    tool_calls_valid: int | None = None  # calls whose arguments parse and fit the tool's schema

    def to_json(self) -> dict[str, Any]:
        """Every field, the metrics as their own JSON object (``--json``'s run records)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "metrics"}
        return {**out, "metrics": self.metrics.to_json()}


@dataclass
class Tally:
    """A check counted over runs: how many were checked, how many passed."""

    checked: int = 0
    passed: int = 0

    def add(self, checked: int, passed: int) -> None:
        self.checked += checked
        self.passed += passed

    def __str__(self) -> str:
        """``passed/checked``, or ``—`` when nothing was checked (the table's cell)."""
        return f"{self.passed}/{self.checked}" if self.checked else "—"


@dataclass
class ModelStats(ModelSummary):
    """The per-model row of the suite table: the summary plus its JSON, schema and tool-call
    checks (JSON and schema per reply, tool calls per call)."""

    json: Tally = field(default_factory=Tally)
    schema: Tally = field(default_factory=Tally)
    tools: Tally = field(default_factory=Tally)

    def add_result(self, r: RunResult) -> None:
        """Count one run of the suite (a cancelled one stays out, with its checks)."""
        if not self.add(r.status, r.metrics):
            return
        if r.json_valid is not None:
            self.json.add(1, int(r.json_valid))
        if r.schema_valid is not None:
            self.schema.add(1, int(r.schema_valid))
        self.tools.add(r.tool_calls or 0, r.tool_calls_valid or 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "replies": self.replies,
            "failures": self.failures,
            "json_expected": self.json.checked,
            "json_valid": self.json.passed,
            "schema_expected": self.schema.checked,
            "schema_valid": self.schema.passed,
            "tool_calls": self.tools.checked,
            "tool_calls_valid": self.tools.passed,
            "ttft_p50_ms": _r(self.ttft_p50_ms),
            "ttft_p95_ms": _r(self.ttft_p95_ms),
            "decode_p50_tps": _r(self.decode_p50_tps),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 8),
            "cost_complete": self.cost_known,
        }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def summarize(results: Sequence[RunResult], models: Sequence[str]) -> list[ModelStats]:
    """One ``ModelStats`` per model, in the order the models were given."""
    stats = {m: ModelStats(m) for m in models}
    for r in results:
        stats.setdefault(r.model, ModelStats(r.model)).add_result(r)
    return list(stats.values())


Streamer = Callable[[ChatRequest, int], Awaitable[list[Event]]]


async def run_suite(
    items: Sequence[SuiteItem],
    models: Sequence[str],
    stream: Streamer,
    config: Config,
    *,
    runs: int = 1,
    concurrency: int = 1,
    on_result: Callable[[RunResult, int, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> list[RunResult]:
    """Run every item on every model ``runs`` times, at most ``concurrency`` at once.

    The plan is walked lazily (``--runs`` may be astronomically large) by ``concurrency``
    workers. When ``stop`` is set, no further request starts and those in flight are dropped:
    the results are the runs that finished, in plan order.
    """
    total = runs * len(items) * len(models)
    plan = enumerate(
        (run, i, item, model)
        for run in range(1, runs + 1)
        for i, item in enumerate(items)
        for model in models
    )
    finished: list[tuple[int, RunResult]] = []

    async def one(slot: int, run: int, index: int, item: SuiteItem, model: str) -> None:
        user = {"role": "user", "content": item.prompt, "images": item.images}
        messages = messages_for([user], item.system)
        params = ChatParams(
            temperature=item.temperature,
            max_tokens=item.max_tokens,
            json_mode=item.json_mode,
            json_schema=item.schema,
            tools=item.tools,
        )
        request = ChatRequest(model=model, messages=messages, params=params)
        t_submit = now_ns()
        events = await stream(request, t_submit)
        info = model_info(model, config)
        m = compute_metrics(
            events,
            t_submit_ns=t_submit,
            price=info.price,
            stall_s=config.stall_s,
            prompt_estimate=estimate_prompt_tokens(messages),
        )
        t = fold(events)
        valid = json_valid(t.text) if item.expect == "json" or item.schema is not None else None
        check = None
        if item.schema is not None:
            from tui.session.structured import validate_reply

            check = validate_reply(t.text, item.schema)
        result = RunResult(
            index,
            item.prompt,
            model,
            run,
            m.status,
            t.text,
            valid,
            m,
            t.error.message if t.error else None,
            schema_valid=None if check is None else check.valid,
            schema_error=None if check is None or check.valid else check.describe(),
            tool_calls=len(t.tool_calls) if item.tools else None,
            tool_calls_valid=valid_calls(item.tools, t.tool_calls) if item.tools else None,
        )
        finished.append((slot, result))
        if on_result is not None:
            on_result(result, len(finished), total)

    async def worker() -> None:
        # One shared iterator: each worker takes the next planned run when it is free.
        for slot, (run, index, item, model) in plan:
            if stop is not None and stop.is_set():
                return
            await one(slot, run, index, item, model)

    workers = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, total)))]
    stopper = asyncio.create_task(stop.wait()) if stop is not None else None
    try:
        pending: set[asyncio.Task[Any]] = set(workers)
        while pending:
            waiting = pending | ({stopper} if stopper is not None else set())
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            pending -= done
            if stopper is not None and stopper in done:
                break
        for task in workers:
            exc = task.exception() if task.done() and not task.cancelled() else None
            if exc is not None:
                raise exc
    finally:
        for started in [*workers, *([stopper] if stopper is not None else [])]:
            started.cancel()
        await asyncio.gather(*workers, *([stopper] if stopper else []), return_exceptions=True)
    finished.sort(key=lambda pair: pair[0])
    return [r for _, r in finished]


CSV_FIELDS = (
    "prompt_index",
    "prompt",
    "model",
    "run",
    "status",
    "json_valid",
    "schema_valid",
    "tool_calls",
    "tool_calls_valid",
    "error",
    *JSON_KEYS,
    "text",
)


def csv_cell(text: str) -> str:
    """A server's or user's string made safe for a CSV file: no control sequence reaches a
    terminal that prints it, and a spreadsheet that opens it evaluates no formula (OWASP's
    rule: a cell starting with = + - @ tab or CR is prefixed with an apostrophe)."""
    text = inert(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(results: Sequence[RunResult]) -> str:
    """The runs, one row each, metrics flattened; text cells made inert (``csv_cell``)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for r in results:
        row: dict[str, Any] = {
            "prompt_index": r.prompt_index,
            "prompt": csv_cell(r.prompt),
            "model": csv_cell(r.model),
            "run": r.run,
            "status": r.status,
            "json_valid": "" if r.json_valid is None else str(r.json_valid).lower(),
            "schema_valid": "" if r.schema_valid is None else str(r.schema_valid).lower(),
            "tool_calls": "" if r.tool_calls is None else r.tool_calls,
            "tool_calls_valid": "" if r.tool_calls_valid is None else r.tool_calls_valid,
            "error": csv_cell(r.error or ""),
            "text": csv_cell(r.text),
        }
        metrics = r.metrics.to_json()
        for k in JSON_KEYS:
            v = metrics.get(k)
            row[k] = "" if v is None else (str(v).lower() if isinstance(v, bool) else v)
        writer.writerow(row)
    return buf.getvalue()


def table(stats: Sequence[ModelStats]) -> str:
    """The per-model table printed by ``tokenrace replay``."""
    from tui import format as fmt

    head = (
        f"{'model':<38} {'replies':>7} {'fail':>4} {'JSON ok':>8} {'schema ok':>9} "
        f"{'tools ok':>8} {'TTFT p50':>9} "
        f"{'TTFT p95':>9} {'tok/s p50':>9} {'in tok':>9} {'out tok':>9} {'cost':>11}"
    )
    lines = [head, "-" * len(head)]
    for s in stats:
        d = s.to_json()
        jv, sv, tv = str(s.json), str(s.schema), str(s.tools)
        rate = f"{d['decode_p50_tps']:.1f}" if d["decode_p50_tps"] is not None else "—"
        cost = cost_text(s.cost_usd, s.cost_known)
        lines.append(
            f"{inert_label(s.model)[:38]:<38} {s.replies:>7} {s.failures:>4} {jv:>8} {sv:>9} "
            f"{tv:>8} "
            f"{fmt.ms(d['ttft_p50_ms']):>9} {fmt.ms(d['ttft_p95_ms']):>9} "
            f"{rate:>9} {s.input_tokens:>9,} {s.output_tokens:>9,} {cost:>11}"
        )
    return "\n".join(lines)

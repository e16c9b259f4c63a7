"""``tokenrace ask``: one prompt to one or more models, streamed to stdout, metrics to stderr."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from providers.attachments import Image, ImageError, load_image
from providers.capabilities import ChatParams
from providers.config import Config, load_config
from providers.engine import ChatRequest, Engine, messages_for, now_ns
from providers.events import (
    Cancelled,
    Event,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolCall,
    fold,
)
from providers.inert import inert, inert_label, json_inert
from providers.keys import Keyring, KeyStore
from providers.local import LocalPool, with_local
from providers.metrics import OK_STATUSES, compute_metrics
from providers.model_ref import ModelRef, endpoint_of
from providers.prices import model_info
from providers.start_gate import StartGate
from providers.tokens import estimate_prompt_tokens
from providers.tools import ToolDef, check_call
from tui.format import summary_line

if TYPE_CHECKING:
    from tui.session.structured import SchemaCheck

SCHEMA_VERSION = 1
STOP_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGTERM", "SIGHUP")) if s)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenrace ask",
        description="Send one prompt and stream the reply. With several -m, the models run "
        "concurrently on the same prompt, their requests leaving together.",
    )
    p.add_argument(
        "-m",
        "--model",
        action="append",
        required=True,
        metavar="ENDPOINT/MODEL",
        help="model to ask (repeat to compare)",
    )
    p.add_argument("--system", metavar="TEXT", help="system prompt")
    p.add_argument("--temperature", type=float, metavar="X")
    p.add_argument("--max-tokens", type=int, metavar="N")
    p.add_argument("--json-mode", action="store_true", help="ask for a JSON object reply")
    p.add_argument(
        "--schema",
        metavar="FILE",
        help="JSON Schema the reply must follow: sent as the protocol's structured-output form, "
        "and the reply is checked against it",
    )
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="FILE",
        help="attach an image (PNG, JPEG, WebP or GIF) to the prompt; repeat for several",
    )
    p.add_argument(
        "--tools",
        metavar="FILE",
        help="JSON list of tool definitions {name, description, parameters} the model may call; "
        "calls are shown, timed and checked against their schema, never executed",
    )
    p.add_argument(
        "-f",
        "--file",
        action="append",
        default=[],
        metavar="FILE",
        help="put this text file into the prompt, fenced with its name, before the prompt "
        "(repeatable)",
    )
    p.add_argument(
        "--role",
        metavar="NAME",
        help="a [roles.NAME] from config: its system prompt and settings (flags given here win)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument(
        "--local", metavar="PATH.gguf", help="serve this GGUF as the local endpoint (local/NAME)"
    )
    p.add_argument("prompt", nargs="?", help="the prompt; '-' or a pipe reads stdin")
    return p


def read_prompt(arg: str | None) -> str | None:
    """The prompt from the argument, or from stdin for '-' or when stdin is piped."""
    if arg is not None and arg != "-":
        return arg
    if arg == "-" or not sys.stdin.isatty():
        return sys.stdin.read()
    return None


@dataclass
class Run:
    """One model's request and what came back."""

    model: str
    events: list[Event] = field(default_factory=list)
    done: bool = False
    shown: int = 0  # characters of text already written to stdout


class Printer:
    """Prints replies in turn: the current one live, the others when their turn comes."""

    def __init__(self, runs: list[Run], json_out: bool, config: Config, prompt_estimate: int):
        self.runs = runs
        self.current = 0
        self.json_out = json_out
        self.multi = len(runs) > 1
        self.config = config
        self.prompt_estimate = prompt_estimate
        self.t_submit = 0
        self.show_reasoning = sys.stderr.isatty()
        self.schema: dict[str, Any] | None = None
        self.tools: tuple[ToolDef, ...] = ()
        self._started = False
        self._ended_newline = True

    def _write(self, text: str) -> None:
        if not text:
            return
        # Server text: nothing in it may act on the terminal (``--json`` keeps it exact).
        text = inert(text)
        sys.stdout.write(text)
        sys.stdout.flush()
        self._ended_newline = text.endswith("\n")

    def _begin(self, run: Run) -> None:
        if self.multi:
            self._write(f"=== {inert_label(run.model)} ===\n")

    def on_event(self, run: Run, ev: Event) -> None:
        if self.json_out or self.runs[self.current] is not run:
            return
        if not self._started:
            self._started = True
            self._begin(run)
        if isinstance(ev, TextDelta) and ev.choice == 0 and not ev.refusal:
            self._write(ev.text)
            run.shown += len(ev.text)
        elif isinstance(ev, ReasoningDelta) and ev.choice == 0 and self.show_reasoning:
            sys.stderr.write(f"\x1b[2m{inert(ev.text)}\x1b[0m")
            sys.stderr.flush()

    def on_done(self, run: Run) -> None:
        if self.json_out:
            return
        while self.current < len(self.runs) and self.runs[self.current].done:
            self._finish(self.runs[self.current])
            self.current += 1
            self._started = False
            if self.current < len(self.runs):
                nxt = self.runs[self.current]
                self._started = True
                self._begin(nxt)
                text = fold(nxt.events).text
                self._write(text[nxt.shown :])
                nxt.shown = len(text)

    def _finish(self, run: Run) -> None:
        if not self._started:
            self._begin(run)
            self._started = True
        t = fold(run.events)
        self._write(t.text[run.shown :])
        run.shown = len(t.text)
        if t.refusal:
            self._write(f"[refusal] {t.refusal}")
        for call in t.tool_calls:
            from providers.tools import call_as_text

            self._write(("" if self._ended_newline else "\n") + call_as_text(call) + "\n")
        if not self._ended_newline:
            self._write("\n")
        m = self.metrics(run)
        for note in t.notices:
            print(f"note: {inert(note)}", file=sys.stderr)
        if t.error is not None:
            print(f"error: {inert(t.error.message)}", file=sys.stderr)
        line = summary_line(inert_label(run.model), m)
        check = self.schema_check(run)
        if check is not None:
            line += f" · {inert(check.describe())}"
        if self.tools:
            valid = _valid(t.tool_calls, self.tools)
            line += f" · tool calls {valid}/{len(t.tool_calls)} valid"
        print(line, file=sys.stderr, flush=True)

    def schema_check(self, run: Run) -> SchemaCheck | None:
        """The reply checked against ``--schema`` (None without one, or with no reply)."""
        if self.schema is None:
            return None
        from tui.session.structured import validate_reply

        t = fold(run.events)
        if t.error is not None and not t.text:
            return None
        return validate_reply(t.text, self.schema)

    def metrics(self, run: Run) -> Any:
        info = model_info(run.model, self.config)
        return compute_metrics(
            run.events,
            t_submit_ns=self.t_submit,
            price=info.price,
            stall_s=self.config.stall_s,
            prompt_estimate=self.prompt_estimate,
        )


def _schema_fields(check: SchemaCheck | None) -> dict[str, Any]:
    """``schema_valid`` and ``schema_error`` of ``ask --json`` (present with ``--schema``)."""
    if check is None:
        return {"schema_valid": None, "schema_error": None}
    return {"schema_valid": check.valid, "schema_error": None if check.valid else check.describe()}


def _call_json(call: ToolCall, tools: tuple[ToolDef, ...]) -> dict[str, Any]:
    """One tool call of ``ask --json``; with ``--tools``, whether it is valid and why not."""
    out: dict[str, Any] = {"id": call.id, "name": call.name, "arguments": call.arguments}
    if tools:
        check = check_call(tools, call)
        out |= {"valid": check.valid, "error": check.message or None}
    return out


def _valid(calls: list[ToolCall], tools: tuple[ToolDef, ...]) -> int:
    return sum(1 for c in calls if check_call(tools, c).valid)


def result_json(run: Run, printer: Printer) -> dict[str, Any]:
    """One element of ``ask --json`` output."""
    t = fold(run.events)
    m = printer.metrics(run)
    endpoint = ModelRef.parse(run.model).endpoint
    return {
        "schema_version": SCHEMA_VERSION,
        "model": run.model,
        "endpoint": endpoint,
        "status": m.status,
        "text": t.text,
        "reasoning": t.reasoning,
        "finish_reason": t.finish_reason,
        "error": t.error.message if t.error is not None else None,
        "error_kind": t.error.kind if t.error is not None else None,
        "refusal": t.refusal or None,
        "tool_calls": [_call_json(c, printer.tools) for c in t.tool_calls],
        **({"tool_calls_valid": _valid(t.tool_calls, printer.tools)} if printer.tools else {}),
        "notices": t.notices,
        **(_schema_fields(printer.schema_check(run)) if printer.schema is not None else {}),
        "metrics": m.to_json(),
    }


async def run_ask(
    config: Config,
    models: Sequence[str],
    prompt: str,
    system: str | None,
    params: ChatParams,
    json_out: bool,
    images: tuple[Image, ...] = (),
) -> int:
    """Run the prompt on every model concurrently and print the results; the exit status."""
    local = LocalPool(on_status=lambda text, _level: print(text, file=sys.stderr, flush=True))
    engine = Engine(config, KeyStore(Keyring(config.keyring_timeout_s)), local=local)
    messages = messages_for([{"role": "user", "content": prompt, "images": images}], system)
    runs = [Run(model=m) for m in models]
    printer = Printer(runs, json_out, config, estimate_prompt_tokens(messages))
    printer.schema = params.json_schema
    printer.tools = params.tools
    gate = StartGate(len(runs)) if len(runs) > 1 else None

    stopped_by: list[int] = []  # SIGTERM / SIGHUP: the replies end interrupted, not cancelled

    async def consume(run: Run) -> None:
        request = ChatRequest(model=run.model, messages=messages, params=params)
        try:
            async for ev in engine.stream(request, gate=gate, t_submit_ns=printer.t_submit):
                run.events.append(ev)
                printer.on_event(run, ev)
        except asyncio.CancelledError:
            if stopped_by:
                name = signal.Signals(stopped_by[0]).name
                message = f"stopped by {name} before the reply finished"
                run.events.append(StreamError(t_ns=now_ns(), kind="interrupted", message=message))
            else:
                run.events.append(Cancelled(t_ns=now_ns()))
        finally:
            run.done = True
            try:
                printer.on_done(run)
            except OSError:
                pass  # the terminal is gone (SIGHUP): the record below still gets written

    loop = asyncio.get_running_loop()
    printer.t_submit = now_ns()
    tasks = [asyncio.create_task(consume(r)) for r in runs]

    def cancel_all(sig: int = signal.SIGINT) -> None:
        if sig != signal.SIGINT and not stopped_by:
            stopped_by.append(sig)
        for task in tasks:
            task.cancel()

    handled = [signal.SIGINT, *STOP_SIGNALS]
    for sig in handled:
        try:
            loop.add_signal_handler(sig, cancel_all, sig)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for sig in handled:
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass
        await engine.aclose()
        await local.aclose()
    if config.metrics.log or config.metrics.prometheus_file:
        from tui.session.metrics_log import append_record, run_record

        for r in runs:
            err = append_record(
                run_record(r.model, endpoint_of(r.model), printer.metrics(r), source="ask"),
                config,
            )
            if err:
                print(f"warning: {err}", file=sys.stderr)
                break
    if json_out:
        doc = [result_json(r, printer) for r in runs]
        # JSON escapes C0 itself; C1, DEL and lone surrogates are escaped too (same values).
        sys.stdout.write(json_inert(json.dumps(doc, indent=2, ensure_ascii=False)) + "\n")
        sys.stdout.flush()
    if stopped_by:
        return 128 + stopped_by[0]
    statuses = [printer.metrics(r).status for r in runs]
    if any(s == "cancelled" for s in statuses):
        return 130
    return 0 if all(s in OK_STATUSES for s in statuses) else 1


def main(argv: list[str]) -> int:
    """``tokenrace ask`` entry point."""
    ns = build_parser().parse_args(argv)
    for m in ns.model:
        try:
            ModelRef.parse(m)
        except ValueError as exc:
            print(f"tokenrace ask: {exc}", file=sys.stderr)
            return 2
    prompt = read_prompt(ns.prompt)
    if ns.file and prompt is None:
        prompt = ""  # the files alone are the prompt
    if prompt is None or not (prompt.strip() or ns.file):
        print(
            "tokenrace ask: no prompt: give it as an argument, or pipe it in (use '-' to read "
            "stdin)",
            file=sys.stderr,
        )
        return 2
    if ns.max_tokens is not None and ns.max_tokens < 1:
        print("tokenrace ask: --max-tokens must be at least 1", file=sys.stderr)
        return 2
    schema = None
    if ns.schema is not None:
        from pathlib import Path

        from tui.session.structured import SchemaError, load_schema

        try:
            schema = load_schema(Path(ns.schema))
        except SchemaError as exc:
            print(f"tokenrace ask: {exc}", file=sys.stderr)
            return 2
    try:
        images = tuple(load_image(path) for path in ns.image)
    except ImageError as exc:
        print(f"tokenrace ask: {exc}", file=sys.stderr)
        return 2
    tools: tuple[ToolDef, ...] = ()
    if ns.tools is not None:
        from pathlib import Path

        from providers.tools import ToolsError, load_tools

        try:
            tools = load_tools(Path(ns.tools))
        except ToolsError as exc:
            print(f"tokenrace ask: {exc}", file=sys.stderr)
            return 2
    if ns.file:
        from tui.session.file_refs import FileRefError, prepend_files

        try:
            prompt = prepend_files(prompt, ns.file).text.rstrip("\n")
        except FileRefError as exc:
            print(f"tokenrace ask: {exc}", file=sys.stderr)
            return 2
    config = with_local(load_config(), ns.local)
    system = ns.system
    params = ChatParams()
    if ns.role is not None:
        from tui.session.roles import RoleError, apply_role, find_role

        try:
            applied = apply_role(find_role(config.roles, ns.role), None, params)
        except RoleError as exc:
            print(f"tokenrace ask: {exc}", file=sys.stderr)
            return 2
        system = ns.system if ns.system is not None else applied.system
        params = applied.params
    params = ChatParams(
        tools=tools,
        temperature=params.temperature if ns.temperature is None else ns.temperature,
        max_tokens=params.max_tokens if ns.max_tokens is None else ns.max_tokens,
        json_mode=params.json_mode or ns.json_mode,
        json_schema=params.json_schema if schema is None else schema,
    )
    return asyncio.run(run_ask(config, ns.model, prompt, system, params, ns.json, images))

"""Mock OpenAI-compatible SSE server that logs its own precise send times (tests, benchmarks)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import heapq
import http
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import unquote

from tests.support.mock_protocols import Framer, NativeProtocol

__all__ = [
    "PORT_LINE_PREFIX",
    "MockServer",
    "MockServerProcess",
    "builtin_scenarios",
    "main",
    "tokenize",
    "validate_scenario",
]

PORT_LINE_PREFIX: Final = "MOCK_SERVER_PORT"

# Coarse waits (timer thread) end this far before a target; the rest is a yield-spin, which
# costs CPU (SPIN_NS / itl of a core) but lands sends within tens of microseconds.
SPIN_NS: Final = 1_000_000

_MAX_HEADER_BYTES: Final = 64 * 1024
_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
_READ_SIZE: Final = 65536
_TOKEN_RE: Final = re.compile(r"\S+\s*|\s+")
# fmt: off
_LOREM: Final = (
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
    "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim",
)
# fmt: on
_MULTIBYTE_TEXT: Final = "héllo wörld 你好 🎉"
_INVALID_UTF8_MARK: Final = "@@MOCK_INVALID_UTF8@@"
_CONTROL_PATHS: Final = frozenset({"/_scenarios", "/_log", "/_reset"})
_REPO_ROOT: Final = Path(__file__).resolve().parents[2]

_SPEC_KEYS: Final = frozenset(
    {
        "text",
        "tokens",
        "n_tokens",
        "reasoning",
        "reasoning_tokens",
        "n_reasoning_tokens",
        "reasoning_field",
        "hidden_reasoning_tokens",
        "ttft_ms",
        "tps",
        "spin",
        "itl_ms",
        "tokens_per_chunk",
        "first_chunk_tokens",
        "role_chunk",
        "role_in_every_delta",
        "usage",
        "usage_null_on_chunks",
        "prompt_tokens",
        "cached_tokens",
        "cached_field",
        "image_tokens",
        "completion_tokens",
        "usage_cost",
        "finish_reason",
        "done",
        "keepalive_ms",
        "keepalive_only",
        "silent_after_headers",
        "silent_after_tokens",
        "status",
        "error_body",
        "response_headers",
        "fail_times",
        "body_instead",
        "content_type",
        "reject_fields",
        "after_tokens",
        "drop_after_tokens",
        "end_after_tokens",
        "error_event",
        "error_json",
        "malformed_json",
        "huge_event_bytes",
        "invalid_utf8",
        "split_multibyte",
        "drip_bytes",
        "drip_ms",
        "line_ending",
        "json_reply_by_prompt",
        "echo",
        "require_key",
        "description",
        "tool_call",
        "tool_chunk_chars",
        "ttft_per_stream_ms",
    }
)

_SCRIPT_KEYS: Final[dict[str, tuple[str, type[int] | type[float] | type[str]]]] = {
    "ttft": ("ttft_ms", float),
    "tps": ("tps", float),
    "itl": ("itl_ms", float),
    "n": ("n_tokens", int),
    "reasoning": ("n_reasoning_tokens", int),
    "usage": ("usage", str),
    "first": ("first_chunk_tokens", int),
    "chunk": ("tokens_per_chunk", int),
}


class _SpecError(ValueError):
    """A scenario spec (or script: model name) is malformed."""


class _ClientGone(Exception):
    """The client closed or reset the connection."""


# ----------------------------------------------------------------------------- scenarios


def _lorem_tokens(n: int) -> list[str]:
    """Return n deterministic lorem tokens ("lorem ", "ipsum ", ...)."""
    return [f"{_LOREM[i % len(_LOREM)]} " for i in range(n)]


def tokenize(text: str) -> list[str]:
    """Split text into mock tokens: each word with its trailing whitespace."""
    return _TOKEN_RE.findall(text)


_CODE_SNIPPETS: Final = (
    (
        "python",
        'def greet(name: str) -> str:\n    """Return a greeting."""\n'
        '    return f"hello {name}"\n\n\nfor i in range(3):\n    print(greet(str(i)))\n',
    ),
    (
        "bash",
        'set -euo pipefail\nfor f in *.txt; do\n  wc -l "$f"\ndone | sort -n | tail -5\n',
    ),
    (
        "json",
        '{\n  "model": "mock-fast",\n  "stream": true,\n  "messages": [\n'
        '    {"role": "user", "content": "hi"}\n  ]\n}\n',
    ),
    (
        "rust",
        "fn main() {\n    let v: Vec<u32> = (1..=10).map(|x| x * x).collect();\n"
        '    println!("{:?}", v);\n}\n',
    ),
)


@functools.lru_cache(maxsize=1)
def _markdown_tokens() -> tuple[str, ...]:
    """Build the deterministic ~3000-token markdown reply of the mock-markdown scenario."""
    parts = ["# Mock markdown reply\n\n", "An introduction paragraph with **bold** and `code`.\n\n"]
    section = 0
    while len(tokenize("".join(parts))) < 3000:
        section += 1
        words = _lorem_tokens(section * 7 % 20 + 40)
        parts.append(f"## Section {section}: {_LOREM[section % len(_LOREM)].title()}\n\n")
        parts.append("".join(words).strip() + ".\n\n")
        parts.extend(f"- item {section}.{i}: *{_LOREM[(section + i) % 20]}*\n" for i in range(4))
        parts.append("\n")
        parts.extend(f"{i}. step {i} of section {section}\n" for i in range(1, 4))
        parts.append("\n")
        if section % 2 == 0:
            parts.append("| name | value | note |\n|------|------:|------|\n")
            parts.extend(
                f"| {_LOREM[(section + i) % 20]} | {section * 10 + i} | row {i} |\n"
                for i in range(4)
            )
            parts.append("\n")
        lang, code = _CODE_SNIPPETS[section % len(_CODE_SNIPPETS)]
        parts.append(f"```{lang}\n{code}```\n\n")
        parts.append("> A quoted remark, then more prose follows.\n\n")
    return tuple(tokenize("".join(parts)))


def builtin_scenarios() -> dict[str, dict[str, Any]]:
    """Return the built-in scenarios (usable as model ids without registering)."""
    return {
        "mock-fast": {"ttft_ms": 20, "tps": 200, "n_tokens": 100},
        "mock-slow": {"ttft_ms": 300, "tps": 50, "n_tokens": 50},
        "mock-reasoning": {
            "ttft_ms": 50,
            "tps": 100,
            "n_reasoning_tokens": 30,
            "n_tokens": 30,
        },
        "mock-echo": {"echo": True, "ttft_ms": 5},
        "mock-markdown": {"tokens": list(_markdown_tokens()), "tps": 200},
        "mock-instant": {"ttft_ms": 0, "itl_ms": 0, "n_tokens": 10},
    }


def _parse_script(name: str) -> dict[str, Any]:
    """Turn a `script:ttft=300,tps=50,n=100` model name into a scenario spec."""
    spec: dict[str, Any] = {}
    for item in name.removeprefix("script:").split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in _SCRIPT_KEYS:
            raise _SpecError(
                f"bad script parameter {item!r} (known: {', '.join(sorted(_SCRIPT_KEYS))})"
            )
        spec_key, conv = _SCRIPT_KEYS[key]
        try:
            spec[spec_key] = conv(raw.strip())
        except ValueError as exc:
            raise _SpecError(f"bad value for script parameter {key!r}: {raw!r}") from exc
    return spec


def _is_num(value: object) -> bool:
    """Whether value is a JSON number (bool excluded)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _opt_int(spec: Mapping[str, Any], key: str, minimum: int = 0) -> int | None:
    """Typed optional int from a spec."""
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _SpecError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _opt_num(spec: Mapping[str, Any], key: str, positive: bool = False) -> float | None:
    """Typed optional non-negative number from a spec."""
    value = spec.get(key)
    if value is None:
        return None
    if not _is_num(value) or value < 0 or (positive and value == 0):
        raise _SpecError(f"{key} must be a {'positive' if positive else '>= 0'} number")
    return float(value)


def _opt_bool(spec: Mapping[str, Any], key: str, default: bool) -> bool:
    """Typed bool from a spec."""
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise _SpecError(f"{key} must be a boolean, got {value!r}")
    return value


def _opt_str(spec: Mapping[str, Any], key: str) -> str | None:
    """Typed optional str from a spec."""
    value = spec.get(key)
    if value is not None and not isinstance(value, str):
        raise _SpecError(f"{key} must be a string, got {value!r}")
    return value


def _choice(spec: Mapping[str, Any], key: str, default: str, choices: Sequence[str]) -> str:
    """Typed enum str from a spec."""
    value = spec.get(key, default)
    if value not in choices:
        raise _SpecError(f"{key} must be one of {list(choices)}, got {value!r}")
    return str(value)


def _opt_str_list(spec: Mapping[str, Any], key: str) -> list[str] | None:
    """Typed optional list[str] from a spec."""
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _SpecError(f"{key} must be a list of strings")
    return list(value)


def _opt_str_map(spec: Mapping[str, Any], key: str) -> dict[str, str] | None:
    """Typed optional dict[str, str] from a spec."""
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _SpecError(f"{key} must be an object mapping strings to strings")
    return {str(k): v for k, v in value.items()}


def _content_text(content: object) -> str:
    """Flatten an OpenAI message content (str or list of parts) to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _last_user_text(body: Mapping[str, Any]) -> str:
    """Text of the last user message in a chat request body."""
    messages = body.get("messages")
    if isinstance(messages, list):
        for msg in reversed(messages):
            if isinstance(msg, dict) and msg.get("role") == "user":
                return _content_text(msg.get("content"))
    return ""


def _default_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Spec default: total message content characters // 4 + 1."""
    messages = body.get("messages")
    total = 0
    if isinstance(messages, list):
        total = sum(len(_content_text(m.get("content"))) for m in messages if isinstance(m, dict))
    return total // 4 + 1


def _tokens_from(spec: Mapping[str, Any], prefix: str, default_n: int) -> list[str]:
    """Resolve `<prefix>tokens` / `<prefix>text|reasoning` / `n_<prefix>tokens` into tokens."""
    text_key = "text" if prefix == "" else "reasoning"
    tokens = _opt_str_list(spec, f"{prefix}tokens")
    text = _opt_str(spec, text_key)
    n = _opt_int(spec, f"n_{prefix}tokens")
    if tokens is not None:
        return tokens
    if text is not None:
        return tokenize(text)
    return _lorem_tokens(default_n if n is None else n)


@dataclass
class _Plan:
    """A scenario spec resolved against one request body, with types checked."""

    reasoning_tokens: list[str]
    text_tokens: list[str]
    reasoning_field: str
    hidden_reasoning: int
    ttft_ns: int
    itl_ns: int
    tokens_per_chunk: int
    first_chunk_tokens: int
    role_chunk: bool
    role_in_every_delta: bool
    usage_mode: str
    usage_null: bool
    prompt_tokens: int
    cached_tokens: int
    cached_field: str
    image_tokens: int | None
    completion_tokens: int | None
    usage_cost: float | None
    finish_reason: str | None
    done: bool
    keepalive_ns: int | None
    keepalive_only: bool
    silent_after_headers: bool
    silent_after_tokens: int | None
    status: int | None
    error_body: Any
    response_headers: dict[str, str]
    fail_times: int | None
    body_instead: str | None
    content_type: str | None
    reject_fields: list[str]
    after_tokens: int
    drop_after: int | None
    end_after: int | None
    error_event: bool
    error_json: str | None
    malformed_json: bool
    huge_event_bytes: int | None
    invalid_utf8: bool
    split_multibyte: bool
    drip_bytes: bool
    drip_ms: float
    eol: bytes
    require_key: str | None
    spin_ns: int = SPIN_NS
    tool_name: str | None = None  # a tool call streamed after the text
    tool_pieces: list[str] = field(default_factory=list)  # its arguments, piece by piece

    @classmethod
    def build(cls, spec: Mapping[str, Any], body: Mapping[str, Any]) -> _Plan:
        """Resolve and type-check every key of spec (so registration can validate eagerly)."""
        text_tokens = _tokens_from(spec, "", 20)
        replies = _opt_str_map(spec, "json_reply_by_prompt")
        echo = _opt_bool(spec, "echo", False)
        last_user = _last_user_text(body)
        if echo:
            text_tokens = tokenize(last_user)
        for needle, reply in (replies or {}).items():
            if needle in last_user:
                text_tokens = tokenize(reply)
                break
        split_multibyte = _opt_bool(spec, "split_multibyte", False)
        if split_multibyte and _MULTIBYTE_TEXT not in "".join(text_tokens):
            # The scenario exists to exercise multi-byte splits, so guarantee some are present.
            joined = "".join(text_tokens)
            sep = "" if not joined or joined[-1].isspace() else " "
            text_tokens = tokenize(joined + sep + _MULTIBYTE_TEXT)
        reasoning_tokens = _tokens_from(spec, "reasoning_", 0)
        tps = _opt_num(spec, "tps", positive=True)
        itl_ms = _opt_num(spec, "itl_ms")
        if tps is not None and itl_ms is not None:
            raise _SpecError("give either tps or itl_ms, not both")
        itl = 1000.0 / tps if tps is not None else (itl_ms or 0.0)
        finish_reason = spec.get("finish_reason", "stop")
        if finish_reason is not None and not isinstance(finish_reason, str):
            raise _SpecError("finish_reason must be a string or null")
        status = _opt_int(spec, "status", minimum=100)
        if status is not None and status > 599:
            raise _SpecError("status must be 100..599")
        error_body = spec.get("error_body")
        if error_body is not None and not isinstance(error_body, str | dict | list):
            raise _SpecError("error_body must be a string or JSON object")
        keepalive_ms = _opt_num(spec, "keepalive_ms", positive=True)
        keepalive_only = _opt_bool(spec, "keepalive_only", False)
        if keepalive_only and keepalive_ms is None:
            keepalive_ms = 1000.0
        error_json = spec.get("error_json")
        if error_json is not None and error_json not in ("nested", "flat"):
            raise _SpecError("error_json must be 'nested' or 'flat'")
        usage_cost = _opt_num(spec, "usage_cost")
        drip_ms = _opt_num(spec, "drip_ms")
        eol = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}[
            _choice(spec, "line_ending", "lf", ("lf", "crlf", "cr"))
        ]
        prompt_tokens = _opt_int(spec, "prompt_tokens")
        _opt_str(spec, "description")
        return cls(
            reasoning_tokens=reasoning_tokens,
            text_tokens=text_tokens,
            reasoning_field=_choice(
                spec, "reasoning_field", "reasoning_content", ("reasoning_content", "reasoning")
            ),
            hidden_reasoning=_opt_int(spec, "hidden_reasoning_tokens") or 0,
            ttft_ns=round((_opt_num(spec, "ttft_ms") or 0.0) * 1e6),
            itl_ns=round(itl * 1e6),
            tokens_per_chunk=_opt_int(spec, "tokens_per_chunk", minimum=1) or 1,
            first_chunk_tokens=_opt_int(spec, "first_chunk_tokens", minimum=1) or 1,
            role_chunk=_opt_bool(spec, "role_chunk", True),
            role_in_every_delta=_opt_bool(spec, "role_in_every_delta", False),
            usage_mode=_choice(spec, "usage", "auto", ("auto", "always", "never", "on_finish")),
            usage_null=_opt_bool(spec, "usage_null_on_chunks", False),
            prompt_tokens=(
                _default_prompt_tokens(body) if prompt_tokens is None else prompt_tokens
            ),
            cached_tokens=_opt_int(spec, "cached_tokens") or 0,
            cached_field=_choice(spec, "cached_field", "openai", ("openai", "deepseek")),
            image_tokens=_opt_int(spec, "image_tokens"),
            completion_tokens=_opt_int(spec, "completion_tokens"),
            usage_cost=usage_cost,
            finish_reason=finish_reason,
            done=_opt_bool(spec, "done", True),
            keepalive_ns=None if keepalive_ms is None else round(keepalive_ms * 1e6),
            keepalive_only=keepalive_only,
            silent_after_headers=_opt_bool(spec, "silent_after_headers", False),
            silent_after_tokens=_opt_int(spec, "silent_after_tokens"),
            status=status,
            error_body=error_body,
            response_headers=_opt_str_map(spec, "response_headers") or {},
            fail_times=_opt_int(spec, "fail_times"),
            body_instead=_opt_str(spec, "body_instead"),
            content_type=_opt_str(spec, "content_type"),
            reject_fields=_opt_str_list(spec, "reject_fields") or [],
            after_tokens=_opt_int(spec, "after_tokens") or 0,
            drop_after=_opt_int(spec, "drop_after_tokens"),
            end_after=_opt_int(spec, "end_after_tokens"),
            error_event=_opt_bool(spec, "error_event", False),
            error_json=error_json,
            malformed_json=_opt_bool(spec, "malformed_json", False),
            huge_event_bytes=_opt_int(spec, "huge_event_bytes"),
            invalid_utf8=_opt_bool(spec, "invalid_utf8", False),
            split_multibyte=split_multibyte,
            drip_bytes=_opt_bool(spec, "drip_bytes", False),
            drip_ms=1.0 if drip_ms is None else drip_ms,
            eol=eol,
            require_key=_opt_str(spec, "require_key"),
            spin_ns=SPIN_NS if _opt_bool(spec, "spin", True) else 0,
            **_tool_call(spec),
        )

    def failure_points(self) -> list[tuple[int, str]]:
        """Mid-stream failures as (after this many tokens, name), in firing order."""
        points: list[tuple[int, str]] = []
        if self.malformed_json:
            points.append((self.after_tokens, "malformed_json"))
        if self.invalid_utf8:
            points.append((self.after_tokens, "invalid_utf8"))
        if self.huge_event_bytes is not None:
            points.append((self.after_tokens, "huge_event"))
        if self.silent_after_tokens is not None:
            points.append((self.silent_after_tokens, "silent"))
        if self.error_event:
            points.append((self.after_tokens, "error_event"))
        if self.error_json is not None:
            points.append((self.after_tokens, "error_json"))
        if self.end_after is not None:
            points.append((self.end_after, "end"))
        if self.drop_after is not None:
            points.append((self.drop_after, "drop"))
        return points

    def events(self) -> list[tuple[str, list[str], int]]:
        """Token events as (kind, tokens, offset of the target from t_first in ns)."""
        # Events never straddle a failure point, so failures fire after exactly k tokens.
        cuts = sorted({k for k, _ in self.failure_points() if k > 0})
        out: list[tuple[str, list[str], int]] = []
        pos = 0
        decoded_after_first = 0
        for kind, toks in (
            ("reasoning", self.reasoning_tokens),
            ("token", self.text_tokens),
            ("tool", self.tool_pieces),
        ):
            i = 0
            while i < len(toks):
                size = self.first_chunk_tokens if not out else self.tokens_per_chunk
                next_cut = next((c for c in cuts if c > pos), None)
                if next_cut is not None:
                    size = min(size, next_cut - pos)
                size = min(size, len(toks) - i)
                if out:
                    # Spacing is per token, so tokens_per_chunk batches keep the tok/s rate.
                    decoded_after_first += size
                out.append((kind, toks[i : i + size], decoded_after_first * self.itl_ns))
                i += size
                pos += size
        return out

    def usage(self) -> dict[str, Any]:
        """The usage object for this reply."""
        reasoning = len(self.reasoning_tokens) + self.hidden_reasoning
        completion = self.completion_tokens
        if completion is None:
            completion = len(self.text_tokens) + reasoning + len(self.tool_pieces)
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }
        if self.cached_field == "openai":
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
            if self.image_tokens is not None:  # what the prompt's images cost (OpenAI's name)
                usage["prompt_tokens_details"]["image_tokens"] = self.image_tokens
        else:
            usage["prompt_cache_hit_tokens"] = self.cached_tokens
            usage["prompt_cache_miss_tokens"] = max(0, self.prompt_tokens - self.cached_tokens)
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        if self.usage_cost is not None:
            usage["cost"] = self.usage_cost
        return usage


def _tool_call(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``tool_call: {name, arguments}`` (arguments a JSON string, sent as it is, in pieces of
    ``tool_chunk_chars``): the plan's tool fields."""
    call = spec.get("tool_call")
    if call is None:
        return {}
    if not (
        isinstance(call, dict)
        and isinstance(call.get("name"), str)
        and isinstance(call.get("arguments"), str)
    ):
        raise _SpecError("tool_call must be {name: string, arguments: string}")
    size = _opt_int(spec, "tool_chunk_chars", minimum=1) or 8
    args = call["arguments"]
    pieces = [args[i : i + size] for i in range(0, len(args), size)] or [""]
    return {"tool_name": call["name"], "tool_pieces": pieces}


def validate_scenario(spec: object) -> None:
    """Raise ValueError if spec is not a valid scenario object."""
    if not isinstance(spec, dict):
        raise _SpecError("a scenario spec must be a JSON object")
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise _SpecError(f"unknown scenario keys: {unknown}")
    _Plan.build(spec, {"messages": [{"role": "user", "content": "hi"}]})
    _opt_num(spec, "ttft_per_stream_ms")


# ----------------------------------------------------------------------------- HTTP plumbing


def _dumps(obj: object) -> str:
    """Compact JSON with raw UTF-8, as the spec requires."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _openai_error(message: str, type_: str, code: object, param: object = None) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _reason(status: int) -> str:
    """HTTP reason phrase for a status code."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


@dataclass
class _Request:
    """One parsed HTTP request."""

    method: str
    path: str
    version: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool
    received_ns: int


@dataclass(eq=False)
class _Conn:
    """One client connection; buf holds bytes read but not yet parsed."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    buf: bytearray = field(default_factory=bytearray)
    eof: bool = False
    response_started: bool = False

    @property
    def closing(self) -> bool:
        """Whether the transport is already closing (writes would be dropped)."""
        return self.writer.transport.is_closing()


@dataclass
class _Stream:
    """State of one SSE response."""

    conn: _Conn
    rec: dict[str, Any]
    plan: _Plan
    model: str
    rid: str
    created: int
    chunked: bool
    last_send_ns: int = 0
    last_runq_ns: int | None = None
    framer: Framer | None = None  # a native protocol's framing; None: chat completions


class _Waker:
    """A daemon thread that resolves futures at perf_counter_ns deadlines, sub-ms precise."""

    # asyncio timers go through epoll, whose timeout is rounded up to whole milliseconds (twice),
    # so asyncio.sleep wakes up to ~2 ms late; a thread blocked in a timed lock wait wakes within
    # ~0.1-0.2 ms and pokes the loop via call_soon_threadsafe.

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Create (not start) the waker for loop."""
        self._loop = loop
        self._cond = threading.Condition()
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = 0
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="mock-server-waker", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    @property
    def native_id(self) -> int | None:
        """The OS thread id (for schedstat)."""
        return self._thread.native_id

    def stop(self) -> None:
        """Stop the thread (pending futures are left to their cancelled awaiters)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=2)

    def at(self, target_ns: int) -> asyncio.Future[None]:
        """A future resolved once perf_counter_ns() >= target_ns."""
        fut: asyncio.Future[None] = self._loop.create_future()
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (target_ns, self._seq, fut))
            if self._heap[0][2] is fut:
                self._cond.notify()
        return fut

    @staticmethod
    def _resolve(fut: asyncio.Future[None]) -> None:
        """Loop-side: resolve fut unless its waiter was cancelled."""
        if not fut.done():
            fut.set_result(None)

    def _run(self) -> None:
        """Thread body."""
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                remaining = self._heap[0][0] - time.perf_counter_ns()
                if remaining > 0:
                    self._cond.wait(remaining / 1e9)
                    continue
                fut = heapq.heappop(self._heap)[2]
                if fut.done():
                    continue
                try:
                    self._loop.call_soon_threadsafe(self._resolve, fut)
                except RuntimeError:
                    return  # the loop is closed


class _RunQueueMeter:
    """Run-queue wait (ns) summed over the server's threads, from Linux schedstat; else None."""

    # Lets tests tell "the mock was imprecise" from "the OS kept the mock off the CPU":
    # a send late by X with X of run-queue wait since the previous send was starved, not wrong.

    def __init__(self) -> None:
        """No threads yet."""
        self._fds: list[int] = []

    def add_thread(self, native_id: int | None) -> None:
        """Include a thread (no-op where /proc/self/task/<tid>/schedstat does not exist)."""
        if native_id is None:
            return
        with contextlib.suppress(OSError):
            self._fds.append(os.open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY))

    def total(self) -> int | None:
        """Cumulative run-queue wait of the threads, or None if unavailable."""
        if not self._fds:
            return None
        try:
            return sum(int(os.pread(fd, 128, 0).split()[1]) for fd in self._fds)
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        """Close the schedstat files."""
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


class MockServer:
    """In-process mock OpenAI-compatible server on asyncio streams."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        scenarios: Mapping[str, Mapping[str, Any]] | None = None,
        require_key: str | None = None,
    ) -> None:
        """Configure (not start) the server; scenarios are validated now."""
        self.host = host
        self._port_req = port
        self.require_key = require_key
        self._port: int | None = None
        self._server: asyncio.Server | None = None
        self._scenarios: dict[str, dict[str, Any]] = {}
        self._builtins = builtin_scenarios()
        self._fail_counts: dict[str, int] = {}
        self._log: list[dict[str, Any]] = []
        self._next_id = 1
        self._streaming = 0  # responses being streamed now (the latency model's load)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._conns: set[_Conn] = set()
        self._closing = False
        self._waker: _Waker | None = None
        self._runq = _RunQueueMeter()
        for name, spec in (scenarios or {}).items():
            self.add_scenario(name, spec)

    # -- public API

    @property
    def port(self) -> int:
        """The bound port (after start())."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. http://127.0.0.1:1234/v1."""
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> int:
        """Start listening; return the bound port."""
        self._waker = _Waker(asyncio.get_running_loop())
        self._waker.start()
        self._runq.add_thread(threading.get_native_id())
        self._runq.add_thread(self._waker.native_id)
        self._server = await asyncio.start_server(self._on_connect, self.host, self._port_req)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def stop(self) -> None:
        """Stop listening and abort every open connection."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._waker is not None:
            self._waker.stop()
            self._waker = None
        self._runq.close()

    async def __aenter__(self) -> MockServer:
        """Start on enter."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop on exit."""
        await self.stop()

    def add_scenario(self, name: str, spec: Mapping[str, Any]) -> None:
        """Register or overwrite a scenario (raises ValueError if invalid)."""
        spec = dict(spec)
        validate_scenario(spec)
        self._scenarios[name] = spec
        # A re-registered scenario starts its fail_times count afresh.
        self._fail_counts.pop(name, None)

    def log(self) -> list[dict[str, Any]]:
        """A JSON-round-tripped copy of the request log."""
        result: list[dict[str, Any]] = json.loads(_dumps(self._log))
        return result

    def reset_log(self) -> None:
        """Clear the log and the fail_times counters."""
        self._log.clear()
        self._fail_counts.clear()

    def scenario_names(self) -> list[str]:
        """Built-in plus registered scenario names."""
        return list(dict.fromkeys([*self._builtins, *self._scenarios]))

    async def _sleep_until(self, target_ns: int, spin_ns: int) -> None:
        """Sleep until perf_counter_ns() >= target_ns: timer thread, then a short yield-spin.

        ``spin_ns=0`` (scenario ``"spin": false``): the timer thread alone, about 0.1-0.2 ms
        late, with no spinning on a core that the client being measured may want.
        """
        remaining = target_ns - time.perf_counter_ns()
        if remaining > spin_ns:
            if self._waker is not None:
                await self._waker.at(target_ns - spin_ns)
            else:
                await asyncio.sleep((remaining - spin_ns) / 1e9)
        while True:
            if time.perf_counter_ns() >= target_ns:
                return
            # Yield rather than busy-wait so other connections keep being served.
            await asyncio.sleep(0)

    # -- connection handling

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection (keep-alive loop); never lets an exception escape."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = _Conn(reader, writer)
        self._conns.add(conn)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while not self._closing:
                req = await self._read_request(conn)
                if req is None:
                    break
                keep = await self._dispatch(conn, req)
                if not keep or not req.keep_alive or conn.closing:
                    break
        except (_ClientGone, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only stop() cancels us. Finish normally: asyncio's done-callback for connection
            # tasks (3.11.x) calls task.exception(), which logs a traceback for cancelled tasks.
            conn.writer.transport.abort()
        except Exception as exc:
            # A bug outside request dispatch: report it, answer 500 if possible, drop only this
            # connection.
            print("mock_server: connection error\n" + traceback.format_exc(), file=sys.stderr)
            if not conn.response_started and not conn.closing:
                body = _openai_error(f"mock server internal error: {exc!r}", "server_error", None)
                with contextlib.suppress(Exception):
                    await self._simple(conn, None, 500, body)
        finally:
            self._conns.discard(conn)
            if task is not None:
                self._tasks.discard(task)
            if not conn.closing:
                conn.writer.close()

    async def _fill(self, conn: _Conn) -> bool:
        """Read more bytes into conn.buf; False on EOF."""
        if conn.eof:
            return False
        try:
            data = await conn.reader.read(_READ_SIZE)
        except ConnectionError:
            data = b""
        if not data:
            conn.eof = True
            return False
        conn.buf += data
        return True

    async def _read_request(self, conn: _Conn) -> _Request | None:
        """Read and parse one request; None when the connection should close."""
        conn.response_started = False
        while True:
            # RFC 9112 says to ignore empty lines before a request line.
            while conn.buf[:2] == b"\r\n":
                del conn.buf[:2]
            end = conn.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(conn.buf) > _MAX_HEADER_BYTES:
                await self._simple(conn, None, 431, {"error": "headers too large"}, False)
                return None
            if not await self._fill(conn):
                return None
        head = bytes(conn.buf[:end]).decode("latin-1")
        del conn.buf[: end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await self._simple(conn, None, 400, {"error": "bad request line"}, False)
            return None
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                await self._simple(conn, None, 400, {"error": "bad header line"}, False)
                return None
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if "transfer-encoding" in headers:
            # Without Content-Length the request boundary is unknown, so the connection ends.
            await self._simple(conn, None, 411, {"error": "chunked request bodies unsupported"})
            return None
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_BODY_BYTES:
            await self._simple(conn, None, 400 if length < 0 else 413, {"error": "bad length"})
            return None
        if len(conn.buf) < length and headers.get("expect", "").lower() == "100-continue":
            conn.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while len(conn.buf) < length:
            if not await self._fill(conn):
                return None
        body = bytes(conn.buf[:length])
        del conn.buf[:length]
        received_ns = time.perf_counter_ns()
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
        return _Request(
            method=method,
            path=target.split("?", 1)[0],
            version=version,
            headers=headers,
            body=body,
            keep_alive=keep_alive,
            received_ns=received_ns,
        )

    async def _dispatch(self, conn: _Conn, req: _Request) -> bool:
        """Route one request; answer 500 on any handler error. Returns whether to keep alive."""
        rec: dict[str, Any] | None = None
        if req.path not in _CONTROL_PATHS:
            rec = {
                "id": self._next_id,
                "path": req.path,
                "model": None,
                "received_ns": req.received_ns,
                "headers": dict(req.headers),
                "body": None,
                "status": 0,
                "sends": [],
                "closed_ns": None,
                "client_disconnected": False,
                "error": None,
            }
            self._next_id += 1
            self._log.append(rec)
        try:
            return await self._route(conn, req, rec)
        except (_ClientGone, ConnectionError):
            self._mark_gone(rec)
            return False
        except Exception as exc:
            print("mock_server: handler error\n" + traceback.format_exc(), file=sys.stderr)
            if rec is not None:
                rec["error"] = repr(exc)
            if conn.response_started or conn.closing:
                # Headers already went out, so a 500 is impossible: cut the connection.
                conn.writer.transport.abort()
                if rec is not None and rec["closed_ns"] is None:
                    rec["closed_ns"] = time.perf_counter_ns()
                return False
            body = _openai_error(f"mock server internal error: {exc!r}", "server_error", None)
            await self._simple(conn, rec, 500, body, req.keep_alive)
            return req.keep_alive

    @staticmethod
    def _mark_gone(rec: dict[str, Any] | None) -> None:
        """Record that the client went away before the response completed."""
        if rec is not None:
            rec["client_disconnected"] = True
            if rec["closed_ns"] is None:
                rec["closed_ns"] = time.perf_counter_ns()

    async def _simple(
        self,
        conn: _Conn,
        rec: dict[str, Any] | None,
        status: int,
        body: object,
        keep_alive: bool = False,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Send a complete non-streaming response in one write."""
        if conn.closing:
            raise _ClientGone
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = _dumps(body).encode()
        lines = [
            f"HTTP/1.1 {status} {_reason(status)}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(data)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        conn.response_started = True
        conn.writer.write(head + data)
        if rec is not None:
            rec["status"] = status
            rec["closed_ns"] = time.perf_counter_ns()
        try:
            await conn.writer.drain()
        except ConnectionError as exc:
            raise _ClientGone from exc

    def _authorized(self, req: _Request, key: str) -> bool:
        """Whether the request carries the key: Bearer, or the native x-api-key / x-goog-api-key."""
        h = req.headers
        if req.path.startswith("/v1beta/"):
            return h.get("x-goog-api-key", "") == key
        if req.path == "/v1/messages" or "anthropic-version" in h:
            return h.get("x-api-key", "") == key
        return h.get("authorization", "") == f"Bearer {key}"

    async def _route(self, conn: _Conn, req: _Request, rec: dict[str, Any] | None) -> bool:
        """Dispatch on method and path."""
        keep = req.keep_alive
        route = (req.method, req.path)
        if route == ("POST", "/_scenarios"):
            try:
                specs = json.loads(req.body or b"{}")
                if not isinstance(specs, dict):
                    raise _SpecError("body must be an object mapping names to scenario specs")
                for spec in specs.values():
                    validate_scenario(spec)
            except ValueError as exc:
                err = _openai_error(f"bad scenario: {exc}", "invalid_request_error", None)
                await self._simple(conn, rec, 400, err, keep)
                return keep
            for name, spec in specs.items():
                self.add_scenario(name, spec)
            await self._simple(conn, rec, 200, {}, keep)
            return keep
        if route == ("GET", "/_log"):
            await self._simple(conn, rec, 200, self._log, keep)
            return keep
        if route == ("POST", "/_reset"):
            self.reset_log()
            await self._simple(conn, rec, 200, {}, keep)
            return keep
        if (
            req.path.startswith(("/v1/", "/v1beta/"))
            and self.require_key is not None
            and not self._authorized(req, self.require_key)
        ):
            await self._simple(conn, rec, 401, self._bad_key(), keep)
            return keep
        if route == ("GET", "/v1/models"):
            data = [{"id": n, "object": "model", "owned_by": "mock"} for n in self.scenario_names()]
            await self._simple(conn, rec, 200, {"object": "list", "data": data}, keep)
            return keep
        if route == ("POST", "/v1/chat/completions"):
            assert rec is not None
            return await self._chat(conn, req, rec)
        # Native protocols (tests/support/mock_protocols.py): the same scenarios, framed anew.
        if route == ("POST", "/v1/messages"):
            assert rec is not None
            return await self._chat(conn, req, rec, "anthropic")
        if route == ("POST", "/v1/responses"):
            assert rec is not None
            return await self._chat(conn, req, rec, "responses")
        if route == ("GET", "/v1beta/models"):
            models = [
                {"name": f"models/{n}", "supportedGenerationMethods": ["generateContent"]}
                for n in self.scenario_names()
            ]
            await self._simple(conn, rec, 200, {"models": models}, keep)
            return keep
        gemini = unquote(req.path)
        if (
            req.method == "POST"
            and gemini.startswith("/v1beta/models/")
            and gemini.endswith(":streamGenerateContent")
        ):
            assert rec is not None
            model = gemini.removeprefix("/v1beta/models/").removesuffix(":streamGenerateContent")
            return await self._chat(conn, req, rec, "gemini", model)
        err = _openai_error(f"no route for {req.method} {req.path}", "invalid_request_error", None)
        await self._simple(conn, rec, 404, err, keep)
        return keep

    @staticmethod
    def _bad_key() -> dict[str, Any]:
        """OpenAI's 401 body."""
        return {
            "error": {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        }

    def _lookup(self, model: str) -> dict[str, Any] | None:
        """Registered, then built-in, then script: scenario for a model name."""
        if model in self._scenarios:
            return self._scenarios[model]
        if model in self._builtins:
            return self._builtins[model]
        if model.startswith("script:"):
            return _parse_script(model)
        return None

    async def _chat(
        self,
        conn: _Conn,
        req: _Request,
        rec: dict[str, Any],
        protocol: NativeProtocol | None = None,
        path_model: str | None = None,
    ) -> bool:
        """POST /v1/chat/completions, or a native protocol's streaming request."""
        keep = req.keep_alive
        try:
            body = json.loads(req.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            err = _openai_error("request body must be a JSON object", "invalid_request_error", None)
            await self._simple(conn, rec, 400, err, keep)
            return keep
        rec["body"] = body
        rec["protocol"] = protocol or "chat"
        if protocol == "gemini":
            # Gemini names the model in the path and its messages "contents".
            body = {
                "model": path_model,
                "stream": True,
                "messages": [
                    {
                        "role": c.get("role"),
                        "content": "".join(p.get("text", "") for p in c["parts"]),
                    }
                    for c in body.get("contents", [])
                    if isinstance(c, dict) and isinstance(c.get("parts"), list)
                ],
            }
        elif protocol == "responses" and isinstance(body.get("input"), list):
            body = {**body, "messages": body["input"]}
        model = body.get("model")
        if not isinstance(model, str):
            err = _openai_error(
                "you must provide a model parameter", "invalid_request_error", None, "model"
            )
            await self._simple(conn, rec, 400, err, keep)
            return keep
        rec["model"] = model
        try:
            spec = self._lookup(model)
            if spec is not None and model.startswith("script:") and model not in self._scenarios:
                validate_scenario(spec)
        except _SpecError as exc:
            err = _openai_error(str(exc), "invalid_request_error", "bad_script", "model")
            await self._simple(conn, rec, 400, err, keep)
            return keep
        if spec is None:
            err = _openai_error(
                f"The model '{model}' does not exist", "invalid_request_error", "model_not_found"
            )
            del err["error"]["param"]
            await self._simple(conn, rec, 404, err, keep)
            return keep
        plan = _Plan.build(spec, body)
        # The latency model of a loaded server: each stream already being served when this
        # request arrives adds ``ttft_per_stream_ms`` to its TTFT (load tests set it).
        rec["streams_at_receipt"] = self._streaming
        per_stream = _opt_num(spec, "ttft_per_stream_ms")
        if per_stream:
            plan.ttft_ns += round(per_stream * 1e6 * self._streaming)
        extra = plan.response_headers
        if plan.require_key is not None and not self._authorized(req, plan.require_key):
            await self._simple(conn, rec, 401, self._bad_key(), keep, headers=extra)
            return keep
        for name in plan.reject_fields:
            if name in body:
                err = _openai_error(
                    f"Unrecognized request argument supplied: {name}",
                    "invalid_request_error",
                    None,
                    name,
                )
                await self._simple(conn, rec, 400, err, keep, headers=extra)
                return keep
        if plan.status is not None:
            count = self._fail_counts.get(model, 0) + 1
            self._fail_counts[model] = count
            if plan.fail_times is None or count <= plan.fail_times:
                await self._fail(conn, rec, plan, keep)
                return keep
        if plan.body_instead is not None:
            ctype = plan.content_type or (
                "application/json"
                if plan.body_instead.lstrip()[:1] in ("{", "[")
                else "text/html; charset=utf-8"
            )
            await self._simple(
                conn, rec, 200, plan.body_instead, keep, content_type=ctype, headers=extra
            )
            return keep
        rid = f"chatcmpl-mock-{rec['id']}"
        if protocol is not None:
            st = _Stream(
                conn=conn,
                rec=rec,
                plan=plan,
                model=model,
                rid=rid,
                created=int(time.time()),
                chunked=req.version != "HTTP/1.0",
                framer=Framer(protocol, plan.eol, rid, model),
            )
            keep = await self._watched(conn, rec, self._stream(st, True))
            return keep and req.keep_alive
        if body.get("stream") is not True:
            return await self._watched(
                conn, rec, self._non_stream(conn, req, rec, plan, model, rid)
            )
        include_usage = isinstance(body.get("stream_options"), dict) and (
            body["stream_options"].get("include_usage") is True
        )
        st = _Stream(
            conn=conn,
            rec=rec,
            plan=plan,
            model=model,
            rid=rid,
            created=int(time.time()),
            chunked=req.version != "HTTP/1.0",
        )
        self._streaming += 1
        try:
            keep = await self._watched(conn, rec, self._stream(st, include_usage))
        finally:
            self._streaming -= 1
        return keep and req.keep_alive

    async def _fail(self, conn: _Conn, rec: dict[str, Any], plan: _Plan, keep: bool) -> None:
        """Answer the scenario's configured error status."""
        status = plan.status or 500
        body = plan.error_body
        if body is None:
            body = _openai_error(
                f"mock error {status}",
                "server_error" if status >= 500 else "invalid_request_error",
                None,
            )
        ctype = plan.content_type or "application/json"
        if plan.content_type is None and isinstance(body, str):
            try:
                json.loads(body)
            except ValueError:
                ctype = "text/plain; charset=utf-8"
        await self._simple(
            conn, rec, status, body, keep, content_type=ctype, headers=plan.response_headers
        )

    async def _non_stream(
        self, conn: _Conn, req: _Request, rec: dict[str, Any], plan: _Plan, model: str, rid: str
    ) -> bool:
        """A plain chat.completion, delivered when the stream would have finished."""
        events = plan.events()
        last = events[-1][2] if events else 0
        await self._sleep_until(req.received_ns + plan.ttft_ns + last, plan.spin_ns)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(plan.text_tokens)}
        if plan.reasoning_tokens:
            message[plan.reasoning_field] = "".join(plan.reasoning_tokens)
        reply: dict[str, Any] = {
            "id": rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": plan.finish_reason}],
        }
        if plan.usage_mode != "never":
            reply["usage"] = plan.usage()
        await self._simple(
            conn,
            rec,
            200,
            reply,
            req.keep_alive,
            content_type=plan.content_type or "application/json",
            headers=plan.response_headers,
        )
        return req.keep_alive

    # -- streaming

    async def _watch_peer(self, conn: _Conn) -> None:
        """Return when the client closes or resets (any bytes it sends are kept for later)."""
        # A half-close (EOF) counts as gone: HTTP clients don't half-close while reading.
        while await self._fill(conn):
            pass

    async def _watched(
        self, conn: _Conn, rec: dict[str, Any], work: Coroutine[Any, Any, bool]
    ) -> bool:
        """Run a response coroutine while watching for the client going away mid-response."""
        work_task = asyncio.create_task(work)
        watch_task = asyncio.create_task(self._watch_peer(conn))
        try:
            await asyncio.wait({work_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Also reached when stop() cancels us: never leave the subtasks running.
            for task in (work_task, watch_task):
                if not task.done():
                    task.cancel()
            await asyncio.gather(work_task, watch_task, return_exceptions=True)
        if work_task.cancelled():
            # The watcher saw the client leave first.
            self._mark_gone(rec)
            conn.writer.transport.abort()
            return False
        exc = work_task.exception()
        if exc is not None:
            raise exc
        return work_task.result()

    def _payload(self, st: _Stream, obj: dict[str, Any]) -> bytes:
        """An SSE `data:` event for one JSON object."""
        return b"data: " + _dumps(obj).encode() + st.plan.eol * 2

    def _chunk(
        self,
        st: _Stream,
        delta: dict[str, Any],
        finish: str | None = None,
        usage: dict[str, Any] | None = None,
    ) -> bytes:
        """An OpenAI chat.completion.chunk event."""
        if st.plan.role_in_every_delta:
            delta = {"role": "assistant", **delta}
        obj: dict[str, Any] = {
            "id": st.rid,
            "object": "chat.completion.chunk",
            "created": st.created,
            "model": st.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            obj["usage"] = usage
        elif st.plan.usage_null:
            obj["usage"] = None
        return self._payload(st, obj)

    def _tool_piece(
        self, st: _Stream, piece: str, first: bool, last: bool, usage: dict[str, Any] | None
    ) -> bytes:
        """One piece of the plan's tool call, in the stream's protocol."""
        name = st.plan.tool_name or "tool"
        if st.framer is not None:
            return st.framer.tool(name, piece, first, last, usage)
        call: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
        if first:
            call = {"index": 0, "id": "call_mock_0", "type": "function"}
            call["function"] = {"name": name, "arguments": piece}
        return self._chunk(st, {"tool_calls": [call]})

    async def _write_raw(self, st: _Stream, data: bytes) -> None:
        """Write bytes (no logging), failing fast if the client is gone."""
        if st.conn.closing:
            raise _ClientGone
        st.conn.writer.write(data)
        try:
            await st.conn.writer.drain()
        except ConnectionError as exc:
            raise _ClientGone from exc

    async def _send(self, st: _Stream, payload: bytes, kind: str, tokens: int = 0) -> None:
        """Write one SSE event as one HTTP chunk and log its send time."""
        conn = st.conn
        data = b"%x\r\n%s\r\n" % (len(payload), payload) if st.chunked else payload
        wire = len(data)
        if st.plan.drip_bytes:
            for i in range(len(data) - 1):
                await self._write_raw(st, data[i : i + 1])
                await asyncio.sleep(st.plan.drip_ms / 1000)
            data = data[-1:]
        elif st.plan.split_multibyte:
            cut = next((i for i, b in enumerate(data) if b >= 0xC0), None)
            if cut is not None:
                # Split right after a UTF-8 lead byte, i.e. inside the character.
                await self._write_raw(st, data[: cut + 1])
                await asyncio.sleep(0.002)
                data = data[cut + 1 :]
        if conn.closing:
            raise _ClientGone
        start = time.perf_counter_ns()
        conn.writer.write(data)
        now = time.perf_counter_ns()
        st.last_send_ns = now
        runq = self._runq.total()
        runq_delta = None if runq is None or st.last_runq_ns is None else runq - st.last_runq_ns
        st.last_runq_ns = runq
        # On loopback, write() runs the receiver's TCP path inline (~0.1 ms here), so the client
        # can see the bytes before t_ns; t_start_ns is the causal lower bound.
        st.rec["sends"].append(
            {
                "t_ns": now,
                "t_start_ns": start,
                "kind": kind,
                "tokens": tokens,
                "bytes": wire,
                "runq_ns": runq_delta,
            }
        )
        try:
            await conn.writer.drain()
        except ConnectionError as exc:
            raise _ClientGone from exc

    async def _comment(self, st: _Stream) -> None:
        """Send an SSE keep-alive comment."""
        await self._send(st, b": keep-alive" + st.plan.eol * 2, "comment")

    async def _wait(self, st: _Stream, target_ns: int) -> None:
        """Wait for target_ns, sending keep-alive comments on the way if configured."""
        ka = st.plan.keepalive_ns
        if ka is not None:
            # Skip a keep-alive that would land within 1 ms of the real event.
            while st.last_send_ns + ka < target_ns - 1_000_000:
                await self._sleep_until(st.last_send_ns + ka, st.plan.spin_ns)
                await self._comment(st)
        await self._sleep_until(target_ns, st.plan.spin_ns)

    async def _hold(self) -> None:
        """Stay silent until the watcher sees the client leave (or the server stops)."""
        await asyncio.get_running_loop().create_future()

    async def _end(self, st: _Stream) -> None:
        """End the response cleanly (terminating zero-length chunk)."""
        conn = st.conn
        if not st.chunked:
            # HTTP/1.0: the body is delimited by closing the connection.
            st.rec["closed_ns"] = time.perf_counter_ns()
            conn.writer.close()
            return
        if conn.closing:
            raise _ClientGone
        conn.writer.write(b"0\r\n\r\n")
        # Recorded before drain so a client that saw the end then asks /_log sees it final.
        st.rec["closed_ns"] = time.perf_counter_ns()
        try:
            await conn.writer.drain()
        except ConnectionError as exc:
            raise _ClientGone from exc

    async def _stream(self, st: _Stream, include_usage: bool) -> bool:
        """Send the whole SSE response; returns whether the connection may be reused."""
        plan, conn = st.plan, st.conn
        headers = [
            "HTTP/1.1 200 OK",
            f"Content-Type: {plan.content_type or 'text/event-stream; charset=utf-8'}",
            "Cache-Control: no-cache",
            f"X-Request-Id: {st.rid}",
        ]
        if st.chunked:
            headers += ["Transfer-Encoding: chunked", "Connection: keep-alive"]
        else:
            headers.append("Connection: close")
        headers += [f"{k}: {v}" for k, v in plan.response_headers.items()]
        head = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1")
        conn.response_started = True
        st.rec["status"] = 200
        await self._write_raw(st, head)
        st.last_send_ns = time.perf_counter_ns()
        st.last_runq_ns = self._runq.total()
        if plan.silent_after_headers:
            await self._hold()
        framer = st.framer
        start_usage = plan.usage() if plan.usage_mode != "never" else None
        if framer is not None:
            start = framer.start(start_usage)
            if start is not None and plan.role_chunk:
                await self._send(st, start, "role")
        elif plan.role_chunk:
            await self._send(st, self._chunk(st, {"role": "assistant", "content": ""}), "role")
        if plan.keepalive_only:
            assert plan.keepalive_ns is not None
            while True:
                await self._sleep_until(st.last_send_ns + plan.keepalive_ns, plan.spin_ns)
                await self._comment(st)
        t_first = st.rec["received_ns"] + plan.ttft_ns
        pending = plan.failure_points()
        sent = 0
        events = plan.events()
        if not events:
            await self._wait(st, t_first)
        for kind, toks, offset in events:
            # Serialise before waiting so only the write happens after the target.
            field_name = "content" if kind == "token" else plan.reasoning_field
            if kind == "tool":
                first = sent == sum(len(t) for k, t, _ in events if k != "tool")
                last = sent + len(toks) == sum(len(t) for _, t, _ in events)
                payload = self._tool_piece(st, "".join(toks), first, last, start_usage)
            elif framer is not None:
                payload = framer.token(kind, "".join(toks), start_usage)
            else:
                payload = self._chunk(st, {field_name: "".join(toks)})
            await self._wait(st, t_first + offset)
            if any(k <= sent for k, _ in pending):
                ended = await self._fire(st, pending, sent, final=False)
                if ended is not None:
                    return ended
            if payload:  # Gemini sends a tool call whole, with its last piece
                await self._send(st, payload, kind, len(toks))
            sent += len(toks)
        ended = await self._fire(st, pending, sent, final=True)
        if ended is not None:
            return ended
        usage = plan.usage()
        if framer is not None:
            for payload, kind in framer.finish(plan.finish_reason, start_usage, plan.done):
                await self._send(st, payload, kind)
            await self._end(st)
            return st.chunked
        if plan.finish_reason is not None:
            on_finish = usage if plan.usage_mode == "on_finish" else None
            await self._send(st, self._chunk(st, {}, plan.finish_reason, on_finish), "finish")
        if plan.usage_mode == "always" or (plan.usage_mode == "auto" and include_usage):
            obj = {
                "id": st.rid,
                "object": "chat.completion.chunk",
                "created": st.created,
                "model": st.model,
                "choices": [],
                "usage": usage,
            }
            await self._send(st, self._payload(st, obj), "usage")
        if plan.done:
            await self._send(st, b"data: [DONE]" + plan.eol * 2, "done")
        await self._end(st)
        return st.chunked

    async def _fire(
        self, st: _Stream, pending: list[tuple[int, str]], sent: int, final: bool
    ) -> bool | None:
        """Fire due mid-stream failures; a bool return means the response is over."""
        plan = st.plan
        due = [(k, name) for k, name in pending if final or k <= sent]
        for item in due:
            pending.remove(item)
            name = item[1]
            framer = st.framer
            if name == "malformed_json" and framer is not None:
                await self._send(st, framer.malformed(), "other")
            elif name in ("error_event", "error_json") and framer is not None:
                await self._send(st, framer.error_event(), "error")
                await self._end(st)
                return st.chunked
            elif name == "malformed_json":
                await self._send(
                    st, b'data: {"choices":[{"delta":{"content":"oops"' + plan.eol * 2, "other"
                )
            elif name == "invalid_utf8":
                raw = (
                    framer.token("token", _INVALID_UTF8_MARK, None)
                    if framer is not None
                    else self._chunk(st, {"content": _INVALID_UTF8_MARK})
                )
                raw = raw.replace(_INVALID_UTF8_MARK.encode(), b"\xff\xfe")
                await self._send(st, raw, "other")
            elif name == "huge_event":
                size = plan.huge_event_bytes or 0
                huge = (
                    framer.token("token", "x" * size, None)
                    if framer is not None
                    else self._chunk(st, {"content": "x" * size})
                )
                await self._send(st, huge, "other")
            elif name == "silent":
                await self._hold()
            elif name == "error_event":
                err = {
                    "error": {
                        "message": "mock upstream error",
                        "type": "server_error",
                        "code": "upstream_error",
                    }
                }
                payload = b"event: error" + plan.eol + b"data: " + _dumps(err).encode()
                await self._send(st, payload + plan.eol * 2, "error")
                await self._end(st)
                return st.chunked
            elif name == "error_json":
                if plan.error_json == "nested":
                    obj: dict[str, Any] = {
                        "error": {"message": "mock mid-stream error", "code": 500}
                    }
                else:
                    obj = {
                        "object": "error",
                        "message": "mock mid-stream error",
                        "type": "InternalServerError",
                        "code": 500,
                    }
                await self._send(st, self._payload(st, obj), "error")
                await self._send(st, b"data: [DONE]" + plan.eol * 2, "done")
                await self._end(st)
                return st.chunked
            elif name == "end":
                await self._end(st)
                return st.chunked
            elif name == "drop":
                st.conn.writer.transport.abort()
                st.rec["closed_ns"] = time.perf_counter_ns()
                return False
        return None


# ----------------------------------------------------------------------------- subprocess


class MockServerProcess:
    """Run the mock server in a subprocess (sync context manager) with small HTTP helpers."""

    def __init__(
        self,
        *,
        scenarios: Mapping[str, Mapping[str, Any]] | None = None,
        require_key: str | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 10.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        """Configure (not start) the subprocess."""
        self.host = host
        self._scenarios = dict(scenarios or {})
        self._require_key = require_key
        self._startup_timeout = startup_timeout
        self._extra_args = list(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The server's port."""
        if self._port is None:
            raise RuntimeError("mock server process not started")
        return self._port

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. http://127.0.0.1:1234/v1."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self._proc is None:
            raise RuntimeError("mock server process not started")
        return self._proc.pid

    def start(self) -> MockServerProcess:
        """Spawn the child, wait for its port line, register scenarios."""
        cmd = [
            sys.executable,
            "-m",
            "tests.support.mock_server",
            "--host",
            self.host,
            "--port",
            "0",
            "--exit-on-stdin-eof",
        ]
        if self._require_key is not None:
            cmd += ["--require-key", self._require_key]
        cmd += self._extra_args
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        self._proc = subprocess.Popen(
            cmd, cwd=_REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0
        )
        try:
            self._port = self._read_port()
            for name, spec in self._scenarios.items():
                self.add_scenario(name, spec)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_port(self) -> int:
        """Read the `MOCK_SERVER_PORT <port>` line within the startup timeout."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + self._startup_timeout
        buf = b""
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"mock server printed no port line in {self._startup_timeout}s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"mock server exited early (rc={self._proc.wait()})")
            buf += chunk
        line = buf.split(b"\n", 1)[0].decode(errors="replace").strip()
        match = re.fullmatch(rf"{PORT_LINE_PREFIX} (\d+)", line)
        if match is None:
            raise RuntimeError(f"unexpected first line from mock server: {line!r}")
        return int(match.group(1))

    def stop(self) -> None:
        """Terminate the child (terminate, wait 5 s, kill); idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._proc = None

    def __enter__(self) -> MockServerProcess:
        """Start on enter."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop on exit."""
        self.stop()

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on a fresh connection: (status, lowercased headers, body)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            data = None if body is None else _dumps(body).encode()
            hdrs = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload
        finally:
            conn.close()

    def add_scenario(self, name: str, spec: Mapping[str, Any]) -> None:
        """Register or overwrite a scenario (raises ValueError if the server rejects it)."""
        status, _, payload = self.request("POST", "/_scenarios", {name: dict(spec)})
        if status != 200:
            raise ValueError(payload.decode(errors="replace"))

    def log(self) -> list[dict[str, Any]]:
        """The server's request log."""
        status, _, payload = self.request("GET", "/_log")
        if status != 200:
            raise RuntimeError(f"GET /_log -> {status}")
        result: list[dict[str, Any]] = json.loads(payload)
        return result

    def reset_log(self) -> None:
        """Clear the server's log and fail_times counters."""
        self.request("POST", "/_reset")

    def wait_log(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Poll the log until predicate(log) holds (for server-side events such as disconnects)."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.log()
            if predicate(entries):
                return entries
            if time.monotonic() > deadline:
                raise TimeoutError(f"log condition not met within {timeout}s: {entries!r}")
            time.sleep(0.01)


# ----------------------------------------------------------------------------- CLI


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Thread body: set stop when stdin reaches EOF (the parent died or closed it)."""
    try:
        while os.read(0, 65536):
            pass
    except OSError:
        pass
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(stop.set)


async def _amain(args: argparse.Namespace, scenarios: dict[str, Any]) -> int:
    """Run the server until a signal (or stdin EOF if requested)."""
    server = MockServer(args.host, args.port, scenarios=scenarios, require_key=args.require_key)
    port = await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if args.exit_on_stdin_eof:
        threading.Thread(target=_watch_stdin, args=(loop, stop), daemon=True).start()
    print(f"{PORT_LINE_PREFIX} {port}", flush=True)
    await stop.wait()
    await server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--scenarios", help="JSON file: object of scenario name -> spec")
    parser.add_argument("--require-key", help="require `Authorization: Bearer KEY` on /v1/*")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args(argv)
    scenarios: dict[str, Any] = {}
    if args.scenarios:
        scenarios = json.loads(Path(args.scenarios).read_text(encoding="utf-8"))
        if not isinstance(scenarios, dict):
            parser.error("--scenarios file must hold a JSON object of name -> spec")
    return asyncio.run(_amain(args, scenarios))


if __name__ == "__main__":
    sys.exit(main())

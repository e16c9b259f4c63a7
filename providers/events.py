"""The stream engine's events: frozen dataclasses stamped when their bytes were decoded.

Every event carries ``t_ns``, a ``time.perf_counter_ns()`` reading. On Linux and macOS that
clock is system-wide and monotonic, so stamps taken in the engine process compare directly
with stamps taken in the UI process or in the mock server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ErrorKind = Literal[
    "auth",  # 401/403, or no key configured for an endpoint that needs one
    "not_found",  # 404: model or path unknown
    "bad_request",  # other 4xx
    "rate_limit",  # 429 after retries, or a Retry-After longer than we will wait
    "quota",  # 429 insufficient_quota: permanent, never retried
    "server",  # 5xx after retries
    "connect",  # connection refused, DNS, TLS
    "timeout_connect",
    "timeout_first_token",
    "timeout_idle",
    "not_sse",  # a 2xx answer that is not text/event-stream
    "malformed",  # an event whose JSON does not parse
    "too_large",  # an event over the size cap
    "remote_error",  # an error event or error JSON inside the stream
    "interrupted",  # connection dropped, or the stream ended without [DONE] or finish reason
    "keyring",  # the OS keyring is missing, locked or hangs
    "config",  # the endpoint's configuration cannot be used
    "redirect",  # a 3xx: never followed, so credentials never reach another address
    "cancelled",
    "reply_cap",  # the reply reached [engine] max_reply_bytes: cut there, its text kept
    "internal",  # a bug in tokenrace: reported, never raised into the UI
]


@dataclass(frozen=True, slots=True)
class Connected:
    """A new TCP (and TLS) connection was opened; absent when a pooled one was reused."""

    t_ns: int
    connect_ns: int


@dataclass(frozen=True, slots=True)
class RequestSent:
    """The last byte of the request body was handed to the socket: t0 of DESIGN §4."""

    t_ns: int
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class ResponseHeaders:
    """Status line and headers arrived."""

    t_ns: int
    status: int
    content_type: str
    rate_limits: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's visible reasoning (``reasoning_content`` / ``reasoning``)."""

    t_ns: int
    text: str
    choice: int = 0
    tokens: int | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer; ``refusal`` marks ``delta.refusal`` fragments."""

    t_ns: int
    text: str
    choice: int = 0
    tokens: int | None = None
    refusal: bool = False


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a streamed tool call; ``index`` ties fragments of one call together."""

    t_ns: int
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    choice: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage as the server reported it, mapped to one shape for every provider."""

    t_ns: int
    prompt: int | None = None
    completion: int | None = None
    reasoning: int | None = None
    cached: int | None = None  # read from the prompt cache; part of ``prompt``
    cost_usd: float | None = None  # the provider's own figure (OpenRouter), shown as reported
    cache_write: int | None = None  # written to the prompt cache (Anthropic); part of ``prompt``
    image: int | None = None  # the prompt's images, where the server says; part of ``prompt``


@dataclass(frozen=True, slots=True)
class TokenCount:
    """Output tokens counted with the server's own tokenizer (llama.cpp), when usage is absent."""

    t_ns: int
    completion: int


@dataclass(frozen=True, slots=True)
class ServerTimings:
    """Timings the server measured itself (llama.cpp ``timings``), kept apart from ours."""

    t_ns: int
    values: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Finished:
    """The stream ended normally; ``reason`` is the finish reason of choice 0."""

    t_ns: int
    reason: str | None
    done_marker: bool = True


@dataclass(frozen=True, slots=True)
class Retrying:
    """An attempt failed before the first token; the engine waits ``delay_s`` and tries again."""

    t_ns: int
    attempt: int
    delay_s: float
    kind: ErrorKind
    message: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should know that is not a failure (e.g. a field the server rejected)."""

    t_ns: int
    message: str


@dataclass(frozen=True, slots=True)
class StreamError:
    """The stream failed; text received before it stays with the reply."""

    t_ns: int
    kind: ErrorKind
    message: str
    status: int | None = None
    retry_after_s: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The user cancelled the stream."""

    t_ns: int


Event = (
    Connected
    | RequestSent
    | ResponseHeaders
    | ReasoningDelta
    | TextDelta
    | ToolCallDelta
    | Usage
    | TokenCount
    | ServerTimings
    | Finished
    | Retrying
    | Notice
    | StreamError
    | Cancelled
)

TOKEN_EVENTS = (TextDelta, ReasoningDelta, ToolCallDelta)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call assembled from its fragments."""

    index: int
    id: str | None
    name: str
    arguments: str


@dataclass(slots=True)
class Transcript:
    """What a stream produced for choice 0, folded from its events (see ``fold``)."""

    text: str = ""
    reasoning: str = ""
    refusal: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    error: StreamError | None = None
    cancelled: bool = False
    notices: list[str] = field(default_factory=list)


def fold(events: list[Event] | tuple[Event, ...]) -> Transcript:
    """Fold events into the text, reasoning, tool calls and outcome of choice 0."""
    text: list[str] = []
    reasoning: list[str] = []
    refusal: list[str] = []
    calls: dict[int, dict[str, str | None]] = {}
    out = Transcript()
    for ev in events:
        if isinstance(ev, TextDelta):
            if ev.choice == 0:
                (refusal if ev.refusal else text).append(ev.text)
        elif isinstance(ev, ReasoningDelta):
            if ev.choice == 0:
                reasoning.append(ev.text)
        elif isinstance(ev, ToolCallDelta):
            if ev.choice == 0:
                call = calls.setdefault(ev.index, {"id": None, "name": "", "arguments": ""})
                if ev.id:
                    call["id"] = ev.id
                if ev.name:
                    call["name"] = (call["name"] or "") + ev.name
                call["arguments"] = (call["arguments"] or "") + ev.arguments
        elif isinstance(ev, Finished):
            out.finish_reason = ev.reason
        elif isinstance(ev, StreamError):
            out.error = ev
        elif isinstance(ev, Cancelled):
            out.cancelled = True
        elif isinstance(ev, Notice):
            out.notices.append(ev.message)
    out.text = "".join(text)
    out.reasoning = "".join(reasoning)
    out.refusal = "".join(refusal)
    out.tool_calls = [
        ToolCall(index=i, id=c["id"], name=c["name"] or "", arguments=c["arguments"] or "")
        for i, c in sorted(calls.items())
    ]
    return out

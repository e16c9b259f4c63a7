"""Wire protocols behind the one engine (DESIGN §3): each builds its request and decodes its stream.

A protocol turns our one ``ChatRequest`` into its own path, auth headers and JSON body, and turns
its own SSE events into our events through a stateful ``Decoder``. The engine does the rest the
same way for all of them: one HTTP stack, one clock, one failure handling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from providers.capabilities import Capabilities, ChatParams
from providers.events import Event, StreamError

ProtocolName = Literal["chat", "responses", "anthropic", "gemini"]
PROTOCOLS: tuple[ProtocolName, ...] = ("chat", "responses", "anthropic", "gemini")

# Anthropic requires max_tokens; this is the default when neither the user nor config sets one.
DEFAULT_MAX_TOKENS = 4096


class Decoder(Protocol):
    """Turns the SSE events of one stream into our events; keeps the state a stream needs."""

    endpoint: str
    finish_reason: str | None  # in our words: stop, length, content_filter, tool_calls, …
    done: bool  # the protocol's own end marker arrived ([DONE], message_stop, response.completed)
    error: StreamError | None
    data_events: int

    def feed(self, event: str, data: str, t_ns: int) -> list[Event]:
        """Decode one SSE event (its ``event`` name and ``data``) stamped ``t_ns``."""
        ...


@dataclass(frozen=True, slots=True)
class BuildSettings:
    """What a body builder needs besides the messages: the user's intent and endpoint defaults."""

    params: ChatParams
    caps: Capabilities
    rejected: frozenset[str] = frozenset()
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    thinking: bool = False  # stream the model's thinking (off unless asked)
    max_tokens: int = DEFAULT_MAX_TOKENS  # used only where the protocol requires max_tokens


class WireProtocol(Protocol):
    """One wire protocol: request building, auth headers, stream decoding, model listing."""

    name: ProtocolName
    key_header: str  # where the key goes, named in 401/403 messages

    def path(self, model: str) -> str:
        """The request path under the endpoint's base URL (with any query it needs)."""
        ...

    def query(self) -> dict[str, str]:
        """Query parameters the streaming request needs (Gemini's ``alt=sse``)."""
        ...

    def auth_headers(self, key: str | None) -> dict[str, str]:
        """The headers that carry ``key`` (and protocol headers sent with or without one)."""
        ...

    def build(
        self, model: str, messages: list[dict[str, Any]], settings: BuildSettings
    ) -> tuple[dict[str, Any], list[str]]:
        """The JSON body of a streaming request and notes on what was translated."""
        ...

    def decoder(self, endpoint: str) -> Decoder:
        """A fresh decoder for one stream."""
        ...

    def model_ids(self, listing: Any) -> list[str]:
        """Model ids from the protocol's ``GET /models`` answer."""
        ...

    def auth_failure(self, status: int, body: Any) -> bool:
        """Whether a non-401/403 error answer is really a bad key (Gemini answers 400)."""
        ...


class DecoderState:
    """The fields every ``Decoder`` has, as a stream starts."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.finish_reason: str | None = None
        self.done = False
        self.error: StreamError | None = None
        self.data_events = 0


class BearerProtocol:
    """What most protocols do alike, each overridden where a protocol differs: no query, the
    key as a Bearer token, an OpenAI-shaped model listing, and only 401/403 say a bad key."""

    key_header = "Authorization"

    def query(self) -> dict[str, str]:
        return {}

    def auth_headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def model_ids(self, listing: Any) -> list[str]:
        return data_model_ids(listing)

    def auth_failure(self, status: int, body: Any) -> bool:
        return False


def with_tools_and_extra(
    body: dict[str, Any], protocol: ProtocolName, settings: BuildSettings
) -> dict[str, Any]:
    """A native body's last steps: the tools in the protocol's own form, then the endpoint's
    ``extra_body`` over everything (the user's word is last)."""
    if settings.params.tools:
        from providers.tools import request_tools

        body["tools"] = request_tools(protocol, settings.params.tools)
    if settings.extra_body:
        body.update(settings.extra_body)
    return body


def data_model_ids(listing: Any) -> list[str]:
    """Model ids from an OpenAI-shaped ``GET /models`` answer (``{"data": [{"id": …}]}``),
    which chat completions, Responses and Anthropic all give."""
    data = listing.get("data", []) if isinstance(listing, dict) else []
    return sorted(str(m["id"]) for m in data if isinstance(m, dict) and "id" in m)


def protocol_for(name: str) -> WireProtocol:
    """The protocol called ``name`` (``chat`` for anything unknown is a bug: raises)."""
    if name == "chat":
        from providers.protocols.chat import CHAT

        return CHAT
    if name == "anthropic":
        from providers.protocols.anthropic import ANTHROPIC

        return ANTHROPIC
    if name == "gemini":
        from providers.protocols.gemini import GEMINI

        return GEMINI
    if name == "responses":
        from providers.protocols.responses import RESPONSES

        return RESPONSES
    raise ValueError(f"unknown protocol {name!r} (known: {', '.join(PROTOCOLS)})")


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or OpenAI-style parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return "" if content is None else str(content)


def as_int(v: Any) -> int | None:
    """An integer JSON value, else None (booleans are not counts)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def malformed(endpoint: str, data: str, exc: Exception | None, t_ns: int) -> StreamError:
    """The error for an event whose JSON does not parse (or is not an object)."""
    snippet = data[:120] + ("…" if len(data) > 120 else "")
    import json

    if isinstance(exc, json.JSONDecodeError):
        why = f"is not valid JSON ({exc.msg} at character {exc.pos})"
    else:
        why = "is not a JSON object"
    return StreamError(
        t_ns=t_ns, kind="malformed", message=f"{endpoint} sent an event that {why}: {snippet}"
    )


def remote_error(endpoint: str, msg: str, code: str, t_ns: int) -> StreamError:
    """The error for an error event or error object inside the stream."""
    suffix = f" ({code})" if code and code not in msg else ""
    return StreamError(
        t_ns=t_ns,
        kind="remote_error",
        message=f"{endpoint} reported an error mid-stream: {msg}{suffix}",
    )


def parse_object(
    endpoint: str, data: str, t_ns: int
) -> tuple[dict[str, Any] | None, StreamError | None]:
    """The JSON object of an event's data, or the malformed-event error."""
    import json

    from providers.chunks import loads

    try:
        obj = loads(data)  # lone surrogates become U+FFFD: the text must encode as UTF-8
    except json.JSONDecodeError as exc:
        return None, malformed(endpoint, data, exc, t_ns)
    if not isinstance(obj, dict):
        return None, malformed(endpoint, data, None, t_ns)
    return obj, None

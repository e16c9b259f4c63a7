"""Per-model request quirks in one table, not in scattered ifs (DESIGN §2).

``build_body`` turns the user's intent (temperature, max tokens, JSON mode) into the request a
given endpoint and model accept. Fields a server rejected at run time are remembered per endpoint
(``Quirks``) and left out from then on.
"""

from __future__ import annotations

import fnmatch
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from providers.tools import ToolDef

MaxTokensField = Literal["max_tokens", "max_completion_tokens"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a model's request may contain."""

    max_tokens_field: MaxTokensField = "max_tokens"
    temperature: bool = True  # False: the model rejects a non-default temperature
    stream_usage: bool = True  # send stream_options.include_usage
    json_mode: bool = True
    reasoning: bool = False  # the model thinks before answering (longer first-token waits)
    images: bool = True  # the model takes images (refused before sending when False)


@dataclass(frozen=True, slots=True)
class Rule:
    """Overrides for endpoints and models matching these globs."""

    endpoint: str
    model: str
    changes: Mapping[str, Any]


# First match wins per field: rules are applied in order, later rules override earlier ones.
RULES: tuple[Rule, ...] = (
    # OpenAI reasoning models: max_completion_tokens, fixed temperature.
    Rule(
        "openai",
        "o1*",
        {"max_tokens_field": "max_completion_tokens", "temperature": False, "reasoning": True},
    ),
    Rule(
        "openai",
        "o3*",
        {"max_tokens_field": "max_completion_tokens", "temperature": False, "reasoning": True},
    ),
    Rule(
        "openai",
        "o4*",
        {"max_tokens_field": "max_completion_tokens", "temperature": False, "reasoning": True},
    ),
    Rule(
        "openai",
        "gpt-5*",
        {"max_tokens_field": "max_completion_tokens", "temperature": False, "reasoning": True},
    ),
    Rule("openai", "gpt-5*-chat*", {"temperature": True, "reasoning": False}),
    # The same models behind OpenRouter/Azure-style gateways keep their temperature rule.
    Rule("openrouter", "openai/o*", {"temperature": False, "reasoning": True}),
    Rule("openrouter", "openai/gpt-5*", {"temperature": False, "reasoning": True}),
    Rule("deepseek", "deepseek-reasoner*", {"temperature": False, "reasoning": True}),
    Rule("*", "*deepseek-r1*", {"reasoning": True}),
    Rule("*", "*qwq*", {"reasoning": True}),
    Rule("groq", "openai/gpt-oss*", {"reasoning": True}),
    # Gemini's OpenAI-compatible endpoint accepts stream_options; Mistral's rejects it.
    Rule("mistral", "*", {"stream_usage": False}),
    # Models that take no images: the bundled local ones (a text-only llama.cpp server) and
    # text-only APIs (DeepSeek's chat models, the gpt-oss open-weight models, o1-mini, o3-mini).
    Rule("local", "*", {"images": False}),
    Rule("deepseek", "*", {"images": False}),
    Rule("*", "*gpt-oss*", {"images": False}),
    Rule("openai", "o1-mini*", {"images": False}),
    Rule("openai", "o3-mini*", {"images": False}),
)


def capabilities(endpoint: str, model: str, rules: tuple[Rule, ...] = RULES) -> Capabilities:
    """The capabilities of ``endpoint/model`` from the rule table."""
    caps = Capabilities()
    for rule in rules:
        if fnmatch.fnmatchcase(endpoint, rule.endpoint) and fnmatch.fnmatchcase(model, rule.model):
            caps = replace(caps, **dict(rule.changes))
    return caps


@dataclass
class Quirks:
    """Fields each endpoint rejected at run time, learned by retrying once without them."""

    rejected: dict[str, set[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def learn(self, endpoint: str, field_name: str) -> None:
        with self._lock:
            self.rejected.setdefault(endpoint, set()).add(field_name)

    def for_endpoint(self, endpoint: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self.rejected.get(endpoint, ()))


@dataclass(frozen=True, slots=True)
class ChatParams:
    """The user's intent for one request; the capability table translates it."""

    temperature: float | None = None
    max_tokens: int | None = None
    json_mode: bool = False
    thinking: bool | None = None  # stream the model's thinking; None: the endpoint's default
    # A JSON Schema the reply must follow: sent in each protocol's structured-output form
    # (it supersedes ``json_mode``); where there is none, asked for in the system prompt.
    json_schema: dict[str, Any] | None = None
    tools: tuple[ToolDef, ...] = ()  # tools the model may call (never executed), see tools.py
    # Thinking budget in tokens where the protocol takes one (Anthropic budget_tokens, Gemini
    # thinkingBudget); None: the protocol's default. Only used when thinking is on.
    thinking_budget: int | None = None


SCHEMA_NAME = "reply"


def schema_instruction(schema: Mapping[str, Any]) -> str:
    """The system-prompt request for a reply that follows ``schema`` (no native form)."""
    return (
        "Reply with only a JSON value, no prose and no code fences, that validates against "
        "this JSON Schema:\n" + json.dumps(schema, ensure_ascii=False)
    )


def with_instruction(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """``messages`` with ``text`` appended to the system message (one is added if none)."""
    out = [dict(m) for m in messages]
    for m in out:
        if m.get("role") == "system" and isinstance(m.get("content"), str):
            m["content"] = f"{m['content']}\n\n{text}"
            return out
    return [{"role": "system", "content": text}, *out]


# Fields that can be dropped (or translated) when a server rejects them.
DROPPABLE = (
    "stream_options",
    "temperature",
    "max_completion_tokens",
    "response_format",
    "reasoning",  # Responses: a model that does not reason rejects reasoning.summary
    "thinking",  # Anthropic: a model without extended thinking rejects it
)


def build_body(
    model: str,
    messages: list[dict[str, Any]],
    params: ChatParams,
    caps: Capabilities,
    rejected: frozenset[str] = frozenset(),
    extra_body: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The JSON body for a streaming chat request, and notes on what was translated."""
    notes: list[str] = []
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    if caps.stream_usage and "stream_options" not in rejected:
        body["stream_options"] = {"include_usage": True}
    if params.temperature is not None:
        if not caps.temperature:
            notes.append(f"{model} only accepts its default temperature; not sent")
        elif "temperature" in rejected:
            notes.append("this endpoint rejected temperature earlier; not sent")
        else:
            body["temperature"] = params.temperature
    if params.max_tokens is not None:
        fld: str = caps.max_tokens_field
        if fld == "max_completion_tokens" and "max_completion_tokens" in rejected:
            fld = "max_tokens"
        body[fld] = params.max_tokens
    if params.json_schema is not None:
        if caps.json_mode and "response_format" not in rejected:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": SCHEMA_NAME, "schema": params.json_schema},
            }
        else:
            body["messages"] = with_instruction(messages, schema_instruction(params.json_schema))
            notes.append("structured output is not supported here; asked in the prompt instead")
    elif params.json_mode:
        if caps.json_mode and "response_format" not in rejected:
            body["response_format"] = {"type": "json_object"}
        else:
            notes.append("JSON mode is not supported here; asked in the prompt instead")
    if params.tools:
        from providers.tools import request_tools

        body["tools"] = request_tools("chat", params.tools)
    if extra_body:
        body.update(extra_body)
    return body, notes


def rejected_field(status: int, body_text: str, sent: Mapping[str, Any]) -> str | None:
    """Which droppable field a 400/422 answer complains about, if any."""
    if status not in (400, 422):
        return None
    low = body_text.lower()
    for name in DROPPABLE:
        if name in sent and name in low:
            return name
    return None

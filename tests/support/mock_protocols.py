"""How the mock server frames one scripted reply in each native protocol (issue 17).

The mock server's scenarios say what to send and when (tokens, reasoning, timing, failures);
a ``Framer`` says how it looks on the wire: Anthropic Messages named events, Gemini
``GenerateContentResponse`` chunks, or OpenAI Responses events. The shapes follow the recorded
streams in tests/data/sse-samples.
"""

from __future__ import annotations

import json
from typing import Any, Literal

NativeProtocol = Literal["anthropic", "gemini", "responses"]


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class Framer:
    """Frames one reply's events in a native protocol; stateful (open blocks, sequence)."""

    def __init__(self, protocol: NativeProtocol, eol: bytes, rid: str, model: str) -> None:
        self.protocol = protocol
        self.eol = eol
        self.rid = rid
        self.model = model
        self._block: str | None = None  # the open content block / output item: text or thinking
        self._index = -1
        self._seq = 0
        self._args = ""  # Gemini: a tool call's arguments so far (it sends the call whole)

    # -- helpers

    def _event(self, name: str | None, obj: dict[str, Any]) -> bytes:
        if self.protocol == "responses":
            obj = {"type": name, "sequence_number": self._seq, **obj}
            self._seq += 1
        line = b"data: " + _dumps(obj).encode()
        if name is not None:
            line = f"event: {name}".encode() + self.eol + line
        return line + self.eol * 2

    def _open(self, kind: str) -> bytes:
        """Close the open block and open one of ``kind`` (thinking or text) when it changes."""
        out = b""
        if self._block == kind:
            return out
        out += self._close()
        self._index += 1
        self._block = kind
        if self.protocol == "anthropic":
            block = (
                {"type": "thinking", "thinking": ""}
                if kind == "thinking"
                else {"type": "text", "text": ""}
            )
            out += self._event(
                "content_block_start",
                {"type": "content_block_start", "index": self._index, "content_block": block},
            )
        elif self.protocol == "responses" and kind != "tool":
            item_type = "reasoning" if kind == "thinking" else "message"
            out += self._event(
                "response.output_item.added",
                {"output_index": self._index, "item": {"id": self._item(), "type": item_type}},
            )
        return out

    def _close(self) -> bytes:
        if self._block is None:
            return b""
        out = b""
        if self.protocol == "anthropic":
            out = self._event(
                "content_block_stop", {"type": "content_block_stop", "index": self._index}
            )
        elif self.protocol == "responses":
            out = self._event(
                "response.output_item.done",
                {"output_index": self._index, "item": {"id": self._item()}},
            )
        self._block = None
        return out

    def _item(self) -> str:
        prefix = {"thinking": "rs", "tool": "fc"}.get(self._block or "", "msg")
        return f"{prefix}_{self.rid}_{self._index}"

    # -- the reply

    def start(self, usage: dict[str, Any] | None) -> bytes | None:
        """What goes out before the first token (sent at once, like a role chunk)."""
        if self.protocol == "anthropic":
            u = self._anthropic_usage(usage, final=False)
            message: dict[str, Any] = {
                "id": self.rid,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "usage": u,
            }
            if u is None:
                del message["usage"]
            return self._event(
                "message_start", {"type": "message_start", "message": message}
            ) + self._event("ping", {"type": "ping"})
        if self.protocol == "responses":
            resp = {
                "id": self.rid,
                "object": "response",
                "status": "in_progress",
                "model": self.model,
            }
            return self._event("response.created", {"response": resp}) + self._event(
                "response.in_progress", {"response": resp}
            )
        return None  # Gemini sends nothing before its first chunk

    def token(self, kind: str, text: str, usage: dict[str, Any] | None) -> bytes:
        """One token event (``kind`` is token or reasoning), with any block change before it."""
        block = "thinking" if kind == "reasoning" else "text"
        if self.protocol == "gemini":
            part: dict[str, Any] = {"text": text}
            if block == "thinking":
                part["thought"] = True
            obj: dict[str, Any] = {
                "candidates": [{"content": {"parts": [part], "role": "model"}, "index": 0}],
                "modelVersion": self.model,
                "responseId": self.rid,
            }
            if usage is not None:
                obj["usageMetadata"] = {
                    "promptTokenCount": usage["prompt_tokens"],
                    "totalTokenCount": usage["prompt_tokens"],
                }
            return self._event(None, obj)
        prefix = self._open(block)
        if self.protocol == "anthropic":
            delta = (
                {"type": "thinking_delta", "thinking": text}
                if block == "thinking"
                else {"type": "text_delta", "text": text}
            )
            return prefix + self._event(
                "content_block_delta",
                {"type": "content_block_delta", "index": self._index, "delta": delta},
            )
        name = (
            "response.reasoning_summary_text.delta"
            if block == "thinking"
            else "response.output_text.delta"
        )
        fields: dict[str, Any] = {
            "item_id": self._item(),
            "output_index": self._index,
            "delta": text,
        }
        if block == "thinking":
            fields["summary_index"] = 0
        else:
            fields["content_index"] = 0
        return prefix + self._event(name, fields)

    def tool(
        self, name: str, piece: str, first: bool, last: bool, usage: dict[str, Any] | None
    ) -> bytes:
        """One piece of a tool call's arguments (Gemini: the whole call, with the last piece)."""
        if self.protocol == "gemini":
            self._args = ("" if first else self._args) + piece
            if not last:
                return b""
            call = {"name": name, "args": json.loads(self._args or "{}")}
            obj: dict[str, Any] = {
                "candidates": [
                    {"content": {"parts": [{"functionCall": call}], "role": "model"}, "index": 0}
                ],
                "modelVersion": self.model,
                "responseId": self.rid,
            }
            return self._event(None, obj)
        prefix = b""
        if first:
            prefix = self._close()
            self._index += 1
            self._block = "tool"
            if self.protocol == "anthropic":
                block = {"type": "tool_use", "id": "toolu_mock_0", "name": name, "input": {}}
                prefix += self._event(
                    "content_block_start",
                    {"type": "content_block_start", "index": self._index, "content_block": block},
                )
            else:
                item = {
                    "id": self._item(),
                    "type": "function_call",
                    "status": "in_progress",
                    "arguments": "",
                    "call_id": "call_mock_0",
                    "name": name,
                }
                prefix += self._event(
                    "response.output_item.added", {"output_index": self._index, "item": item}
                )
        if self.protocol == "anthropic":
            delta = {"type": "input_json_delta", "partial_json": piece}
            return prefix + self._event(
                "content_block_delta",
                {"type": "content_block_delta", "index": self._index, "delta": delta},
            )
        fields = {"item_id": self._item(), "output_index": self._index, "delta": piece}
        return prefix + self._event("response.function_call_arguments.delta", fields)

    def finish(
        self, reason: str | None, usage: dict[str, Any] | None, done: bool
    ) -> list[tuple[bytes, str]]:
        """The events that end the reply, each with its log kind."""
        out: list[tuple[bytes, str]] = []
        if self.protocol == "anthropic":
            close = self._close()
            stop = {
                "stop": "end_turn",
                "length": "max_tokens",
                "tool_calls": "tool_use",
                "content_filter": "refusal",
            }
            delta: dict[str, Any] = {
                "type": "message_delta",
                "delta": {"stop_reason": stop.get(reason or "", reason), "stop_sequence": None},
            }
            u = self._anthropic_usage(usage, final=True)
            if u is not None:
                delta["usage"] = u
            if reason is not None:
                out.append((close + self._event("message_delta", delta), "finish"))
            elif close:
                out.append((close, "other"))
            if done:
                out.append((self._event("message_stop", {"type": "message_stop"}), "done"))
            return out
        if self.protocol == "gemini":
            if reason is None:
                return out
            finish = {
                "stop": "STOP",
                "tool_calls": "STOP",  # Gemini ends a function call with STOP
                "length": "MAX_TOKENS",
                "content_filter": "SAFETY",
            }
            obj: dict[str, Any] = {
                "candidates": [
                    {
                        "content": {"parts": [{"text": ""}], "role": "model"},
                        "finishReason": finish.get(reason, reason.upper()),
                        "index": 0,
                    }
                ],
                "modelVersion": self.model,
                "responseId": self.rid,
            }
            if usage is not None:
                meta = {
                    "promptTokenCount": usage["prompt_tokens"],
                    "candidatesTokenCount": usage["completion_tokens"] - _reasoning(usage),
                    "totalTokenCount": usage["total_tokens"],
                }
                if _reasoning(usage):
                    meta["thoughtsTokenCount"] = _reasoning(usage)
                cached = _cached(usage)
                if cached:
                    meta["cachedContentTokenCount"] = cached
                obj["usageMetadata"] = meta
            out.append((self._event(None, obj), "finish"))
            return out
        close = self._close()
        if reason is None:
            if close:
                out.append((close, "other"))
            return out
        resp: dict[str, Any] = {"id": self.rid, "object": "response", "model": self.model}
        if usage is not None:
            resp["usage"] = {
                "input_tokens": usage["prompt_tokens"],
                "input_tokens_details": {"cached_tokens": _cached(usage)},
                "output_tokens": usage["completion_tokens"],
                "output_tokens_details": {"reasoning_tokens": _reasoning(usage)},
                "total_tokens": usage["total_tokens"],
            }
        if reason in ("length", "content_filter"):
            why = "max_output_tokens" if reason == "length" else "content_filter"
            resp |= {"status": "incomplete", "incomplete_details": {"reason": why}}
            name = "response.incomplete"
        else:
            resp["status"] = "completed"
            name = "response.completed"
        out.append((close + self._event(name, {"response": resp}), "finish"))
        return out

    def error_event(self) -> bytes:
        """A mid-stream error in the protocol's own shape."""
        if self.protocol == "anthropic":
            err: dict[str, Any] = {"type": "overloaded_error", "message": "mock overloaded"}
            return self._event("error", {"type": "error", "error": err})
        if self.protocol == "gemini":
            err = {"code": 503, "message": "mock model overloaded", "status": "UNAVAILABLE"}
            return self._event(None, {"error": err})
        return self._event(
            "error", {"code": "server_error", "message": "mock upstream error", "param": None}
        )

    def malformed(self) -> bytes:
        """An event whose JSON is cut short."""
        name = {
            "anthropic": b"event: content_block_delta",
            "responses": b"event: response.output_text.delta",
        }
        head = name.get(self.protocol, b"")
        return (head + self.eol if head else b"") + b'data: {"type":"oops","delta":' + self.eol * 2

    # -- usage

    def _anthropic_usage(self, usage: dict[str, Any] | None, final: bool) -> dict[str, Any] | None:
        if usage is None:
            return None
        cached = _cached(usage)
        return {
            "input_tokens": usage["prompt_tokens"] - cached,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
            "output_tokens": usage["completion_tokens"] if final else 1,
        }


def _cached(usage: dict[str, Any]) -> int:
    details = usage.get("prompt_tokens_details") or {}
    return int(details.get("cached_tokens") or usage.get("prompt_cache_hit_tokens") or 0)


def _reasoning(usage: dict[str, Any]) -> int:
    details = usage.get("completion_tokens_details") or {}
    return int(details.get("reasoning_tokens") or 0)

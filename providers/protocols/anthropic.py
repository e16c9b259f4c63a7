"""Anthropic Messages: ``POST {base_url}/messages``, events ``message_start`` … ``message_stop``.

The events are told apart by their JSON ``type`` (some servers send only ``data:`` lines, no
``event:`` names). Usage: ``input_tokens`` excludes the cache, so the prompt we report is
input + cache read + cache written, with the two cache figures kept apart for cost (DESIGN §4).
"""

from __future__ import annotations

from typing import Any

from providers.attachments import wire_content
from providers.capabilities import schema_instruction
from providers.chunks import error_text
from providers.events import (
    Event,
    Notice,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from providers.protocols import (
    BearerProtocol,
    BuildSettings,
    Decoder,
    DecoderState,
    ProtocolName,
    as_int,
    parse_object,
    remote_error,
    text_of,
    with_tools_and_extra,
)

API_VERSION = "2023-06-01"
# Anthropic's smallest thinking budget.
MIN_THINKING_BUDGET = 1024

# stop_reason → our finish reason (metrics.status_of knows length / content_filter).
FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "pause_turn",
}


class AnthropicProtocol(BearerProtocol):
    """The Anthropic Messages API, natively."""

    name: ProtocolName = "anthropic"
    key_header = "x-api-key"

    def path(self, model: str) -> str:
        return "/messages"

    def auth_headers(self, key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if key:
            headers["x-api-key"] = key
        return headers

    def build(
        self, model: str, messages: list[dict[str, Any]], settings: BuildSettings
    ) -> tuple[dict[str, Any], list[str]]:
        params = settings.params
        notes: list[str] = []
        system = [text_of(m.get("content")) for m in messages if m.get("role") == "system"]
        turns = [
            {"role": m["role"], "content": wire_content("anthropic", m, m.get("content"))}
            for m in messages
            if m.get("role") in ("user", "assistant")
        ]
        max_tokens = params.max_tokens if params.max_tokens is not None else settings.max_tokens
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "messages": turns,
            "stream": True,
        }
        if system:
            body["system"] = "\n\n".join(system)
        thinking = settings.thinking if params.thinking is None else params.thinking
        if thinking and "thinking" in settings.rejected:
            notes.append("this endpoint rejected thinking earlier; not asked for")
            thinking = False
        if thinking:
            if max_tokens <= MIN_THINKING_BUDGET:
                notes.append(
                    f"thinking needs max_tokens above {MIN_THINKING_BUDGET} on Anthropic "
                    f"(it is {max_tokens}); thinking not asked for"
                )
                thinking = False
            else:
                budget = max(MIN_THINKING_BUDGET, min(max_tokens // 2, max_tokens - 1))
                if params.thinking_budget is not None:
                    # Anthropic wants MIN_THINKING_BUDGET <= budget < max_tokens.
                    asked = params.thinking_budget
                    budget = max(MIN_THINKING_BUDGET, min(asked, max_tokens - 1))
                    if budget != asked:
                        notes.append(
                            f"Anthropic's thinking budget must be from {MIN_THINKING_BUDGET} to "
                            f"max_tokens - 1 ({max_tokens - 1}); sent {budget} instead of {asked}"
                        )
                body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if params.temperature is not None:
            if thinking:
                notes.append("Anthropic does not take a temperature with thinking on; not sent")
            elif "temperature" in settings.rejected:
                notes.append("this endpoint rejected temperature earlier; not sent")
            else:
                t = params.temperature
                if t > 1.0:
                    notes.append(f"Anthropic's temperature range is 0–1; sent 1 instead of {t:g}")
                    t = 1.0
                body["temperature"] = t
        if params.json_schema is not None:
            # The Messages API has no JSON-schema reply mode outside tool use: ask in the system
            # prompt, and the reply is checked against the schema when it arrives.
            ask = schema_instruction(params.json_schema)
            body["system"] = f"{body['system']}\n\n{ask}" if body.get("system") else ask
            notes.append("structured output: Anthropic has no schema mode; asked in the prompt")
        elif params.json_mode:
            notes.append("JSON mode is not supported here; asked in the prompt instead")
        return with_tools_and_extra(body, "anthropic", settings), notes

    def decoder(self, endpoint: str) -> Decoder:
        return AnthropicDecoder(endpoint)


ANTHROPIC = AnthropicProtocol()


class AnthropicDecoder(DecoderState):
    """Anthropic's named events → our events."""

    def __init__(self, endpoint: str):
        super().__init__(endpoint)
        self._blocks: dict[int, str] = {}  # content block index → its type
        self._tool_of_block: dict[int, int] = {}  # tool_use block index → our tool index
        self._tool_args: dict[int, bool] = {}  # our tool index → any argument text seen
        self._input: dict[str, int | None] = {}
        self.signatures: list[str] = []  # thinking blocks' signatures, kept for a later turn

    def feed(self, event: str, data: str, t_ns: int) -> list[Event]:
        out: list[Event] = []
        stripped = data.strip()
        if not stripped:
            return out
        self.data_events += 1
        obj, err = parse_object(self.endpoint, stripped, t_ns)
        if err is not None:
            self.error = err
            return [err]
        assert obj is not None
        kind = obj.get("type") or event
        if kind == "error" or event == "error":
            msg, code = error_text(obj)
            self.error = remote_error(self.endpoint, msg, code, t_ns)
            return [self.error]
        if kind == "message_start":
            message = obj.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                self._input = _input_usage(usage)
                out.append(self._usage(t_ns, None))
        elif kind == "content_block_start":
            self._block_start(obj, t_ns, out)
        elif kind == "content_block_delta":
            self._block_delta(obj, t_ns, out)
        elif kind == "content_block_stop":
            index = as_int(obj.get("index"))
            tool = self._tool_of_block.get(index) if index is not None else None
            if tool is not None and not self._tool_args.get(tool):
                # A tool with no arguments streams only "": its input is the empty object.
                out.append(ToolCallDelta(t_ns=t_ns, index=tool, arguments="{}"))
        elif kind == "message_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict):
                reason = delta.get("stop_reason")
                if isinstance(reason, str) and reason:
                    self.finish_reason = FINISH.get(reason, reason)
                    if reason == "pause_turn":
                        out.append(
                            Notice(
                                t_ns=t_ns,
                                message=f"{self.endpoint} paused a long turn (pause_turn); "
                                "send the reply back to let it continue",
                            )
                        )
            usage = obj.get("usage")
            if isinstance(usage, dict):
                # Newer servers repeat the input and cache figures here; older send output only.
                newer = _input_usage(usage)
                self._input.update({k: v for k, v in newer.items() if v is not None})
                out.append(self._usage(t_ns, as_int(usage.get("output_tokens"))))
        elif kind == "message_stop":
            self.done = True
        return out  # ping and anything new are skipped

    def _usage(self, t_ns: int, output: int | None) -> Usage:
        inp = self._input.get("input")
        read = self._input.get("read")
        write = self._input.get("write")
        prompt = None if inp is None else inp + (read or 0) + (write or 0)
        return Usage(t_ns=t_ns, prompt=prompt, completion=output, cached=read, cache_write=write)

    def _block_start(self, obj: dict[str, Any], t_ns: int, out: list[Event]) -> None:
        index = as_int(obj.get("index")) or 0
        block = obj.get("content_block")
        if not isinstance(block, dict):
            return
        btype = str(block.get("type") or "")
        self._blocks[index] = btype
        if btype == "text":
            text = block.get("text")
            if isinstance(text, str) and text:
                out.append(TextDelta(t_ns=t_ns, text=text))
        elif btype == "thinking":
            text = block.get("thinking")
            if isinstance(text, str) and text:
                out.append(ReasoningDelta(t_ns=t_ns, text=text))
        elif btype in ("tool_use", "server_tool_use"):
            tool = len(self._tool_of_block)
            self._tool_of_block[index] = tool
            cid, name = block.get("id"), block.get("name")
            out.append(
                ToolCallDelta(
                    t_ns=t_ns,
                    index=tool,
                    id=cid if isinstance(cid, str) else None,
                    name=name if isinstance(name, str) else None,
                )
            )

    def _block_delta(self, obj: dict[str, Any], t_ns: int, out: list[Event]) -> None:
        index = as_int(obj.get("index")) or 0
        delta = obj.get("delta")
        if not isinstance(delta, dict):
            return
        dtype = delta.get("type")
        if dtype == "text_delta":
            text = delta.get("text")
            if isinstance(text, str) and text:
                out.append(TextDelta(t_ns=t_ns, text=text))
        elif dtype == "thinking_delta":
            text = delta.get("thinking")
            if isinstance(text, str) and text:
                out.append(ReasoningDelta(t_ns=t_ns, text=text))
        elif dtype == "signature_delta":
            sig = delta.get("signature")
            if isinstance(sig, str):
                self.signatures.append(sig)
        elif dtype == "input_json_delta":
            part = delta.get("partial_json")
            tool = self._tool_of_block.get(index)
            if tool is not None and isinstance(part, str) and part:
                self._tool_args[tool] = True
                out.append(ToolCallDelta(t_ns=t_ns, index=tool, arguments=part))


def _input_usage(usage: dict[str, Any]) -> dict[str, int | None]:
    return {
        "input": as_int(usage.get("input_tokens")),
        "read": as_int(usage.get("cache_read_input_tokens")),
        "write": as_int(usage.get("cache_creation_input_tokens")),
    }

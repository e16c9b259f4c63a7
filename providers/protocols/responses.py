"""OpenAI Responses: ``POST {base_url}/responses`` with ``stream: true`` and ``store: false``.

Events are told apart by their JSON ``type``: ``response.output_text.delta``, reasoning summary
deltas, ``response.function_call_arguments.delta``, and one of ``response.completed`` /
``response.incomplete`` / ``response.failed`` / ``error`` at the end.
"""

from __future__ import annotations

from typing import Any

from providers.attachments import wire_content
from providers.capabilities import SCHEMA_NAME
from providers.chunks import error_text
from providers.events import (
    Event,
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
    with_tools_and_extra,
)

# incomplete_details.reason → our finish reason.
INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


class ResponsesProtocol(BearerProtocol):
    """The OpenAI Responses API."""

    name: ProtocolName = "responses"

    def path(self, model: str) -> str:
        return "/responses"

    def build(
        self, model: str, messages: list[dict[str, Any]], settings: BuildSettings
    ) -> tuple[dict[str, Any], list[str]]:
        params, caps = settings.params, settings.caps
        notes: list[str] = []
        items = [
            {"role": m["role"], "content": wire_content("responses", m, m.get("content"))}
            for m in messages
            if m.get("role") in ("system", "developer", "user", "assistant")
        ]
        body: dict[str, Any] = {"model": model, "input": items, "stream": True, "store": False}
        if params.temperature is not None:
            if not caps.temperature:
                notes.append(f"{model} only accepts its default temperature; not sent")
            elif "temperature" in settings.rejected:
                notes.append("this endpoint rejected temperature earlier; not sent")
            else:
                body["temperature"] = params.temperature
        if params.max_tokens is not None:
            body["max_output_tokens"] = params.max_tokens
        thinking = settings.thinking if params.thinking is None else params.thinking
        if thinking and "reasoning" in settings.rejected:
            notes.append("this endpoint rejected reasoning earlier; no summary asked for")
        elif thinking:
            body["reasoning"] = {"summary": "auto"}
            if params.thinking_budget is not None:
                notes.append("the Responses API takes no thinking budget in tokens; not sent")
        if params.json_schema is not None:
            body["text"] = {
                "format": {"type": "json_schema", "name": SCHEMA_NAME, "schema": params.json_schema}
            }
        elif params.json_mode:
            body["text"] = {"format": {"type": "json_object"}}
        return with_tools_and_extra(body, "responses", settings), notes

    def decoder(self, endpoint: str) -> Decoder:
        return ResponsesDecoder(endpoint)


RESPONSES = ResponsesProtocol()


class ResponsesDecoder(DecoderState):
    """Responses stream events → our events."""

    def __init__(self, endpoint: str):
        super().__init__(endpoint)
        self._tools: dict[str, int] = {}  # output item id (or output_index) → our tool index
        self._summary: tuple[Any, Any] | None = None  # (item, summary_index) of the last delta

    def feed(self, event: str, data: str, t_ns: int) -> list[Event]:
        out: list[Event] = []
        stripped = data.strip()
        if not stripped or stripped == "[DONE]":
            return out
        self.data_events += 1
        obj, err = parse_object(self.endpoint, stripped, t_ns)
        if err is not None:
            self.error = err
            return [err]
        assert obj is not None
        kind = obj.get("type") or event
        if kind == "response.output_text.delta":
            text = obj.get("delta")
            if isinstance(text, str) and text:
                out.append(TextDelta(t_ns=t_ns, text=text))
        elif kind == "response.refusal.delta":
            text = obj.get("delta")
            if isinstance(text, str) and text:
                out.append(TextDelta(t_ns=t_ns, text=text, refusal=True))
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            text = obj.get("delta")
            if isinstance(text, str) and text:
                where = (obj.get("item_id"), obj.get("summary_index"))
                if self._summary is not None and where != self._summary:
                    text = "\n\n" + text  # summary parts are paragraphs of their own
                self._summary = where
                out.append(ReasoningDelta(t_ns=t_ns, text=text))
        elif kind == "response.output_item.added":
            item = obj.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                index = len(self._tools)
                self._tools[_item_key(item.get("id"), obj.get("output_index"))] = index
                cid, name = item.get("call_id"), item.get("name")
                args = item.get("arguments")
                out.append(
                    ToolCallDelta(
                        t_ns=t_ns,
                        index=index,
                        id=cid if isinstance(cid, str) else None,
                        name=name if isinstance(name, str) else None,
                        arguments=args if isinstance(args, str) else "",
                    )
                )
        elif kind == "response.function_call_arguments.delta":
            part = obj.get("delta")
            found = self._tools.get(_item_key(obj.get("item_id"), obj.get("output_index")))
            if found is None:
                found = self._tools.get(_item_key(None, obj.get("output_index")), 0)
            if isinstance(part, str) and part:
                out.append(ToolCallDelta(t_ns=t_ns, index=found, arguments=part))
        elif kind in ("response.completed", "response.incomplete"):
            resp = obj.get("response")
            resp = resp if isinstance(resp, dict) else {}
            usage = resp.get("usage")
            if isinstance(usage, dict):
                ev = _usage(usage, t_ns)
                if ev is not None:
                    out.append(ev)
            if kind == "response.completed":
                self.finish_reason = "tool_calls" if self._tools else "stop"
            else:
                details = resp.get("incomplete_details")
                reason = details.get("reason") if isinstance(details, dict) else None
                self.finish_reason = INCOMPLETE.get(str(reason), str(reason or "incomplete"))
            self.done = True
        elif kind in ("response.failed", "error"):
            target: Any = obj
            if kind == "response.failed":
                resp = obj.get("response")
                target = resp if isinstance(resp, dict) and resp.get("error") else obj
            msg, code = error_text(target)
            self.error = remote_error(self.endpoint, msg, code, t_ns)
            return [self.error]
        return out


def _item_key(item_id: Any, output_index: Any) -> str:
    return str(item_id) if isinstance(item_id, str) and item_id else f"#{output_index}"


def _usage(u: dict[str, Any], t_ns: int) -> Usage | None:
    """Responses usage; an all-zero usage (sent with some ``response.incomplete``) says nothing."""
    prompt = as_int(u.get("input_tokens"))
    completion = as_int(u.get("output_tokens"))
    if not prompt and not completion:
        return None
    pd = u.get("input_tokens_details")
    od = u.get("output_tokens_details")
    return Usage(
        t_ns=t_ns,
        prompt=prompt,
        completion=completion,
        reasoning=as_int(od.get("reasoning_tokens")) if isinstance(od, dict) else None,
        cached=as_int(pd.get("cached_tokens")) if isinstance(pd, dict) else None,
        image=as_int(pd.get("image_tokens")) if isinstance(pd, dict) else None,
    )

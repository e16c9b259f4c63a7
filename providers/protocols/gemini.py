"""Google Gemini: ``POST {base_url}/models/{model}:streamGenerateContent?alt=sse``.

Each ``data:`` event is a whole ``GenerateContentResponse``: candidate parts (text, parts with
``thought: true``, ``functionCall``), a ``finishReason`` on the last one, and ``usageMetadata``
on (nearly) every one. There is no end marker: the finish reason is the end.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from providers.attachments import wire_content
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

# finishReason → our finish reason; anything blocked for safety or policy is "filtered".
FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "content_filter",
}


def _parts(message: dict[str, Any]) -> list[Any]:
    """A message's Gemini parts: its images (``inlineData``) and its text."""
    content = wire_content("gemini", message, text_of(message.get("content")))
    return content if isinstance(content, list) else [{"text": content}]


class GeminiProtocol(BearerProtocol):
    """The Gemini API (generativelanguage), natively."""

    name: ProtocolName = "gemini"
    key_header = "x-goog-api-key"

    def path(self, model: str) -> str:
        # Model ids may come as "models/…" from the listing; the path wants them once.
        model = model.removeprefix("models/")
        return f"/models/{quote(model, safe='-._~/')}:streamGenerateContent"

    def query(self) -> dict[str, str]:
        return {"alt": "sse"}

    def auth_headers(self, key: str | None) -> dict[str, str]:
        return {"x-goog-api-key": key} if key else {}

    def build(
        self, model: str, messages: list[dict[str, Any]], settings: BuildSettings
    ) -> tuple[dict[str, Any], list[str]]:
        params = settings.params
        notes: list[str] = []
        system = [text_of(m.get("content")) for m in messages if m.get("role") == "system"]
        contents = [
            {
                "role": "model" if m.get("role") == "assistant" else "user",
                "parts": _parts(m),
            }
            for m in messages
            if m.get("role") in ("user", "assistant")
        ]
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
        config: dict[str, Any] = {}
        if params.temperature is not None:
            if "temperature" in settings.rejected:
                notes.append("this endpoint rejected temperature earlier; not sent")
            else:
                config["temperature"] = params.temperature
        if params.max_tokens is not None:
            config["maxOutputTokens"] = params.max_tokens
        thinking = settings.thinking if params.thinking is None else params.thinking
        if thinking:
            config["thinkingConfig"] = {"includeThoughts": True}
            if params.thinking_budget is not None:
                config["thinkingConfig"]["thinkingBudget"] = params.thinking_budget
        if params.json_mode or params.json_schema is not None:
            config["responseMimeType"] = "application/json"
        if params.json_schema is not None:
            # responseJsonSchema takes JSON Schema as is; responseSchema is an OpenAPI subset
            # that rejects common keywords (additionalProperties, type arrays).
            config["responseJsonSchema"] = params.json_schema
        if config:
            body["generationConfig"] = config
        return with_tools_and_extra(body, "gemini", settings), notes

    def decoder(self, endpoint: str) -> Decoder:
        return GeminiDecoder(endpoint)

    def model_ids(self, listing: Any) -> list[str]:
        models = listing.get("models", []) if isinstance(listing, dict) else []
        out: set[str] = set()
        for m in models:
            if not isinstance(m, dict) or not isinstance(m.get("name"), str):
                continue
            methods = m.get("supportedGenerationMethods")
            if isinstance(methods, list) and "generateContent" not in methods:
                continue  # embedding and other models that cannot chat
            out.add(m["name"].removeprefix("models/"))
        return sorted(out)

    def auth_failure(self, status: int, body: Any) -> bool:
        # Gemini answers a bad key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
        return status == 400 and "API_KEY_INVALID" in json.dumps(body)


GEMINI = GeminiProtocol()


class GeminiDecoder(DecoderState):
    """Gemini's ``GenerateContentResponse`` events → our events (candidate 0 is shown)."""

    def __init__(self, endpoint: str):
        super().__init__(endpoint)
        self._tools = 0
        self._last_usage: tuple[Any, ...] | None = None
        self.thought_signatures: list[str] = []  # kept for a later turn (tool calls)

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
        if event == "error" or "error" in obj:
            msg, code = error_text(obj)
            self.error = remote_error(self.endpoint, msg, code, t_ns)
            return [self.error]
        candidates = obj.get("candidates")
        reason: str | None = None
        if isinstance(candidates, list):
            for cand in candidates:
                if not isinstance(cand, dict):
                    continue
                choice = as_int(cand.get("index")) or 0
                content = cand.get("content")
                parts = content.get("parts") if isinstance(content, dict) else None
                if isinstance(parts, list):
                    for part in parts:
                        if isinstance(part, dict):
                            self._part(part, choice, t_ns, out)
                fr = cand.get("finishReason")
                if choice == 0 and isinstance(fr, str) and fr:
                    reason = fr
        feedback = obj.get("promptFeedback")
        blocked = feedback.get("blockReason") if isinstance(feedback, dict) else None
        if isinstance(blocked, str) and blocked:
            out.append(Notice(t_ns=t_ns, message=f"{self.endpoint} blocked the prompt ({blocked})"))
            self.finish_reason = "content_filter"
        usage = obj.get("usageMetadata")
        if isinstance(usage, dict):
            ev = _usage(usage, t_ns)
            key = (ev.prompt, ev.completion, ev.reasoning, ev.cached)
            if key != self._last_usage:
                self._last_usage = key
                out.append(ev)
        if reason is not None and self.finish_reason is None:
            mapped = FINISH.get(reason, reason.lower())
            if mapped == "stop" and self._tools:
                mapped = "tool_calls"
            self.finish_reason = mapped
        return out

    def _part(self, part: dict[str, Any], choice: int, t_ns: int, out: list[Event]) -> None:
        sig = part.get("thoughtSignature")
        if isinstance(sig, str) and choice == 0:
            self.thought_signatures.append(sig)
        text = part.get("text")
        if isinstance(text, str) and text:
            if part.get("thought") is True:
                out.append(ReasoningDelta(t_ns=t_ns, text=text, choice=choice))
            else:
                out.append(TextDelta(t_ns=t_ns, text=text, choice=choice))
        call = part.get("functionCall")
        if isinstance(call, dict):
            name, cid = call.get("name"), call.get("id")
            args = call.get("args")
            index = self._tools if choice == 0 else 0
            if choice == 0:
                self._tools += 1
            out.append(
                ToolCallDelta(
                    t_ns=t_ns,
                    index=index,
                    id=cid if isinstance(cid, str) else None,
                    name=name if isinstance(name, str) else None,
                    arguments=json.dumps(args if args is not None else {}, ensure_ascii=False),
                    choice=choice,
                )
            )


def _usage(u: dict[str, Any], t_ns: int) -> Usage:
    """``candidatesTokenCount`` excludes thoughts; our completion counts them (as OpenAI's)."""
    prompt = as_int(u.get("promptTokenCount"))
    answer = as_int(u.get("candidatesTokenCount"))
    thoughts = as_int(u.get("thoughtsTokenCount"))
    completion = None if answer is None and thoughts is None else (answer or 0) + (thoughts or 0)
    return Usage(
        t_ns=t_ns,
        prompt=prompt,
        completion=completion,
        reasoning=thoughts,
        cached=as_int(u.get("cachedContentTokenCount")),
        image=_modality(u.get("promptTokensDetails"), "IMAGE"),
    )


def _modality(details: Any, modality: str) -> int | None:
    """The prompt tokens of one modality from ``promptTokensDetails`` (a list of counts)."""
    if not isinstance(details, list):
        return None
    counts = [
        as_int(d.get("tokenCount"))
        for d in details
        if isinstance(d, dict) and d.get("modality") == modality
    ]
    found = [c for c in counts if c is not None]
    return sum(found) if found else None

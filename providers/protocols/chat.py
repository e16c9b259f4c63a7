"""OpenAI chat completions: ``POST {base_url}/chat/completions`` (the existing chunk parser)."""

from __future__ import annotations

from typing import Any

from providers.attachments import wire_content
from providers.capabilities import build_body
from providers.chunks import ChunkParser
from providers.protocols import BearerProtocol, BuildSettings, Decoder, ProtocolName


class ChatProtocol(BearerProtocol):
    """OpenAI chat completions, spoken by most OpenAI-compatible servers."""

    name: ProtocolName = "chat"

    def path(self, model: str) -> str:
        return "/chat/completions"

    def build(
        self, model: str, messages: list[dict[str, Any]], settings: BuildSettings
    ) -> tuple[dict[str, Any], list[str]]:
        # Images go out as content parts; a message without any keeps its plain string.
        messages = [
            {
                **{k: v for k, v in m.items() if k != "images"},
                "content": wire_content("chat", m, m.get("content") or ""),
            }
            if m.get("images")
            else m
            for m in messages
        ]
        return build_body(
            model,
            messages,
            settings.params,
            settings.caps,
            settings.rejected,
            settings.extra_body,
        )

    def decoder(self, endpoint: str) -> Decoder:
        return ChunkParser(endpoint)


CHAT = ChatProtocol()

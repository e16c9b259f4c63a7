"""One request through a fresh engine, for tests that feed it a scripted or recorded stream."""

from __future__ import annotations

from typing import Any

from providers.config import parse_config
from providers.engine import ChatRequest, Engine, collect
from providers.events import Event
from providers.keys import KeyStore


async def events_from(base_url: str, protocol: str | None = None) -> list[Event]:
    """The events of one request (endpoint ``rec``, model ``m``, prompt ``hi``) to ``base_url``,
    through an engine made for it and closed after."""
    endpoint: dict[str, Any] = {"base_url": base_url}
    if protocol is not None:
        endpoint["protocol"] = protocol
    engine = Engine(parse_config({"endpoints": {"rec": endpoint}}), KeyStore(use_keyring=False))
    try:
        return await collect(engine, ChatRequest("rec/m", ({"role": "user", "content": "hi"},)))
    finally:
        await engine.aclose()

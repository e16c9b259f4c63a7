"""Finding models: the model to start with, whether a local server answers, and the
``GET {base_url}/models`` requests of the engine (DESIGN §1: the UI never talks HTTP itself).

The UI process imports this module at start-up, so httpx is imported only inside the functions
that make a request. The control plane's listing with outcomes (``tokenrace models``, key
validation, through the openai SDK or ``protocols.listing``) stays in ``providers.control``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

from providers.config import Config, Endpoint
from providers.model_ref import ModelRef

if TYPE_CHECKING:
    import httpx

# How long the start-up probe of a local server's port waits: it runs before the first prompt.
LOOPBACK_PROBE_S = 0.4


async def get_models(
    client: httpx.AsyncClient, ep: Endpoint, headers: Mapping[str, str], timeout_s: float
) -> httpx.Response:
    """``GET {base_url}/models`` on the engine's client, with the endpoint's headers and query."""
    return await client.get(
        f"{ep.base_url}/models",
        headers={**headers, "Accept": "application/json"},
        params=dict(ep.query),
        timeout=timeout_s,
    )


async def served_model_ids(
    client: httpx.AsyncClient, ep: Endpoint, headers: Mapping[str, str]
) -> list[str]:
    """The models ``ep`` says it serves (to name them when one is not found); [] if it won't say."""
    from providers.protocols import protocol_for

    try:
        r = await get_models(client, ep, headers, 5.0)
        return protocol_for(ep.protocol).model_ids(r.json()) if r.status_code == 200 else []
    except Exception:
        return []


async def find_default_model(config: Config, probe_loopback: bool = True) -> str | None:
    """The first endpoint with a key, a local server that answers, or the bundled model."""
    from providers.keys import KeyLookupError, Keyring, KeyStore

    if config.default_model:
        return config.default_model
    store = KeyStore(Keyring(config.keyring_timeout_s))
    for ep in config.endpoints.values():
        if not ep.key_required:
            continue
        try:
            resolved = await asyncio.to_thread(store.resolve, ep)
        except KeyLookupError:
            continue
        if resolved.value:
            model = ep.models[0] if ep.models else _first_priced(ep.name)
            if model:
                return str(ModelRef(ep.name, model))
    local = config.endpoints.get("local")
    bundled = (
        str(ModelRef("local", local.models[0])) if local is not None and local.models else None
    )
    if not probe_loopback:
        return bundled
    loopback = [ep for ep in config.endpoints.values() if ep.is_loopback and not ep.managed]
    answers = await asyncio.gather(*(listens(ep.base_url) for ep in loopback))
    for ep, ok in zip(loopback, answers, strict=True):
        if ok:
            if ep.models:
                return str(ModelRef(ep.name, ep.models[0]))
            listed = await first_listed_model(ep.base_url)
            if listed:
                return str(ModelRef(ep.name, listed))
    return bundled  # the bundled local model, when tokenrace[local] is installed


def _first_priced(endpoint: str) -> str | None:
    from providers.prices import builtin_models

    refs = builtin_models(endpoint)
    return ModelRef.parse(refs[0]).model if refs else None


async def listens(base_url: str, timeout_s: float = LOOPBACK_PROBE_S) -> bool:
    """Whether something accepts a TCP connection at ``base_url``'s host and port."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _r, w = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    w.close()
    return True


async def first_listed_model(base_url: str) -> str | None:
    """The first model a local server lists at ``GET {base_url}/models``, in its order; None
    when it lists none or does not answer."""
    import httpx

    try:
        async with httpx.AsyncClient(trust_env=False, timeout=2.0) as client:
            r = await client.get(f"{base_url}/models")
            data = r.json().get("data", [])
            ids = [m["id"] for m in data if isinstance(m, dict) and "id" in m]
            return str(ids[0]) if ids else None
    except Exception:
        return None

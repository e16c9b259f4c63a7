"""Finding models: every caller of ``GET {base_url}/models`` goes through here (DESIGN §1: the
UI never talks HTTP itself).

- the model to start with, and whether a local server listens and what it lists (start-up);
- the engine's ``/models`` requests on its own client (warming a connection, naming the models
  when one is not found);
- whether a local server the engine started answers yet;
- the control plane: listing an endpoint's models with an outcome (``tokenrace models``, the
  picker) and validating a key, with the openai SDK (native protocols: ``protocols.listing``).

The UI process imports this module at start-up, so httpx and the SDK (≈0.5 s) are imported only
inside the functions that make a request, never on the streaming path (DESIGN §3). The SDK reads
``OPENAI_API_KEY``, ``OPENAI_ORG_ID`` and ``OPENAI_PROJECT_ID`` from the environment on its own;
every client here is built so that none of them reaches an endpoint that did not configure it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from providers import secrets
from providers.config import Config, Endpoint
from providers.model_ref import ModelRef

if TYPE_CHECKING:
    import httpx
    from openai import AsyncOpenAI

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


async def answers(base_url: str, timeout_s: float = 2.0) -> bool:
    """Whether the server at ``base_url`` (plain http) answers ``GET {base_url}/models`` with
    200: a local server is up once it does (its port opens before the model is loaded)."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port or 80), min(1.0, timeout_s)
        )
    except (OSError, TimeoutError):
        return False
    try:
        # HTTP/1.0, raw: polled every 0.1 s while a server starts, so no client is built.
        writer.write(f"GET {parts.path}/models HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), timeout_s)
        return status.split(b" ")[1:2] == [b"200"]
    except (OSError, TimeoutError, IndexError):
        return False
    finally:
        writer.close()


# --- the control plane -----------------------------------------------------------------------

Outcome = Literal["ok", "auth", "unreachable", "error"]


@dataclass(frozen=True, slots=True)
class ModelListing:
    """The result of asking an endpoint for its models."""

    endpoint: str
    outcome: Outcome
    models: tuple[str, ...] = ()
    message: str = ""


def _client(ep: Endpoint, key: str | None, timeout_s: float) -> AsyncOpenAI:
    from openai import AsyncOpenAI, DefaultAsyncHttpxClient

    headers: dict[str, str] = {}
    for name, value in ep.headers.items():
        if "{api_key}" in value:
            if key:
                headers[name] = value.replace("{api_key}", key)
        else:
            headers[name] = value
    client = AsyncOpenAI(
        api_key=key or "",
        base_url=ep.base_url,
        organization=None,
        project=None,
        default_headers=headers,
        default_query=dict(ep.query) or None,
        max_retries=0,
        timeout=timeout_s,
        # The SDK's client follows redirects, and its HTTP library strips only Authorization
        # when the origin changes: an ``api-key`` header, other configured headers and the
        # query went along (issue 15.3). No redirect is followed; the error says where to.
        http_client=DefaultAsyncHttpxClient(follow_redirects=False, timeout=timeout_s),
        _enforce_credentials=bool(key),
    )
    # The SDK read OPENAI_ORG_ID / OPENAI_PROJECT_ID itself; only the openai preset keeps them.
    if ep.name == "openai" and ep.preset:
        client.organization = os.environ.get("OPENAI_ORG_ID") or None
        client.project = os.environ.get("OPENAI_PROJECT_ID") or None
    else:
        client.organization = None
        client.project = None
    return client


def _auth_omitted(key: str | None) -> dict[str, Any]:
    from openai import Omit

    return {} if key else {"Authorization": Omit()}


async def list_models(ep: Endpoint, key: str | None, timeout_s: float = 10.0) -> ModelListing:
    """GET /models on ``ep``; never raises for network or HTTP errors."""
    if ep.protocol in ("anthropic", "gemini"):
        # Their own /models shapes and key headers: asked directly, not through the SDK.
        from providers.protocols.listing import list_native_models

        return await list_native_models(ep, key, timeout_s)
    import openai

    client = _client(ep, key, timeout_s)
    try:
        page = await client.models.list(extra_headers=_auth_omitted(key))
        ids = sorted({m.id for m in page.data if getattr(m, "id", None)})
        return ModelListing(ep.name, "ok", tuple(ids))
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        return ModelListing(ep.name, "auth", message=_status_text(exc))
    except openai.APITimeoutError:
        return ModelListing(ep.name, "unreachable", message=f"no answer within {timeout_s:g} s")
    except openai.APIConnectionError as exc:
        cause = exc.__cause__ or exc.__context__
        return ModelListing(
            ep.name, "unreachable", message=secrets.redact(str(cause or exc)) or "connection failed"
        )
    except openai.APIStatusError as exc:
        if 300 <= exc.status_code < 400:
            from providers.failures import redirect_message

            where = exc.response.headers.get("location")
            text = redirect_message(ep.name, exc.status_code, where, str(exc.response.url))
            return ModelListing(ep.name, "error", message=text)
        return ModelListing(ep.name, "error", message=_status_text(exc))
    except Exception as exc:  # a non-JSON or odd answer: report it, never crash the command
        return ModelListing(
            ep.name, "error", message=f"{type(exc).__name__}: {secrets.redact(str(exc))[:200]}"
        )
    finally:
        await client.close()


def _status_text(exc: Any) -> str:
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    msg = ""
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message", "") if isinstance(err, dict) else str(err)
    text = f"HTTP {status}" + (f": {msg}" if msg else "")
    return secrets.redact(text)


async def validate_key(ep: Endpoint, key: str, timeout_s: float = 10.0) -> ModelListing:
    """Check ``key`` against ``ep`` by listing its models (no tokens are spent)."""
    return await list_models(ep, key, timeout_s)

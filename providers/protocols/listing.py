"""Model listing and key validation for the native protocols (Anthropic, Gemini), over httpx.

The openai SDK serves chat and Responses endpoints (providers.discovery); Anthropic and Gemini
answer ``GET /models`` in their own shapes and want their own key headers, so they are asked
directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from providers import secrets
from providers.chunks import error_text
from providers.config import Endpoint
from providers.protocols import protocol_for

if TYPE_CHECKING:
    from providers.discovery import ModelListing

_MAX_PAGES = 10


async def list_native_models(ep: Endpoint, key: str | None, timeout_s: float) -> ModelListing:
    """``GET {base_url}/models`` with the protocol's headers, following pages; never raises."""
    from providers.discovery import ModelListing

    protocol = protocol_for(ep.protocol)
    headers = {"Accept": "application/json", "User-Agent": "tokenrace/0.1"}
    templated = False
    for name, value in ep.headers.items():
        if "{api_key}" in value:
            templated = True
            if key:
                headers[name] = value.replace("{api_key}", key)
        else:
            headers[name] = value
    headers.update(protocol.auth_headers(None if templated else key))
    ids: set[str] = set()
    params: dict[str, str] = dict(ep.query)
    params.update({"pageSize": "1000"} if ep.protocol == "gemini" else {"limit": "1000"})
    try:
        async with httpx.AsyncClient(
            timeout=timeout_s,
            verify=ep.verify,
            proxy=ep.proxy,
            trust_env=not ep.is_loopback,
            follow_redirects=False,
        ) as client:
            for _ in range(_MAX_PAGES):
                r = await client.get(f"{ep.base_url}/models", headers=headers, params=params)
                body: Any
                try:
                    body = r.json()
                except ValueError:
                    body = None
                if r.status_code in (401, 403) or protocol.auth_failure(r.status_code, body):
                    return ModelListing(ep.name, "auth", message=_status_text(r, body))
                if r.status_code != 200 or not isinstance(body, dict):
                    return ModelListing(ep.name, "error", message=_status_text(r, body))
                ids.update(protocol.model_ids(body))
                token = body.get("nextPageToken")
                if isinstance(token, str) and token:
                    params["pageToken"] = token
                elif body.get("has_more") is True and isinstance(body.get("last_id"), str):
                    params["after_id"] = body["last_id"]
                else:
                    break
    except httpx.TimeoutException:
        return ModelListing(ep.name, "unreachable", message=f"no answer within {timeout_s:g} s")
    except httpx.HTTPError as exc:
        cause = exc.__cause__ or exc.__context__
        text = secrets.redact(str(cause or exc)) or "connection failed"
        return ModelListing(ep.name, "unreachable", message=text)
    return ModelListing(ep.name, "ok", tuple(sorted(ids)))


def _status_text(r: httpx.Response, body: Any) -> str:
    msg = error_text(body)[0] if body is not None else r.text[:200]
    return secrets.redact(f"HTTP {r.status_code}" + (f": {msg}" if msg else ""))

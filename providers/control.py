"""The control plane: listing an endpoint's models and validating a key, with the openai SDK.

The SDK is imported lazily (≈0.5 s) and never on the streaming path (DESIGN §3). It reads
``OPENAI_API_KEY``, ``OPENAI_ORG_ID`` and ``OPENAI_PROJECT_ID`` from the environment on its own;
every client here is built so that none of them reaches an endpoint that did not configure it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from providers import secrets
from providers.config import Endpoint

if TYPE_CHECKING:
    from openai import AsyncOpenAI

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

"""What a failed request means: HTTP answers and transport errors mapped to ``StreamError``.

Pure: the engine reads the answer (at most a capped start of its body) and hands it here; every
message names the endpoint, says what happened and what to do, and passes ``secrets.redact``.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace as dc_replace
from typing import Any
from urllib.parse import urljoin

import httpx

from providers import secrets
from providers.capabilities import rejected_field
from providers.chunks import error_text
from providers.chunks import loads as json_loads
from providers.config import Endpoint
from providers.events import ErrorKind, Event, Retrying, StreamError
from providers.protocols import protocol_for

now_ns = time.perf_counter_ns


class Failure(Exception):
    """An attempt failed; ``retryable`` says whether another attempt may help."""

    def __init__(self, error: StreamError, retryable: bool = False, learned: str | None = None):
        # Every failure's words pass here: no key, and no base URL's userinfo, gets out.
        error = dc_replace(
            error, message=secrets.redact(error.message), detail=secrets.redact(error.detail)
        )
        super().__init__(error.message)
        self.error = error
        self.retryable = retryable
        self.learned = learned


def parse_retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` in seconds or as an HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
            # NaN and infinities are no wait at all: ignored, the usual backoff applies.
            return max(0.0, value) if math.isfinite(value) else None
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        value = float(ra)
        return max(0.0, value) if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def redirect_message(name: str, status: int, location: str | None, url: str) -> str:
    """What to say when an endpoint answers with a redirect (never followed: the request's
    key, configured headers and query would go along to whatever address it names)."""
    # The query is left out: it may carry the endpoint's configured secrets back.
    where = urljoin(url, location).split("?", 1)[0] if location else "an address it did not give"
    return secrets.redact(
        f"{name} redirected to {where} (HTTP {status}); tokenrace does not follow redirects"
        ", so credentials never reach another address: if the API moved, set the "
        "endpoint's base_url to it"
    )


def snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return secrets.redact(text[:limit] + ("…" if len(text) > limit else ""))


def fmt_s(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds >= 365 * 86400:
        return "over a year"
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.3g} s"


def redirect_failure(ep: Endpoint, status: int, location: str | None, url: str) -> Failure:
    """The failure a redirect answer means (never followed)."""
    return Failure(
        StreamError(
            t_ns=now_ns(),
            kind="redirect",
            status=status,
            message=redirect_message(ep.name, status, location, url),
        )
    )


async def http_failure(
    ep: Endpoint,
    model: str,
    status: int,
    headers: httpx.Headers,
    text: str,
    sent: Mapping[str, Any],
    served_models: Callable[[], Awaitable[list[str]]],
) -> Failure:
    """The failure an HTTP error answer means: ``text`` is the start of its body, ``sent`` the
    request body, ``served_models`` lists the endpoint's models (asked only for a 404)."""
    try:
        obj: Any = json_loads(text)
    except json.JSONDecodeError:
        obj = None
    if obj is not None:
        server_msg, code = error_text(obj)
    else:
        server_msg, code = snippet(text, 200), ""
    server_msg = secrets.redact(server_msg)
    t = now_ns()
    # Servers often repeat the status as the error's code ("429"): say it once.
    label = f"HTTP {status}" + (f" {code}" if code and code != str(status) else "")
    retry_after = parse_retry_after(headers)

    def fail(
        kind: ErrorKind, message: str, retryable: bool = False, learned: str | None = None
    ) -> Failure:
        return Failure(
            StreamError(
                t_ns=t,
                kind=kind,
                message=message,
                status=status,
                retry_after_s=retry_after,
                detail=server_msg,
            ),
            retryable=retryable,
            learned=learned,
        )

    protocol = protocol_for(ep.protocol)
    if status in (401, 403) or protocol.auth_failure(status, obj):
        env = f"set {ep.api_key_env} or " if ep.api_key_env else ""
        what = "refused access (403)" if status == 403 else "rejected the API key"
        return fail(
            "auth",
            f"{ep.name} {what} ({label}: {server_msg}); the key is sent in the "
            f"{protocol.key_header} header; {env}run `tokenrace keys set {ep.name}`",
        )
    if status == 404:
        models = await served_models()
        listing = (
            f"; it serves: {', '.join(models[:12])}" + ("…" if len(models) > 12 else "")
            if models
            else ""
        )
        return fail(
            "not_found", f"{ep.name} has no model {model!r} ({label}: {server_msg}){listing}"
        )
    if status == 429:
        quota = "insufficient_quota" in f"{code} {server_msg} {text[:2000]}"
        if quota:
            return fail(
                "quota",
                f"{ep.name}: quota exhausted ({label}: {server_msg}); "
                "check the account's billing — retrying will not help",
            )
        return fail(
            "rate_limit",
            f"{ep.name} is rate limiting this key ({label}: {server_msg})",
            retryable=True,
        )
    if status >= 500:
        return fail(
            "server", f"{ep.name} had a server error ({label}: {server_msg})", retryable=True
        )
    learned = rejected_field(status, text, sent)
    return fail(
        "bad_request",
        f"{ep.name} rejected the request ({label}: {server_msg})",
        learned=learned,
    )


def transport_failure(ep: Endpoint, exc: httpx.HTTPError, sent: bool) -> Failure:
    """The failure a transport error means; ``sent``: the whole request had left."""
    t = now_ns()
    detail = http_error_text(exc)
    if isinstance(exc, httpx.ConnectTimeout):
        return Failure(
            StreamError(
                t_ns=t,
                kind="timeout_connect",
                message=f"connecting to {ep.name} ({ep.base_url}) timed out after "
                f"{fmt_s(ep.timeouts.connect)}",
            ),
            retryable=not ep.is_loopback,
        )
    if isinstance(exc, httpx.ConnectError):
        low = detail.lower()
        if "certificate" in low or "ssl" in low:
            return Failure(
                StreamError(
                    t_ns=t,
                    kind="connect",
                    message=f"TLS with {ep.name} ({ep.base_url}) failed: {detail}; set "
                    "ca_bundle or verify in its config if it uses a private CA",
                )
            )
        if ep.is_loopback:
            return Failure(
                StreamError(
                    t_ns=t,
                    kind="connect",
                    message=f"nothing is listening at {ep.base_url} ({detail}): is the local "
                    f"{ep.name} server running?",
                )
            )
        name_error = (
            "name or service not known" in low
            or "nodename" in low
            or ("getaddrinfo" in low or "temporary failure in name resolution" in low)
        )
        if name_error:
            return Failure(
                StreamError(
                    t_ns=t,
                    kind="connect",
                    message=f"cannot resolve the host of {ep.name} ({ep.base_url}): {detail}",
                )
            )
        return Failure(
            StreamError(
                t_ns=t,
                kind="connect",
                message=f"cannot connect to {ep.name} ({ep.base_url}): {detail}",
            ),
            retryable=True,
        )
    if not sent or isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        # Dropped before any answer (often a stale pooled connection): worth another try.
        return Failure(
            StreamError(
                t_ns=t,
                kind="server",
                message=f"{ep.name} closed the connection before answering ({detail})",
            ),
            retryable=True,
        )
    return Failure(
        StreamError(t_ns=t, kind="connect", message=f"request to {ep.name} failed: {detail}")
    )


# Failures a server that died can cause: a dropped stream, a refused or reset connection.
CRASH_KINDS = frozenset({"interrupted", "connect", "server", "timeout_connect"})


def ev_may_be_a_crash(ev: Event) -> bool:
    """Whether ``ev`` may come from a dead local server (worth asking if it is alive)."""
    return (
        isinstance(ev, (StreamError, Retrying))
        and ev.kind in CRASH_KINDS
        and not (
            isinstance(ev, StreamError) and ev.status is not None  # it answered with an HTTP status
        )
    )


def http_error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return secrets.redact(text)

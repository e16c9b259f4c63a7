"""The stream engine: one code path for every endpoint (DESIGN §3, §5).

``Engine.stream`` sends one chat request and yields our events, stamped as their bytes decode.
It never raises for a failed request: every failure becomes a ``StreamError`` with a specific
message, after any text already received. Retries happen only before the first token.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from typing import Any

import httpcore
import httpx

from providers import attachments, secrets
from providers.capabilities import Quirks, capabilities
from providers.chunks import ChunkParser, error_text, well_formed
from providers.chunks import loads as json_loads
from providers.config import Config, Endpoint
from providers.discovery import get_models, served_model_ids
from providers.events import (
    TOKEN_EVENTS,
    Cancelled,
    Connected,
    Event,
    Finished,
    Notice,
    ReasoningDelta,
    RequestSent,
    ResponseHeaders,
    Retrying,
    StreamError,
    TextDelta,
    TokenCount,
    ToolCallDelta,
    Usage,
)
from providers.failures import (
    Failure,
    ev_may_be_a_crash,
    fmt_s,
    http_error_text,
    http_failure,
    redirect_failure,
    snippet,
    transport_failure,
)
from providers.keys import KeyLookupError, KeyStore, missing_key_message
from providers.local import DEFAULT_MAX_TOKENS as LOCAL_MAX_TOKENS
from providers.local import Lease, LocalError, LocalPool, count_root
from providers.model_ref import ModelRef
from providers.protocols import BuildSettings, protocol_for
from providers.request import ChatRequest, messages_for
from providers.sse import DecodeStats, EventTooLarge, SSEStream
from providers.start_gate import GATE_HOLD_S, GateTicket, StartGate
from providers.transport import JOIN_CHUNKS, LAST_WRITE_NS, AsyncioStream, make_transport

now_ns = time.perf_counter_ns

_RATE_LIMIT_PREFIXES = ("x-ratelimit-", "ratelimit-", "retry-after", "anthropic-ratelimit-")
_MAX_ERROR_BODY = 64 * 1024
_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 8.0
# A fast stream's buffered read can hold hundreds of events, which httpcore hands over without
# awaiting the socket: decoding them all in one go starves every other stream in this process,
# whose bytes then wait in the kernel and are stamped late (by 60-100 ms behind a burst of a few
# thousand tokens). So a stream yields to the loop this often while others are reading too,
# which keeps their stamps within about a millisecond, and rarely when it is alone (commands
# and the flush to the UI still get their turn). Cost: about 10% more CPU during a burst.
# The slice counts time spent decoding without a pause: a gap of more than _WAITED_NS between
# two events means the stream waited for its socket and the loop ran the others meanwhile.
# (Counting from the last yield instead made a stream at 100 tok/s yield at every event, a
# second task step per event: a fifth of the engine's CPU.)
# Each token event counts at least this much against max_reply_bytes: a server sending
# one-byte deltas must not hold millions of event objects (a hundred bytes each) under the cap.
_EVENT_BYTES = 8
_YIELD_SHARED_NS = 250_000
_YIELD_ALONE_NS = 4_000_000
_WAITED_NS = 200_000


@dataclass
class _Attempt:
    """Per-attempt state filled by the httpcore trace hook."""

    ticket: GateTicket | None
    pending: list[Event] = field(default_factory=list)
    connect_start: int | None = None
    t0: int | None = None
    attempt: int = 1

    deadline: asyncio.Timeout | None = None
    first_token_s: float = 0.0

    async def trace(self, name: str, info: Mapping[str, Any]) -> None:
        t = now_ns()
        if name == "connection.connect_tcp.started":
            self.connect_start = t
        elif name.endswith("send_request_headers.started"):
            if self.connect_start is not None:
                self.pending.append(Connected(t_ns=t, connect_ns=t - self.connect_start))
            if self.ticket is not None and not await self.ticket.arrive():
                self.pending.append(
                    Notice(
                        t_ns=now_ns(),
                        message="this request left without the others: their connections were "
                        f"not ready after {GATE_HOLD_S:g} s, so the start was not simultaneous",
                    )
                )
            LAST_WRITE_NS.set(None)
        elif name.endswith("send_request_body.complete"):
            # The moment the last request byte went to the kernel (see providers.transport);
            # this event's own time when the stamping backend was not in use (a proxy).
            t = LAST_WRITE_NS.get() or t
            self.t0 = t
            self.pending.append(RequestSent(t_ns=t, attempt=self.attempt))
            if self.deadline is not None:
                # The first-token clock starts when the request has left (t0).
                self.deadline.reschedule(asyncio.get_running_loop().time() + self.first_token_s)


class _Batch:
    """The events decoded from one read, handed to the consumer as one list."""

    __slots__ = ("_put", "events")

    def __init__(self, put: Callable[[list[Event]], None]):
        self._put = put
        self.events: list[Event] = []

    def add(self, ev: Event) -> None:
        self.events.append(ev)

    def flush(self) -> None:
        if self.events:
            self._put(self.events)
            self.events = []


@dataclass(frozen=True, slots=True)
class _End:
    """The producer finished; ``failure`` is set when the attempt may be retried."""

    failure: Failure | None = None


class Engine:
    """Streams chat requests to any configured endpoint; one warm client per endpoint."""

    def __init__(
        self,
        config: Config,
        keys: KeyStore | None = None,
        quirks: Quirks | None = None,
        local: LocalPool | None = None,
    ):
        self.config = config
        self.keys = keys or KeyStore()
        self.quirks = quirks or Quirks()
        # The local endpoint's servers; the owner (worker, or a headless command) closes it.
        self.local = local
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._reading = 0  # requests in flight (see _YIELD_SHARED_NS)

    # --- plumbing --------------------------------------------------------------------------

    def resolve(self, model_ref: str) -> tuple[Endpoint, str]:
        """The endpoint and model id of ``endpoint/model``."""
        ref = ModelRef.parse(model_ref)
        return self.config.endpoint(ref.endpoint), ref.model

    def client_for(self, ep: Endpoint) -> httpx.AsyncClient:
        """The endpoint's long-lived client (created on first use)."""
        client = self._clients.get(ep.name)
        if client is None:
            t = ep.timeouts
            # Loopback servers never go through a proxy from the environment.
            trust_env = not ep.is_loopback
            verify: bool | str | ssl.SSLContext = ep.verify
            if verify is True and ep.base_url.startswith("http://") and not ep.proxy:
                # Plain HTTP never uses TLS (no redirect is followed to another origin): a
                # context with no CA certificates, where httpx would load the whole bundle
                # (27-31 ms, a tenth of a headless ask). Any TLS through it fails closed.
                verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(
                    connect=t.connect, read=None, write=t.connect, pool=t.first_token
                ),
                transport=make_transport(
                    verify=verify,
                    proxy=ep.proxy,
                    trust_env=trust_env,
                    limits=httpx.Limits(
                        max_connections=ep.max_concurrency or 100,
                        max_keepalive_connections=20,
                        keepalive_expiry=90.0,
                    ),
                ),
                trust_env=trust_env,
                follow_redirects=False,
            )
            self._clients[ep.name] = client
        return client

    async def aclose(self) -> None:
        """Close every client."""
        clients = list(self._clients.values())
        self._clients.clear()
        for c in clients:
            await c.aclose()

    def _headers(self, ep: Endpoint, key: str | None) -> dict[str, str]:
        headers = {
            "Accept": "text/event-stream",
            "Content-Type": "application/json",
            "User-Agent": "tokenrace/0.1",
        }
        templated = False
        for name, value in ep.headers.items():
            if "{api_key}" in value:
                templated = True
                if key:
                    headers[name] = value.replace("{api_key}", key)
            else:
                headers[name] = value
        # The key goes where the endpoint's protocol wants it (Bearer, x-api-key, x-goog-api-key).
        headers.update(protocol_for(ep.protocol).auth_headers(None if templated else key))
        if ep.name == "openai" and ep.preset:
            # The OpenAI SDK's conventions, for the openai preset only: they never reach others.
            import os

            org = os.environ.get("OPENAI_ORG_ID")
            proj = os.environ.get("OPENAI_PROJECT_ID")
            if org:
                headers["OpenAI-Organization"] = org
            if proj:
                headers["OpenAI-Project"] = proj
        return headers

    def _semaphore(self, ep: Endpoint) -> asyncio.Semaphore | None:
        if ep.max_concurrency is None:
            return None
        sem = self._limits.get(ep.name)
        if sem is None:
            sem = asyncio.Semaphore(ep.max_concurrency)
            self._limits[ep.name] = sem
        return sem

    async def key_for(self, ep: Endpoint) -> str | None:
        """The endpoint's key, looked up off the event loop (keyring calls can block)."""
        resolved = await asyncio.to_thread(self.keys.resolve, ep)
        return resolved.value

    async def warm(self, model_ref: str) -> None:
        """Open a connection to the endpoint in advance (a cheap GET of /models)."""
        try:
            ep, _ = self.resolve(model_ref)
            if ep.managed:  # start the local server now, so the first prompt does not wait
                if self.local is None:
                    self.local = LocalPool()
                await self.local.warm(ep, ModelRef.parse(model_ref).model)
                return
            key = await self.key_for(ep)
            await get_models(self.client_for(ep), ep, self._headers(ep, key), ep.timeouts.connect)
        except Exception:  # warming is best effort; the real request reports real errors
            return

    # --- the stream ------------------------------------------------------------------------

    async def stream(
        self,
        request: ChatRequest,
        *,
        gate: StartGate | None = None,
        t_submit_ns: int | None = None,
    ) -> AsyncIterator[Event]:
        """Send ``request`` and yield its events; never raises for a failed request."""
        async for events in self.stream_batches(request, gate=gate, t_submit_ns=t_submit_ns):
            for ev in events:
                yield ev

    async def stream_batches(
        self,
        request: ChatRequest,
        *,
        gate: StartGate | None = None,
        t_submit_ns: int | None = None,
        sink: Callable[[list[Event]], None] | None = None,
    ) -> AsyncIterator[list[Event]]:
        """``stream``'s events a list at a time (those of one network read go together), so
        that thousands of events a second do not each pass through every layer here.

        With ``sink``, the events of the network reads are handed to it by the task that read
        them, as they are decoded, instead of being yielded: every event still goes one way or
        the other, in order, and never after this generator has ended. A queue and a step of
        the consumer's task fewer a read: 2-9% less of the engine's CPU at 4 × 2,000
        events/s (bench/engine_events.py, alternating runs). A local model's reply is yielded:
        its events are checked for its server's crash on the way."""
        ticket = gate.ticket() if gate is not None else None
        try:
            async for events in self._stream(request, ticket, t_submit_ns, sink):
                yield events
        finally:
            if ticket is not None:
                ticket.withdraw()

    async def _stream(
        self,
        request: ChatRequest,
        ticket: GateTicket | None,
        t_submit_ns: int | None,
        sink: Callable[[list[Event]], None] | None = None,
    ) -> AsyncIterator[list[Event]]:
        try:
            ep, model = self.resolve(request.model)
        except (KeyError, ValueError) as exc:
            yield [StreamError(t_ns=now_ns(), kind="config", message=str(exc).strip('"'))]
            return
        # Images a model cannot take are refused here: before a key lookup, a local server's
        # start or a byte on the wire.
        refused = attachments.refusal_for(self.config, request.model, request.messages)
        if refused is not None:
            yield [StreamError(t_ns=now_ns(), kind="config", message=refused)]
            return
        try:
            key = await self.key_for(ep)
        except KeyLookupError as exc:
            yield [
                StreamError(
                    t_ns=now_ns(), kind="keyring", message=f"{ep.name}: {secrets.redact(str(exc))}"
                )
            ]
            return
        if ep.key_required and not key:
            yield [StreamError(t_ns=now_ns(), kind="auth", message=missing_key_message(ep))]
            return

        lease: Lease | None = None
        if ep.managed:
            if self.local is None:
                self.local = LocalPool()
            try:
                lease = await self.local.lease(ep, model)
            except LocalError as exc:
                yield [StreamError(t_ns=now_ns(), kind="config", message=f"{ep.name}: {exc}")]
                return
            try:
                async for _progress in lease.ready():
                    pass  # start-up news goes to the pool's on_status (the app's notices)
            except LocalError as exc:
                lease.release()
                yield [StreamError(t_ns=now_ns(), kind="config", message=f"{ep.name}: {exc}")]
                return
            ep = dc_replace(ep, base_url=lease.base_url)
            if request.params.max_tokens is None:
                request = dc_replace(
                    request, params=dc_replace(request.params, max_tokens=LOCAL_MAX_TOKENS)
                )
        try:
            # A local server's crash is looked for in every event: they must come this way.
            direct = sink if lease is None else None
            async for events in self._stream_to(ep, model, key, request, ticket, direct):
                if lease is None:
                    yield events
                    continue
                for i, ev in enumerate(events):
                    if not ev_may_be_a_crash(ev):
                        continue
                    # A server of ours that died is reported as what it is, never retried on
                    # its dead port ("nothing is listening"); the next request starts another.
                    got_text = isinstance(ev, StreamError) and ev.kind == "interrupted"
                    crash = await lease.crash("mid-reply" if got_text else "before replying")
                    if crash is not None:
                        yield [
                            *events[:i],
                            StreamError(
                                t_ns=ev.t_ns,
                                kind="interrupted" if got_text else "server",
                                message=crash + ("\nThe text so far is kept." if got_text else ""),
                            ),
                        ]
                        return
                yield events
        finally:
            if lease is not None:
                lease.release()

    async def _stream_to(
        self,
        ep: Endpoint,
        model: str,
        key: str | None,
        request: ChatRequest,
        ticket: GateTicket | None,
        sink: Callable[[list[Event]], None] | None = None,
    ) -> AsyncIterator[list[Event]]:
        caps = capabilities(ep.name, model)
        protocol = protocol_for(ep.protocol)
        messages = [dict(m) for m in request.messages]
        attempt = 0
        retry_left = self.config.retries
        field_retry_used = False
        sem = self._semaphore(ep)
        got_token = False  # in this attempt: one that has sent a token is never retried
        deliver: Callable[[list[Event]], None] | None = None
        if sink is not None:
            to_sink = sink

            def deliver(events: list[Event]) -> None:
                nonlocal got_token
                if not got_token:
                    got_token = any(isinstance(ev, TOKEN_EVENTS) for ev in events)
                to_sink(events)

        while True:
            attempt += 1
            body, notes = protocol.build(
                model,
                messages,
                BuildSettings(
                    params=request.params,
                    caps=caps,
                    rejected=self.quirks.for_endpoint(ep.name),
                    extra_body=ep.extra_body,
                    thinking=ep.thinking,
                    max_tokens=self.config.max_tokens,
                ),
            )
            if attempt == 1:
                for note in notes:
                    yield [Notice(t_ns=now_ns(), message=note)]
            state = _Attempt(ticket=ticket if attempt == 1 else None, attempt=attempt)
            got_token = False
            try:
                if sem is not None:
                    if sem.locked():
                        # This request cannot start yet: the others at the gate must not wait
                        # for it (they may hold the very slot it waits for), and the wait is
                        # said, as it counts in the client overhead, not in TTFT.
                        if state.ticket is not None:
                            state.ticket.withdraw()
                            state.ticket = None
                        yield [
                            Notice(
                                t_ns=now_ns(),
                                message=f"{ep.name} takes {ep.max_concurrency} request"
                                f"{'s' if ep.max_concurrency != 1 else ''} at a time "
                                "(max_concurrency): this one waits for a free slot",
                            )
                        ]
                    await sem.acquire()
                try:
                    async for events in self._attempt(ep, model, key, body, state, deliver):
                        if not got_token:
                            got_token = any(isinstance(ev, TOKEN_EVENTS) for ev in events)
                        yield events
                finally:
                    if sem is not None:
                        sem.release()
                return
            except Failure as failure:
                err = failure.error
                if failure.learned and not field_retry_used and not got_token:
                    field_retry_used = True
                    self.quirks.learn(ep.name, failure.learned)
                    yield [
                        Notice(
                            t_ns=now_ns(),
                            message=f"{ep.name} rejected the {failure.learned!r} field; retried "
                            f"without it and will leave it out for this endpoint from now on",
                        )
                    ]
                    continue
                if failure.retryable and not got_token and retry_left > 0:
                    delay = err.retry_after_s
                    if delay is None:
                        base = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** (attempt - 1))
                        delay = base * (1.0 + random.random() * 0.25)
                    if delay <= self.config.max_retry_wait_s:
                        retry_left -= 1
                        yield [
                            Retrying(
                                t_ns=now_ns(),
                                attempt=attempt + 1,
                                delay_s=delay,
                                kind=err.kind,
                                message=err.message,
                            )
                        ]
                        await asyncio.sleep(delay)
                        continue
                    err = StreamError(
                        t_ns=err.t_ns,
                        kind=err.kind,
                        status=err.status,
                        retry_after_s=err.retry_after_s,
                        message=f"{err.message}; the server asks to wait {fmt_s(delay)}, longer "
                        f"than max_retry_wait ({fmt_s(self.config.max_retry_wait_s)}): "
                        "try again later",
                    )
                yield [err]
                return

    async def _attempt(
        self,
        ep: Endpoint,
        model: str,
        key: str | None,
        body: dict[str, Any],
        state: _Attempt,
        sink: Callable[[list[Event]], None] | None = None,
    ) -> AsyncIterator[list[Event]]:
        """One HTTP attempt. The socket is read by its own task, so a timeout there can never
        cancel whatever the consumer of this generator is awaiting. With ``sink``, that task
        hands it the events (see ``stream_batches``); only the attempt's end is queued, after
        them, and the task is over before this generator is."""
        queue: asyncio.Queue[list[Event] | _End] = asyncio.Queue()
        emit: Callable[[list[Event] | _End], None] = queue.put_nowait
        if sink is not None:
            put = queue.put_nowait

            def emit(item: list[Event] | _End) -> None:
                if isinstance(item, _End):
                    put(item)
                else:
                    sink(item)

        task = asyncio.create_task(self._produce(ep, model, key, body, state, emit))
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    if item.failure is not None:
                        raise item.failure
                    return
                yield item
        finally:
            if not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass

    async def _produce(
        self,
        ep: Endpoint,
        model: str,
        key: str | None,
        body: dict[str, Any],
        state: _Attempt,
        emit: Callable[[list[Event] | _End], None],
    ) -> None:
        self._reading += 1  # in flight: a stream still waiting counts as another for yielding
        out = _Batch(emit)
        try:
            await self._read(ep, model, key, body, state, out)
        except Failure as failure:
            out.flush()
            emit(_End(failure))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours: reported as an error, never raised into the UI
            import traceback

            out.add(
                StreamError(
                    t_ns=now_ns(),
                    kind="internal",
                    message=f"internal error in tokenrace while streaming from {ep.name}: "
                    f"{type(exc).__name__}: {secrets.redact(str(exc))}",
                    detail=secrets.redact(traceback.format_exc()),
                )
            )
        finally:
            self._reading -= 1
            out.flush()
        emit(_End())

    async def _read(
        self,
        ep: Endpoint,
        model: str,
        key: str | None,
        body: dict[str, Any],
        state: _Attempt,
        out: _Batch,
    ) -> None:
        client = self.client_for(ep)
        protocol = protocol_for(ep.protocol)
        url = f"{ep.base_url}{protocol.path(model)}"
        # Well-formed even if some text holds a lone surrogate (pasted, or from an old reply):
        # one bad character must never make every later request of a conversation fail.
        text = json.dumps(body, ensure_ascii=False)
        try:
            content = text.encode("utf-8")
        except UnicodeEncodeError:
            content = well_formed(text).encode("utf-8")
        headers = self._headers(ep, key)
        loop = asyncio.get_running_loop()
        timeouts = ep.timeouts
        parser = protocol.decoder(ep.name)
        stats = DecodeStats()
        got_token = False
        saw_usage = False
        reply_bytes, reply_events, cap = 0, 0, self.config.max_reply_bytes
        output: list[str] | None = [] if ep.managed else None  # text to count tokens of
        phase = "first_token"
        try:
            async with asyncio.timeout(None) as deadline:
                # Until the request has left, connect and pool timeouts apply (httpx); from t0
                # on, the trace hook arms the first-token clock.
                deadline.reschedule(loop.time() + timeouts.connect * 2 + timeouts.first_token)
                state.deadline = deadline
                state.first_token_s = timeouts.first_token
                JOIN_CHUNKS.set(True)  # this task's requests: see providers.transport
                async with client.stream(
                    "POST",
                    url,
                    content=content,
                    headers=headers,
                    params={**protocol.query(), **ep.query},
                    extensions={"trace": state.trace},
                ) as response:
                    t_hdr = now_ns()
                    for ev in state.pending:
                        out.add(ev)
                    state.pending.clear()
                    out.add(
                        ResponseHeaders(
                            t_ns=t_hdr,
                            status=response.status_code,
                            content_type=response.headers.get("content-type", ""),
                            rate_limits=tuple(
                                (k, v)
                                for k, v in response.headers.items()
                                if k.lower().startswith(_RATE_LIMIT_PREFIXES)
                            ),
                        )
                    )
                    if response.status_code >= 300:
                        raise await self._http_failure(ep, model, response, body)
                    ctype = response.headers.get("content-type", "").lower()
                    if "text/event-stream" not in ctype:
                        async for ev in self._not_sse(ep, response):
                            out.add(ev)
                        return
                    busy_since = last_done = now_ns()
                    armed_ns, rearm_ns = -math.inf, timeouts.idle / 50 * 1e9
                    sse = SSEStream(self.config.max_event_bytes, stats)
                    ended = False
                    async for t, events in _reads(response, sse):
                        now = now_ns()
                        if now - last_done > _WAITED_NS:
                            busy_since = now
                        slice_ns = _YIELD_SHARED_NS if self._reading > 1 else _YIELD_ALONE_NS
                        for name, data in events:
                            progressed = False
                            for ev in parser.feed(name, data, t):
                                cls = type(ev)
                                if cls is TextDelta or cls is ReasoningDelta:
                                    size = _utf8_len(ev.text)  # type: ignore[union-attr]
                                elif cls is ToolCallDelta:
                                    size = _reply_bytes(ev)
                                elif cls is Usage:
                                    progressed = True
                                    saw_usage = True
                                    size = -1
                                else:
                                    size = -1
                                if size >= 0:  # a token event
                                    got_token = True
                                    progressed = True
                                    reply_events += 1
                                    many = reply_events * _EVENT_BYTES > cap
                                    if reply_bytes + size > cap or many:
                                        cut = None if many else _cut_to(ev, cap - reply_bytes)
                                        if cut is not None:
                                            out.add(cut)
                                        out.add(
                                            StreamError(
                                                t_ns=t,
                                                kind="reply_cap",
                                                message=f"{ep.name}/{model}: the reply reached "
                                                f"{cap:,} bytes (max_reply_bytes; each token "
                                                f"event counts at least {_EVENT_BYTES}) and was "
                                                "cut there; the text so far is kept (raise "
                                                "[engine] max_reply_bytes for longer replies)",
                                            )
                                        )
                                        return
                                    reply_bytes += size
                                    if output is not None:
                                        output.append(getattr(ev, "text", ""))
                                out.add(ev)
                            if parser.error is not None:
                                return
                            if progressed and got_token:
                                phase = "idle"
                                # Re-armed when a fiftieth of the idle limit has passed, not at
                                # every event: a timer cancelled and pushed per event was a
                                # twentieth of the engine's time at thousands of events a second.
                                if t - armed_ns > rearm_ns:
                                    deadline.reschedule(loop.time() + timeouts.idle)
                                    armed_ns = t
                            if parser.done:
                                ended = True
                                break
                            if now_ns() - busy_since > slice_ns:
                                out.flush()
                                await asyncio.sleep(0)  # other streams read (and stamp) now
                                busy_since = now_ns()
                        out.flush()  # a read's events go to the consumer together
                        if ended:
                            break
                        last_done = now_ns()
                    if output and not saw_usage:
                        counted = await self._count_tokens(client, ep, "".join(output))
                        if counted is not None:
                            out.add(TokenCount(t_ns=now_ns(), completion=counted))
        except TimeoutError:
            for ev in state.pending:
                out.add(ev)
            if phase == "first_token":
                raise Failure(
                    StreamError(
                        t_ns=now_ns(),
                        kind="timeout_first_token",
                        message=f"{ep.name}/{model} sent no token within "
                        f"{fmt_s(timeouts.first_token)} (first-token timeout); a reasoning model "
                        "may need a longer timeouts.first_token",
                    )
                ) from None
            out.add(
                StreamError(
                    t_ns=now_ns(),
                    kind="timeout_idle",
                    message=f"{ep.name}/{model} went silent for {fmt_s(timeouts.idle)} mid-reply "
                    "(idle timeout); the text so far is kept",
                )
            )
            return
        except EventTooLarge as exc:
            out.add(
                StreamError(
                    t_ns=now_ns(),
                    kind="too_large",
                    message=f"{ep.name} sent an oversized event: {exc}",
                )
            )
            return
        except httpx.HTTPError as exc:
            for ev in state.pending:
                out.add(ev)
            if got_token or parser.data_events:
                out.add(
                    StreamError(
                        t_ns=now_ns(),
                        kind="interrupted",
                        message=f"the connection to {ep.name} dropped mid-reply "
                        f"({http_error_text(exc)}); the text so far is kept",
                    )
                )
                return
            raise transport_failure(ep, exc, sent=state.t0 is not None) from None
        if parser.error is not None:
            return
        if stats.replaced_bytes:
            out.add(
                Notice(
                    t_ns=now_ns(),
                    message=f"{ep.name} sent {stats.replaced_bytes} bytes "
                    "that are not valid UTF-8; they are shown as �",
                )
            )
        if parser.done or parser.finish_reason is not None:
            out.add(Finished(t_ns=now_ns(), reason=parser.finish_reason, done_marker=parser.done))
            return
        out.add(
            StreamError(
                t_ns=now_ns(),
                kind="interrupted",
                message=f"the stream from {ep.name} ended without a finish reason or [DONE]; "
                "the reply may be incomplete",
            )
        )

    async def _not_sse(self, ep: Endpoint, response: httpx.Response) -> AsyncIterator[Event]:
        """A 2xx answer that is not an event stream: accept a whole completion, else fail."""
        raw = await _read_capped(response)
        text = raw.decode("utf-8", errors="replace")
        ctype = response.headers.get("content-type", "") or "no content type"
        t = now_ns()
        try:
            obj = json_loads(text)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("choices"), list) and obj["choices"]:
            first = obj["choices"][0]
            msg = first.get("message") if isinstance(first, dict) else None
            content = msg.get("content") if isinstance(msg, dict) else None
            if isinstance(content, str):
                yield Notice(
                    t_ns=t,
                    message=f"{ep.name} answered without streaming; the reply "
                    "arrived whole, so TTFT equals the full response time",
                )
                yield TextDelta(t_ns=t, text=content)
                parser = ChunkParser(ep.name)
                for ev in parser.feed("", json.dumps({"usage": obj.get("usage")}), t):
                    yield ev
                reason = first.get("finish_reason") if isinstance(first, dict) else None
                yield Finished(t_ns=t, reason=reason if isinstance(reason, str) else "stop")
                return
        if isinstance(obj, (dict, list)):
            msg_text, code = error_text(obj)
            detail = f"{msg_text} ({code})" if code else msg_text
        else:
            detail = snippet(text)
        yield StreamError(
            t_ns=t,
            kind="not_sse",
            status=response.status_code,
            message=f"{ep.name} answered HTTP {response.status_code} with {ctype} instead of an "
            f"event stream: {secrets.redact(detail)[:300]}",
        )

    async def _http_failure(
        self, ep: Endpoint, model: str, response: httpx.Response, sent: Mapping[str, Any]
    ) -> Failure:
        status = response.status_code
        if 300 <= status < 400:
            # Not followed, and its body is not read.
            return redirect_failure(ep, status, response.headers.get("location"), str(response.url))
        raw = await _read_capped(response)
        return await http_failure(
            ep,
            model,
            status,
            response.headers,
            raw.decode("utf-8", errors="replace"),
            sent,
            lambda: self._list_model_ids(ep),
        )

    async def _count_tokens(self, client: httpx.AsyncClient, ep: Endpoint, text: str) -> int | None:
        """Output tokens of ``text`` by the server's own tokenizer (llama-cpp-python), without
        the BOS token it adds to any text; None when the server cannot say."""
        root = count_root(ep.base_url)
        try:
            r = await client.post(f"{root}/extras/tokenize/count", json={"input": text})
            bos = await client.post(f"{root}/extras/tokenize/count", json={"input": ""})
            return max(0, int(r.json()["count"]) - int(bos.json()["count"]))
        except Exception:  # the reply stands; its count falls back to an estimate
            return None

    async def _list_model_ids(self, ep: Endpoint) -> list[str]:
        try:
            key = await self.key_for(ep)
            client, headers = self.client_for(ep), self._headers(ep, key)
        except Exception:
            return []
        return await served_model_ids(client, ep, headers)


async def _reads(
    response: httpx.Response, sse: SSEStream
) -> AsyncIterator[tuple[int, list[tuple[str, str]]]]:
    """The SSE events of each read of ``response``'s body, with the time that read returned.

    Events are stamped when the read that carried them returned (DESIGN §4): not when their
    turn to be decoded came, which is later for every event after the first of a read. A
    chunked event stream is read straight from our socket (``AsyncioStream.read_body``): a
    step per read instead of a dozen through httpx, httpcore and h11.
    """
    network = response.extensions.get("network_stream")
    if isinstance(network, AsyncioStream) and network.body_joined():
        while True:
            try:
                raw = await network.read_body()
            except httpcore.TimeoutException as exc:
                raise httpx.ReadTimeout(str(exc)) from exc
            except httpcore.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            except httpcore.NetworkError as exc:
                raise httpx.ReadError(str(exc)) from exc
            if not raw:
                break
            yield network.read_ns, sse.feed(raw)
            if sse.too_large is not None:
                raise sse.too_large
        # The body's end (its last chunk) is h11's to read, so the connection can be reused.
        async for _ in response.aiter_raw():
            pass
    else:
        stamps = network if isinstance(network, AsyncioStream) else None
        async for raw in response.aiter_bytes():
            yield (stamps.read_ns if stamps is not None else now_ns()), sse.feed(raw)
            if sse.too_large is not None:
                raise sse.too_large
    yield now_ns(), sse.close()
    if sse.too_large is not None:
        raise sse.too_large


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def _reply_bytes(ev: Event) -> int:
    """What a token event adds to the reply, in UTF-8 bytes (``max_reply_bytes``)."""
    if isinstance(ev, ToolCallDelta):
        return _utf8_len(ev.arguments) + _utf8_len(ev.name or "")
    return _utf8_len(getattr(ev, "text", ""))


def _cut_to(ev: Event, room: int) -> Event | None:
    """The part of a text or reasoning event that fits in ``room`` bytes; None if nothing."""
    if room <= 0 or not isinstance(ev, (TextDelta, ReasoningDelta)):
        return None
    part = ev.text.encode("utf-8", "replace")[:room].decode("utf-8", "ignore")
    return dc_replace(ev, text=part) if part else None


async def _read_capped(response: httpx.Response, limit: int = _MAX_ERROR_BODY) -> bytes:
    buf = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            buf += chunk
            if len(buf) >= limit:
                break
    except httpx.HTTPError:
        pass
    return bytes(buf[:limit])


async def collect(engine: Engine, request: ChatRequest, **kwargs: Any) -> list[Event]:
    """Run one request to the end and return all its events (tests, headless commands)."""
    out: list[Event] = []
    try:
        async for ev in engine.stream(request, **kwargs):
            out.append(ev)
    except asyncio.CancelledError:
        out.append(Cancelled(t_ns=now_ns()))
        raise
    return out


__all__ = ["ChatRequest", "Engine", "StartGate", "collect", "messages_for", "now_ns"]

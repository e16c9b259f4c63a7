"""The start gate: concurrent requests of one race leave together (A/B fairness, DESIGN §4).

Each request takes a ``GateTicket``; the engine's trace hook calls ``arrive`` just before the
request's first byte. Pure asyncio, no I/O: the engine and the headless ``ask`` share it.
"""

from __future__ import annotations

import asyncio

# How long requests that are ready wait at a start gate for the others: a cold TLS handshake
# takes well under a second; a connection that hangs must not hold the ready ones for long.
GATE_HOLD_S = 2.0


class StartGate:
    """Holds concurrent requests just before their first byte, so they leave together.

    Each request takes a ticket; its trace hook calls ``arrive`` when its connection is ready
    (connected, TLS done) and it is about to write the request headers. When every ticket has
    arrived or withdrawn (failed to connect, or queued behind its endpoint's max_concurrency),
    all are released at once; or after ``timeout_s`` if one is still not ready.
    """

    def __init__(self, parties: int, timeout_s: float = GATE_HOLD_S):
        self._waiting = parties
        self._event = asyncio.Event()
        self._timeout_s = timeout_s
        if parties <= 0:
            self._event.set()

    def ticket(self) -> GateTicket:
        return GateTicket(self)

    def _leave(self) -> None:
        self._waiting -= 1
        if self._waiting <= 0:
            self._event.set()

    async def _wait(self) -> bool:
        """Wait for the others; False when they were not all ready in time."""
        if self._event.is_set():
            return True  # the last to arrive goes at once, without a trip round the event loop
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._event.wait()
        except TimeoutError:
            self._event.set()
            return False
        return True


class GateTicket:
    """One request's place at a ``StartGate``; arriving or withdrawing twice is harmless."""

    def __init__(self, gate: StartGate):
        self._gate = gate
        self._done = False

    async def arrive(self) -> bool:
        """Wait at the gate; False when it let this request go before the others were ready."""
        if not self._done:
            self._done = True
            self._gate._leave()
        return await self._gate._wait()

    def withdraw(self) -> None:
        if not self._done:
            self._done = True
            self._gate._leave()

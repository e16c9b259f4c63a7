"""The engine's paced event loop (issue 21): it reads less often only while streams pour in."""

from __future__ import annotations

import asyncio
import selectors
import socket
import time
from collections.abc import Iterator

import pytest

from providers.paced_loop import (
    FAST_WAKES,
    PACE_WINDOW_S,
    PacedSelector,
    new_event_loop,
    window_from_env,
)
from providers.transport import READ_SIZE, AsyncioBackend, AsyncioStream, small_reads

WINDOW = 0.05  # long, so that a busy host cannot blur what is asserted


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def _pour(sel: PacedSelector, a: socket.socket, b: socket.socket, n: int) -> None:
    """``n`` wakes in quick succession, each for one message."""
    for _ in range(n):
        a.send(b"x")
        assert sel.select(1.0)
        b.recv(100)


def test_a_quiet_loop_selects_at_once(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    sel = PacedSelector(WINDOW)
    sel.register(b, selectors.EVENT_READ)
    for _ in range(FAST_WAKES + 2):
        time.sleep(WINDOW * 2)  # a pause longer than the window before each message
        a.send(b"x")
        started = time.monotonic()
        assert sel.select(1.0)
        assert time.monotonic() - started < WINDOW
        b.recv(100)
    assert not sel.pouring
    assert sel.paced == 0 and sel.skipped == 0


def test_a_pouring_loop_wakes_once_a_window_and_reads_all_that_came(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    c, d = socket.socketpair()
    sel = PacedSelector(WINDOW)
    sel.register(b, selectors.EVENT_READ)
    sel.register(d, selectors.EVENT_READ)
    try:
        _pour(sel, a, b, FAST_WAKES + 1)
        assert sel.pouring
        woke = time.monotonic()
        a.send(b"1")
        # A poll within the window does not ask the kernel, though a socket is readable.
        assert sel.select(0) == []
        assert sel.skipped == 1
        c.send(b"2")
        ready = sel.select(1.0)  # would block: sleeps out the window, then reads both
        assert time.monotonic() - woke >= WINDOW * 0.9
        assert {key.fileobj for key, _ in ready} == {b, d}
        assert sel.paced == 1
    finally:
        c.close()
        d.close()


def test_pacing_keeps_timers(pair: tuple[socket.socket, socket.socket]) -> None:
    """A timer due inside the window is not slept past: the select returns at its timeout."""
    a, b = pair
    sel = PacedSelector(WINDOW * 4)
    sel.register(b, selectors.EVENT_READ)
    _pour(sel, a, b, FAST_WAKES + 1)
    started = time.monotonic()
    assert sel.select(WINDOW / 5) == []
    assert time.monotonic() - started < WINDOW * 3


def test_pouring_ends_with_the_first_slow_wake(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    sel = PacedSelector(WINDOW)
    sel.register(b, selectors.EVENT_READ)
    _pour(sel, a, b, FAST_WAKES + 1)
    assert sel.pouring
    time.sleep(WINDOW * 3)
    _pour(sel, a, b, 1)
    assert not sel.pouring


def test_the_engine_loop_is_paced_and_runs_coroutines() -> None:
    loop = new_event_loop(WINDOW)
    try:
        assert isinstance(loop._selector, PacedSelector)  # type: ignore[attr-defined]
        assert loop.run_until_complete(asyncio.sleep(0.01, result=7)) == 7
    finally:
        loop.close()


async def test_connections_read_at_most_read_size_a_call() -> None:
    """asyncio's 256 KiB a read is an mmap and munmap per read: ours ask for 64 KiB."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        assert isinstance(stream, AsyncioStream)
        transport = stream._writer.transport
        assert transport.max_size == READ_SIZE  # type: ignore[attr-defined]
        await stream.aclose()
    finally:
        server.close()
        await server.wait_closed()


def test_small_reads_leaves_other_transports_alone() -> None:
    class NoSize(asyncio.BaseTransport):
        pass

    t = NoSize()
    small_reads(t)
    assert not hasattr(t, "max_size")


@pytest.mark.parametrize(
    ("value", "window"),
    [(None, PACE_WINDOW_S), ("", PACE_WINDOW_S), ("0", 0.0), ("2.5", 0.0025)],
)
def test_the_window_comes_from_the_environment(value: str | None, window: float) -> None:
    assert window_from_env(value) == pytest.approx(window)


@pytest.mark.parametrize("value", ["fast", "-1", "500", "nan"])
def test_a_bad_window_is_said_and_the_default_kept(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert window_from_env(value) == PACE_WINDOW_S
    assert "TOKENRACE_PACE_MS" in capsys.readouterr().err

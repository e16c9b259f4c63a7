"""The engine's pipe messages (``providers.wire``): they survive a frame, and streams get theirs."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
from pathlib import Path
from typing import Any, get_args

import pytest

from providers import wire
from providers.config import parse_config
from providers.events import Event, Finished, TextDelta, TokenCount
from providers.framing import encode, read_frame
from providers.remote import EngineProcess
from providers.request import ChatRequest
from tests.support.mock_server import MockServerProcess
from tests.support.tui import mock_config

REQUEST = ChatRequest(model="mock/mock-fast", messages=({"role": "user", "content": "hi"},))

# One of every message, every field away from its default, so a ``__reduce__`` that drops or
# swaps a field cannot pass.
MESSAGES: list[object] = [
    wire.Configure(parse_config({"endpoints": {"x": {"base_url": "http://127.0.0.1:9/v1"}}})),
    wire.Start(7, REQUEST, 123_456, "g3", 2),
    wire.Cancel(7),
    wire.CancelAll(),
    wire.Warm("x/m"),
    wire.Shutdown(),
    wire.Ready(4242),
    wire.Events({1: [TextDelta(t_ns=1, text="a"), TokenCount(t_ns=2, completion=1)], 2: []}),
    wire.Done(9),
    wire.Status("loading the model", "error"),
]


def test_every_event_is_pickled_positionally() -> None:
    assert set(get_args(Event)) <= set(wire.POSITIONAL)


def test_every_message_class_is_covered() -> None:
    classes = {
        obj
        for obj in vars(wire).values()
        if isinstance(obj, type)
        and dataclasses.is_dataclass(obj)
        and obj.__module__ == wire.__name__
    }
    assert classes == {type(m) for m in MESSAGES}


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
async def test_a_message_survives_a_frame(msg: object) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(encode(msg))
    reader.feed_eof()
    got = await read_frame(reader)
    assert type(got) is type(msg)
    assert got == msg


@pytest.mark.parametrize("cls", wire.POSITIONAL, ids=lambda c: c.__name__)
def test_every_event_and_request_survives_its_positional_pickle(cls: type[Any]) -> None:
    # A distinct value in every field (dataclasses do not check types), so that a reducer
    # which drops, swaps or misses a field cannot pass.
    fields = dataclasses.fields(cls)
    ev = cls(*(f"{cls.__name__}.{f.name}" for f in fields))
    got = pickle.loads(pickle.dumps(ev, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(got) is cls
    assert got == ev
    assert [getattr(got, f.name) for f in fields] == [f"{cls.__name__}.{f.name}" for f in fields]


async def test_concurrent_streams_each_get_their_own_events_in_order(
    mock_server: MockServerProcess, tmp_path: Path
) -> None:
    proc = EngineProcess(mock_config(mock_server), log_path=tmp_path / "engine.log")
    try:
        fast = ChatRequest(model="mock/mock-fast", messages=({"role": "user", "content": "a"},))
        slow = ChatRequest(model="mock/mock-slow", messages=({"role": "user", "content": "b"},))
        handles = await proc.submit_many([fast, slow])
        for handle in handles:
            while await asyncio.wait_for(handle.next_batch(), 30) is not None:
                pass
        for handle, n_tokens in zip(handles, (100, 50), strict=True):
            assert handle.done
            assert isinstance(handle.events[-1], Finished), handle.events[-3:]
            stamps = [ev.t_ns for ev in handle.events]
            assert stamps == sorted(stamps)
            assert sum(isinstance(ev, TextDelta) for ev in handle.events) == n_tokens
        assert proc.active == 0
    finally:
        await proc.close()


class _Piped:
    """A worker whose output is frames already in the pipe."""

    def __init__(self, frames: list[bytes]) -> None:
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = asyncio.StreamReader()
        for frame in frames:
            self.stdout.feed_data(frame)
        self.stdout.feed_eof()
        self.returncode: int | None = 0

    async def wait(self) -> int:
        return 0

    def kill(self) -> None:
        pass

    def terminate(self) -> None:
        pass


async def test_a_stream_s_end_is_read_before_the_frames_behind_it() -> None:
    """Frames already in the pipe are handed out without a turn of the loop between them, and
    the consumers then run in the order they started waiting: the stream that ended in the
    first frame was read last, after another stream's batches of every later frame (the pane
    that ended first drew its end last). Its end now reaches its consumer before the frames
    behind it are handed out."""
    from providers.remote import StreamHandle

    config = parse_config({"endpoints": {"x": {"base_url": "http://127.0.0.1:9/v1"}}})
    proc = EngineProcess(config)
    proc._closing = True  # (the fake worker's end is not a death to report)
    a, b = StreamHandle(1), StreamHandle(2)
    proc._streams = {1: a, 2: b}
    frames = [
        encode(
            wire.Events({1: [TextDelta(1, "a1")], 2: [TextDelta(2, "b1"), Finished(3, "stop")]})
        ),
        *(encode(wire.Events({1: [TextDelta(4 + i, f"a{i + 2}")]})) for i in range(3)),
        encode(wire.Events({1: [Finished(9, "stop")]})),
    ]
    ended: list[int] = []  # streams, in the order their consumers read their ends

    async def consume(handle: StreamHandle) -> None:
        while (batch := await handle.next_batch()) is not None:
            if any(isinstance(ev, Finished) for ev in batch):
                ended.append(handle.sid)
                return

    consumers = [asyncio.create_task(consume(a)), asyncio.create_task(consume(b))]
    await asyncio.sleep(0)  # both waiting, a first
    await proc._read_loop(_Piped(frames))
    await asyncio.wait_for(asyncio.gather(*consumers), 5)
    assert ended == [2, 1]
    assert [ev.text for ev in a.events if isinstance(ev, TextDelta)] == ["a1", "a2", "a3", "a4"]

"""Frames on the pipe between the UI and the engine process: a 4-byte length and a pickle.

Kept apart from the engine so that the UI process can talk to the engine without importing
httpx (it never makes a request itself).
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import IO, Any

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024


def encode(obj: Any) -> bytes:
    """One frame: a 4-byte length and a pickle."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader, counts: list[int] | None = None) -> Any:
    """The next frame's object; raises ``asyncio.IncompleteReadError`` at EOF. ``counts``
    (frames, bytes) adds this frame (the pipe's traffic, for the benchmarks)."""
    head = await reader.readexactly(HEADER.size)
    (size,) = HEADER.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is larger than the cap")
    if counts is not None:
        counts[0] += 1
        counts[1] += HEADER.size + size
    return pickle.loads(await reader.readexactly(size))


async def pipe_streams(
    read_pipe: IO[bytes], write_pipe: IO[bytes], limit: int = MAX_FRAME
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams of the running loop on two pipes: frames are read from ``read_pipe`` and
    written to ``write_pipe`` (the engine's stdin and stdout, from either side)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), read_pipe)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, write_pipe
    )
    return reader, asyncio.StreamWriter(transport, protocol, None, loop)

"""Pickling cost of the engine's pipe messages: the old tuples against ``providers.wire``.

Run: ``python bench/wire_pickle.py``. Prints microseconds per message (dumps + loads) for event
batches of a few sizes (streams x events per flush) and for the small commands.
"""

from __future__ import annotations

import copyreg
import pickle
import timeit
from collections.abc import Iterator
from contextlib import contextmanager

from providers.events import Event, TextDelta
from providers.request import ChatRequest
from providers.wire import POSITIONAL, Done, Events, Start

P = pickle.HIGHEST_PROTOCOL


def _events(n: int, sid: int) -> list[Event]:
    out: list[Event] = []
    for i in range(n):
        out.append(TextDelta(t_ns=10**12 + i * 1000 + sid, text=f" tok{i}"))
    return out


@contextmanager
def _old_event_pickling() -> Iterator[None]:
    """Events and requests pickled as before ``providers.wire`` registered its reducers."""
    saved = {cls: copyreg.dispatch_table.pop(cls) for cls in POSITIONAL}
    try:
        yield
    finally:
        copyreg.dispatch_table.update(saved)


def _old(msg: object, number: int) -> float:
    with _old_event_pickling():
        return _cost(msg, number)


def _cost(msg: object, number: int) -> float:
    """Microseconds for one dumps + loads of ``msg``."""
    # The best of several runs: the machine is shared, and noise only ever adds time.
    runs = timeit.repeat(
        lambda: pickle.loads(pickle.dumps(msg, protocol=P)), number=number, repeat=7
    )
    return min(runs) / number * 1e6


def main() -> None:
    print(f"{'message':<34}{'old µs':>9}{'new µs':>9}{'old B':>8}{'new B':>8}")
    for streams, per in ((1, 1), (1, 20), (4, 10), (4, 100), (8, 400)):
        by = {sid: _events(per, sid) for sid in range(1, streams + 1)}
        flat = [(sid, ev) for i in range(per) for sid in by for ev in (by[sid][i],)]
        old: object = ("events", flat)
        new: object = Events(by)
        n = max(20, 40_000 // (streams * per))
        row = f"events {streams} streams x {per}"
        print(
            f"{row:<34}{_old(old, n):>9.2f}{_cost(new, n):>9.2f}"
            f"{len(pickle.dumps(old, protocol=P)):>8}{len(pickle.dumps(new, protocol=P)):>8}"
        )
    req = ChatRequest(model="local/m", messages=({"role": "user", "content": "hi"},))
    for name, old, new in (
        ("done", ("done", 7), Done(7)),
        ("start", ("start", 7, req, 123, "g1", 2), Start(7, req, 123, "g1", 2)),
    ):
        print(
            f"{name:<34}{_old(old, 10_000):>9.2f}{_cost(new, 10_000):>9.2f}"
            f"{len(pickle.dumps(old, protocol=P)):>8}{len(pickle.dumps(new, protocol=P)):>8}"
        )


if __name__ == "__main__":
    main()

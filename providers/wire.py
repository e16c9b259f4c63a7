"""The messages on the pipe between the UI and the engine process, one frozen dataclass each.

``providers.remote`` (the UI's side) sends ``ToEngine`` messages and reads ``FromEngine`` ones;
``providers.worker`` (the engine's side) does the opposite. Both handle them with ``match``, so
a message with a missing or misplaced field is a type error rather than a silent ``msg[2]``.

A batch of events crosses the pipe hundreds of times a second, so ``Events`` carries each
stream's events as one list (grouped by the engine as they come): one small int per stream
instead of a ``(sid, event)`` tuple per event, which pickles in less time than the old tuples.
Like ``framing``, this module imports no httpx: the UI process loads it.
"""

from __future__ import annotations

import copyreg
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, get_args

from providers.capabilities import ChatParams
from providers.config import Config
from providers.events import Event
from providers.request import ChatRequest

# UI → engine ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Configure:
    """Use this config from now on (sent first, and again after the user edits endpoints)."""

    config: Config

    def __reduce__(self) -> tuple[type[Configure], tuple[Any, ...]]:
        return (Configure, (self.config,))


@dataclass(frozen=True, slots=True)
class Start:
    """Start stream ``sid``; the ``gate_size`` requests sharing ``gate_key`` leave together."""

    sid: int
    request: ChatRequest
    t_submit_ns: int
    gate_key: str | None = None
    gate_size: int = 1

    def __reduce__(self) -> tuple[type[Start], tuple[Any, ...]]:
        return (Start, (self.sid, self.request, self.t_submit_ns, self.gate_key, self.gate_size))


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel stream ``sid``; it ends with ``Cancelled``."""

    sid: int

    def __reduce__(self) -> tuple[type[Cancel], tuple[Any, ...]]:
        return (Cancel, (self.sid,))


@dataclass(frozen=True, slots=True)
class CancelAll:
    """Cancel every running stream."""

    def __reduce__(self) -> tuple[type[CancelAll], tuple[Any, ...]]:
        return (CancelAll, ())


@dataclass(frozen=True, slots=True)
class Warm:
    """Open a connection to the model's endpoint (start the local server) in advance."""

    model_ref: str

    def __reduce__(self) -> tuple[type[Warm], tuple[Any, ...]]:
        return (Warm, (self.model_ref,))


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Cancel everything, close the clients and exit."""

    def __reduce__(self) -> tuple[type[Shutdown], tuple[Any, ...]]:
        return (Shutdown, ())


ToEngine = Configure | Start | Cancel | CancelAll | Warm | Shutdown

# engine → UI ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    """The engine process is up and reads commands."""

    pid: int

    def __reduce__(self) -> tuple[type[Ready], tuple[Any, ...]]:
        return (Ready, (self.pid,))


@dataclass(frozen=True, slots=True)
class Events:
    """Events flushed together: each stream's, in the order they were stamped."""

    by_stream: dict[int, list[Event]]

    def __reduce__(self) -> tuple[type[Events], tuple[Any, ...]]:
        return (Events, (self.by_stream,))


@dataclass(frozen=True, slots=True)
class Done:
    """Stream ``sid`` is over: no more events for it."""

    sid: int

    def __reduce__(self) -> tuple[type[Done], tuple[Any, ...]]:
        return (Done, (self.sid,))


@dataclass(frozen=True, slots=True)
class Status:
    """The local model's start-up news; ``level`` is "info" or "error"."""

    text: str
    level: str

    def __reduce__(self) -> tuple[type[Status], tuple[Any, ...]]:
        return (Status, (self.text, self.level))


FromEngine = Ready | Events | Done | Status


def _positional_reducer(cls: type[Any]) -> Callable[[Any], tuple[type[Any], tuple[Any, ...]]]:
    """Pickle ``cls`` as ``cls(*fields)``: a C attrgetter instead of the slots dataclass's
    Python-level ``__getstate__``/``__setstate__``, which cost more than twice as much."""
    fields = dataclasses.fields(cls)
    # cls(*values) must rebuild the instance: every field is a positional ``__init__`` argument.
    assert all(f.init and not f.kw_only for f in fields), cls
    if len(fields) == 1:
        name = fields[0].name
        return lambda obj: (cls, (getattr(obj, name),))
    get = attrgetter(*(f.name for f in fields))
    return lambda obj: (cls, get(obj))


# Events make up nearly all of the pipe's traffic (thousands a second in a race); pickling
# them positionally halves what a batch costs at both ends, and a request's start likewise.
# Registered in both processes, as each imports this module.
POSITIONAL: tuple[type[Any], ...] = (*get_args(Event), ChatRequest, ChatParams)
for _cls in POSITIONAL:
    copyreg.pickle(_cls, _positional_reducer(_cls))

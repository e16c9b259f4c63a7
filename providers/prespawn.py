"""The engine's worker process, started as soon as the command line knows it runs the UI.

A usable chat screen needs two things: the UI's first frame, and the engine process ready to
take a request. Started after the first frame, as it was, the engine's own start-up (an
interpreter and about 300 ms of imports: asyncio, httpx, the config's types) came after the
UI's, one after the other. Started here, before the UI imports Textual, the two start side by
side on two cores, and the UI adopts the process once its first frame is out
(``EngineProcess``), as it used to start one then. Only ``subprocess`` is imported here: the
worker starts before anything else the UI needs. On a single core the two start-ups could only
take turns, and the UI's first frame would wait for the engine's imports: there the worker is
started after the first frame, as before.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

WORKER = ("-m", "providers.worker")


def worker_env() -> dict[str, str]:
    """The worker's environment: the UI's, with unbuffered output."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def open_log(log_path: Path | None) -> IO[bytes] | None:
    """The engine's log (its stderr), appended to; None when it cannot be opened."""
    if log_path is None:
        return None
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        return open(log_path, "ab")  # handed to the child, closed by the caller
    except OSError:
        return None


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on every platform
        return os.cpu_count() or 1


def spawn(log_path: Path | None) -> subprocess.Popen[bytes] | None:
    """Start a worker with frames on its stdin/stdout; None on a single core, or when it cannot
    be started (the UI then starts one itself after its first frame, and reports why if that
    fails too)."""
    if cores() < 2:
        return None
    log = open_log(log_path)
    try:
        return subprocess.Popen(
            [sys.executable, *WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log if log is not None else subprocess.DEVNULL,
            env=worker_env(),
        )
    except OSError:
        return None
    finally:
        if log is not None:
            log.close()


def discard(proc: subprocess.Popen[bytes] | None, wait_s: float = 2.0) -> None:
    """Stop a worker nobody adopted (the UI ended before its first frame, or refused to
    start, or it died first): its stdin closes, which ends it; terminated if it does not end
    in ``wait_s``. Its pipes are closed either way."""
    if proc is None:
        return
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    if proc.poll() is None:
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait_s)
    if proc.stdout is not None:
        proc.stdout.close()

"""Start the engine process early, so that its imports run while the UI imports and draws.

The command line calls ``prestart`` before it imports textual: the engine's ~0.3 s of imports
then run on the other core, instead of after the UI's first frame. ``EngineProcess`` adopts the
process when it starts the engine (``providers.remote``); one that was never adopted (the app
ended first) is stopped by ``discard``. Kept apart from ``providers.remote``, whose imports
(asyncio, the config) would cost ~0.1 s before the process exists; this module imports only
what ``subprocess`` needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO


def engine_command() -> list[str]:
    """How the engine process is started (the same early or late)."""
    return [sys.executable, "-m", "providers.worker"]


# The engine runs in a session of its own. Where the kernel shares CPU time out by session
# (autogroup, on by default on many Linux desktops), it then has a share of its own instead of
# taking half of the UI's: on a busy 2-core host, with the engine started early, the UI's first
# frame came later in 9 pairs of 9 with the engine in the UI's session (bench/README.md). It
# needs nothing from the terminal: it ignores Ctrl+C and hang-ups, ends with its stdin, and the
# kernel stops it if the UI dies (pdeathsig).
NEW_SESSION = True


def engine_env() -> dict[str, str]:
    """The engine process's environment: ours, unbuffered."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def open_log(path: Path | None) -> IO[bytes] | None:
    """The engine's log, opened to append its stderr; None without one or if it cannot open."""
    if path is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "ab")  # handed to the child as its stderr; the caller closes it
    except OSError:
        return None


class Prestarted:
    """An engine process started before the UI, for one ``EngineProcess`` to adopt, once."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path | None) -> None:
        self.proc = proc
        self.log_path = log_path  # where its stderr goes (and a restarted engine's)
        self.taken = False

    def take(self) -> subprocess.Popen[bytes] | None:
        """The process to adopt: once, and only if it still runs (None: start another)."""
        if self.taken:
            return None
        self.taken = True
        if self.proc.poll() is not None:
            self._close_pipes()
            return None
        return self.proc

    def discard(self) -> None:
        """Stop the process unless it was adopted (the app ended first); safe to repeat."""
        if self.taken:
            return
        self.taken = True
        # Not configured yet, so it holds nothing (no stream, no local server): kill it.
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def prestart(log_path: Path | None) -> Prestarted | None:
    """Start the engine process now; None if it cannot start (the app then tries again)."""
    if sys.platform == "win32":
        return None  # asyncio reads a child's pipes there only when it made them (overlapped)
    log = open_log(log_path)
    try:
        proc = subprocess.Popen(
            engine_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log if log is not None else subprocess.DEVNULL,
            env=engine_env(),
            bufsize=0,
            start_new_session=NEW_SESSION,
        )
    except OSError:
        return None
    finally:
        if log is not None:
            log.close()
    return Prestarted(proc, log_path)

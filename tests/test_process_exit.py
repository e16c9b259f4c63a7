"""The app's process always ends: a thread left behind by a terminal that went away, or a
shutdown stuck on it, never keeps tokenrace alive (both were seen: leftover processes at 40% of
a core after a closed tmux window, and one parked in Textual's writer thread)."""

from __future__ import annotations

import subprocess
import time

from tests.support.cli import run_python

STUCK_THREAD = """
import threading, time
from tui.textual_private import exit_if_threads_linger
threading.Thread(target=lambda: time.sleep(3600), name="textual-input").start()
print("ended", flush=True)
exit_if_threads_linger(7, wait_s=0.2)
"""

STUCK_SHUTDOWN = """
import threading, time
from tui.app import _exit_after
threading.Thread(target=_exit_after, args=(0.2, 129), daemon=True).start()
threading.Event().wait()  # the main thread blocked, as in a shutdown that cannot finish
"""

CLEAN = """
import threading
from tui.textual_private import exit_if_threads_linger
t = threading.Thread(target=lambda: None)
t.start()
exit_if_threads_linger(0, wait_s=5)
print("returned", flush=True)
"""


def _run(code: str) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    r = run_python(code)
    return r, time.monotonic() - start


def test_a_lingering_thread_does_not_keep_the_process_alive() -> None:
    r, took = _run(STUCK_THREAD)
    assert r.returncode == 7, r.stderr
    assert r.stdout == "ended\n"  # what was printed before is flushed, not lost
    assert took < 30


def test_a_stuck_shutdown_after_a_stop_signal_is_cut_short() -> None:
    r, took = _run(STUCK_SHUTDOWN)
    assert r.returncode == 129, r.stderr
    assert took < 30


def test_threads_that_end_are_waited_for_and_nothing_is_forced() -> None:
    r, _ = _run(CLEAN)
    assert r.returncode == 0 and r.stdout == "returned\n", r.stderr

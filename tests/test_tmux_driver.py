"""The one tmux driver (bench/common.py ``Tmux``) in the mode bench/rival.py measures with: the
command as the pane's process with exactly the given environment, read by a control client."""

from __future__ import annotations

import os
import shutil
import signal
import time

import psutil
import pytest

from bench.common import Tmux

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="the driver needs tmux")


def test_exact_env_pane_with_a_control_client() -> None:
    env = {"PATH": os.environ["PATH"], "MARK": "only-this"}
    tmux = Tmux(
        ["sh", "-c", "echo MARK=$MARK HOME=${HOME:-unset}; exec sleep 60"],
        env,
        60,
        12,
        exact_env=True,
        control=True,
    )
    try:
        tmux.wait_for(r"MARK=only-this HOME=unset", 10, 0.02)
        assert not tmux.dead()
        pid = tmux.pane_pid()
        assert psutil.Process(pid).name() == "sleep"
        assert tmux.cpu_seconds() is not None
        assert tmux.bench_cpu_seconds([]) > 0
        os.kill(pid, signal.SIGTERM)
        # tmux marks the pane dead at once, but writes its "Pane is dead" line (clearing
        # what the pane showed) only when it gets to it: in 1 run in 10 under load (30 runs
        # here), 10 s after the pane was dead (``pane_dead`` 1, the process a zombie) the line
        # was still not written and the pane still showed its text. What the driver reads is
        # the state, and remain-on-exit keeps the pane to read: the one or the other is on it.
        deadline = time.monotonic() + 10
        while not tmux.dead() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tmux.dead()
        screen = tmux.screen()
        assert "MARK=only-this HOME=unset" in screen or "Pane is dead" in screen, screen
    finally:
        tmux.close()
    tmux.close()  # idempotent
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

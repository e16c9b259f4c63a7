"""The one tmux driver (bench/common.py ``Tmux``) in the mode bench/rival.py measures with: the
command as the pane's process with exactly the given environment, read by a control client."""

from __future__ import annotations

import os
import shutil
import signal

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
        tmux.wait_for(r"Pane is dead", 10, 0.02)  # remain-on-exit keeps the pane to read
        assert tmux.dead()
    finally:
        tmux.close()
    tmux.close()  # idempotent
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

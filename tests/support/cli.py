"""Run the real ``tokenrace`` command in a subprocess, the way a user or script would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def terminal_env(home: Path) -> dict[str, str]:
    """The app's whole environment in a terminal of the tests' own (tmux): its home, and a
    keyring in a file."""
    return {
        "TOKENRACE_HOME": str(home),
        "TERM": "xterm-256color",
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO)),
        "PYTHON_KEYRING_BACKEND": "tests.support.fake_keyring.FileKeyring",
        "TOKENRACE_FAKE_KEYRING": str(home / "keyring.json"),
    }


def run_cli(
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """``tokenrace ARGS…`` with the test's environment (isolated home, fake keyring)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        env=full_env,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


def run_python(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``python -c code`` from the repository, with the test's environment."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )

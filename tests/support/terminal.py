"""A real terminal for end-to-end tests: the app in tmux, typed into the way a person types.

tmux runs on a private server (``-L``) with its default configuration (``-f /dev/null``), so
``TERM=screen`` in the pane, the ``C-b`` prefix and a 500 ms ``escape-time`` are all in force.
A tmux client is attached through a pseudo-terminal the test owns: bytes written with
:meth:`RealTerminal.type` are what a terminal emulator would send for a key press (``b"\\x1bg"``
for Alt+G in xterm, ``b"\\x1b[103;3u"`` under the kitty keyboard protocol), and tmux parses them
as it parses a person's keys before passing them to the app. :meth:`RealTerminal.paste` loads a
tmux buffer and pastes it bracketed (``paste-buffer -p``), byte for byte. The screen is read
with ``capture-pane``.

Other tests can use it as is: ``RealTerminal.app(home, "-m", "mock/mock-fast")`` starts the app
from this checkout on the shared venv's Python with ``TOKENRACE_HOME`` set.
"""

from __future__ import annotations

import builtins
import fcntl
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType

from tests.support.cli import REPO

TMUX = shutil.which("tmux")
POLL_S = 0.1

# What a terminal sends for the keys the app binds: the xterm form first, then the others a
# real terminal may send for the same key (rxvt/``screen`` F-keys, CSI-u under the kitty
# keyboard protocol). tmux turns each into the form it sends a ``screen`` pane.
ESC = b"\x1b"


def alt(char: str) -> list[bytes]:
    """Alt+``char`` as xterm/VTE/tmux send it (ESC prefix) and as CSI-u (kitty protocol)."""
    return [ESC + char.encode(), f"\x1b[{ord(char)};3u".encode()]


XTERM_FKEYS: dict[int, bytes] = {
    1: b"\x1bOP",
    2: b"\x1bOQ",
    3: b"\x1bOR",
    4: b"\x1bOS",
    5: b"\x1b[15~",
    6: b"\x1b[17~",
    7: b"\x1b[18~",
    8: b"\x1b[19~",
    9: b"\x1b[20~",
    10: b"\x1b[21~",
    11: b"\x1b[23~",
    12: b"\x1b[24~",
}
# rxvt, the Linux console and screen's own VT220 forms for F1-F4 (F5 and up are the same).
VT220_FKEYS: dict[int, bytes] = {1: b"\x1b[11~", 2: b"\x1b[12~", 3: b"\x1b[13~", 4: b"\x1b[14~"}


def fkey(n: int) -> list[bytes]:
    """F``n`` as xterm sends it, and as rxvt/VT220 terminals send F1-F4."""
    return [XTERM_FKEYS[n], *([VT220_FKEYS[n]] if n in VT220_FKEYS else [])]


def shift_fkey(n: int) -> list[bytes]:
    """Shift+F``n`` as xterm sends it."""
    base = XTERM_FKEYS[n]
    if base.startswith(b"\x1bO"):
        return [b"\x1b[1;2" + base[2:]]
    return [base[:-1] + b";2~"]


def bracketed(text: bytes) -> bytes:
    """A paste as a terminal sends it when the app asked for bracketed paste."""
    return b"\x1b[200~" + text + b"\x1b[201~"


class RealTerminal:
    """tmux on a private server with a client attached through a pty this process controls."""

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        width: int = 100,
        height: int = 30,
        client_term: str = "xterm-256color",
    ) -> None:
        if TMUX is None:
            raise RuntimeError("tmux is not installed")
        self.name = f"e2e-{uuid.uuid4().hex[:8]}"
        self.tmux = [TMUX, "-L", self.name, "-f", "/dev/null"]
        self.width, self.height = width, height
        self.output = bytearray()  # what the client drew (for debugging a failure)
        self._tmp = Path(tempfile.mkdtemp(prefix="tokenrace-term-"))
        server_env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
        server_env.update(env)
        server_env.pop("TERM", None)  # the pane gets tmux's default-terminal: screen
        self._server_env = server_env
        self._run(
            "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
            "-c", str(REPO), "--", *command,
        )  # fmt: skip
        # Keep a dead pane on screen: its exit status and any traceback stay readable.
        self._run("set-option", "-w", "-t", self.name, "remain-on-exit", "on")
        self._master, slave = os.openpty()
        self._set_size(slave, width, height)
        client_env = dict(server_env, TERM=client_term)
        self.client = subprocess.Popen(
            [*self.tmux, "attach-session", "-t", self.name],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=client_env,
            start_new_session=True,
        )
        os.close(slave)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 10
        while not self._run("list-clients", "-t", self.name, capture=True).strip():
            if time.monotonic() > deadline:
                raise TimeoutError("the tmux client did not attach")
            time.sleep(POLL_S)

    @classmethod
    def app(
        cls, home: Path, *args: str, width: int = 100, height: int = 30, **env: str
    ) -> RealTerminal:
        """The app from this checkout (``python -m tui.cli ARGS``) with ``TOKENRACE_HOME``."""
        full_env = {
            "TOKENRACE_HOME": str(home),
            "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO)),
            "PYTHON_KEYRING_BACKEND": "tests.support.fake_keyring.FileKeyring",
            "TOKENRACE_FAKE_KEYRING": str(home / "keyring.json"),
            **env,
        }
        return cls([sys.executable, "-m", "tui.cli", *args], full_env, width, height)

    # --- input ---------------------------------------------------------------------------

    def type(self, data: bytes, pause: float = 0.0) -> None:
        """Bytes a terminal emulator sends, into the tmux client (one write, as one key)."""
        os.write(self._master, data)
        if pause:
            time.sleep(pause)

    def send_keys(self, *keys: str, literal: bool = False) -> None:
        """tmux ``send-keys`` straight into the pane (tmux key names, or text with ``literal``)."""
        self._run("send-keys", "-t", self.name, *(["-l"] if literal else []), *keys)

    def paste(self, data: bytes) -> None:
        """Paste ``data`` as tmux does (``paste-buffer -p``): bracketed, LF sent as CR."""
        path = self._tmp / "paste"
        path.write_bytes(data)
        self._run("load-buffer", "-b", "e2e", str(path))
        self._run("paste-buffer", "-p", "-d", "-b", "e2e", "-t", self.name)

    def resize(self, width: int, height: int) -> None:
        """The terminal window changes size (the client gets SIGWINCH, the pane follows)."""
        self._set_size(self._master, width, height)
        # The pty is not the client's controlling terminal (that needs a fork hook, unsafe in
        # a threaded test run), so the kernel's SIGWINCH is sent by hand.
        self.client.send_signal(signal.SIGWINCH)
        self.width, self.height = width, height

    # --- output --------------------------------------------------------------------------

    def screen(self) -> str:
        """The pane's visible text."""
        return self._run("capture-pane", "-p", "-t", self.name, capture=True)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> str:
        """Poll until ``pattern`` (a regex) is on screen; the screen."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if rx.search(text):
                return text
            if "Pane is dead" in text:
                raise TimeoutError(f"{pattern!r} never came: the app exited:\n{text}")
            time.sleep(POLL_S)
        raise TimeoutError(f"{pattern!r} not on screen after {timeout} s:\n{text}")

    def wait_gone(self, pattern: str, timeout: float = 15.0) -> str:
        """Poll until ``pattern`` is no longer on screen; the screen."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if not rx.search(text):
                return text
            time.sleep(POLL_S)
        raise TimeoutError(f"{pattern!r} still on screen after {timeout} s:\n{text}")

    def pane(self, fmt: str) -> str:
        """A tmux format about the pane, e.g. ``#{pane_pid}``, ``#{pane_dead_status}``."""
        return self._run("display-message", "-p", "-t", self.name, fmt, capture=True).strip("\n")

    def pane_pid(self) -> int:
        return int(self.pane("#{pane_pid}"))

    def exit_status(self, timeout: float = 15.0) -> int:
        """Wait for the app to exit; its exit status (128+N when killed by signal N)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pane("#{pane_dead}") == "1":
                status, sig = self.pane("#{pane_dead_status} #{pane_dead_signal}").split(" ")
                if sig:
                    return 128 + int(sig)
                return int(status or 0)  # tmux 3.3 leaves the status empty for 0
            time.sleep(POLL_S)
        raise TimeoutError(f"the app is still running after {timeout} s:\n{self.screen()}")

    def alive(self) -> bool:
        return self.pane("#{pane_dead}") != "1"

    def close_window(self) -> None:
        """Close the window, as a person closes a terminal: the app gets SIGHUP."""
        self._run("kill-window", "-t", self.name)

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the app (the pane's process)."""
        os.kill(self.pane_pid(), sig)

    def close(self) -> None:
        """Stop the tmux server (and with it the app) and the client."""
        subprocess.run([*self.tmux, "kill-server"], capture_output=True, check=False)
        try:
            self.client.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.client.kill()
        try:
            os.close(self._master)
        except OSError:
            pass
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> RealTerminal:
        return self

    def __exit__(
        self,
        exc_type: builtins.type[BaseException] | None,  # .type is the method below
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------

    def _run(self, *args: str, capture: bool = False) -> str:
        out = subprocess.run(
            [*self.tmux, *args],
            env=self._server_env,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0 and args[0] not in ("list-clients", "kill-window"):
            raise RuntimeError(f"tmux {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout if capture else ""

    @staticmethod
    def _set_size(fd: int, width: int, height: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def _drain(self) -> None:
        # The client blocks once the pty's buffer fills: read everything it draws.
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk[-65536:]
            del self.output[:-262144]

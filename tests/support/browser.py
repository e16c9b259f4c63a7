"""``tokenrace serve`` driven in headless Chromium, its screen read back as text.

The browser draws the terminal on a canvas (xterm.js), so the text is read from the session's
output stream instead: every binary frame the server sends the page over the websocket is fed
to pyte, a terminal emulator, sized as the page told the server (the websocket's
``width``/``height`` and each ``resize`` message). What pyte shows is what xterm.js drew.

Chromium is Debian's (``tests/support/chromium.py`` finds it), run by Playwright with
``--no-sandbox`` (CI runs as root); Playwright never downloads a browser here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.support.chromium import chromium_path
from tests.support.cli import REPO


def browser_problem() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
        import pyte  # noqa: F401
        import textual_serve  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[dev,serve]')"
    if chromium_path() is None:
        return "no Chromium on PATH (Debian: apt-get install chromium)"
    return None


@dataclass
class Served:
    """A running ``tokenrace serve`` and the URL it printed first."""

    proc: subprocess.Popen[str]
    url: str

    @property
    def base(self) -> str:
        return self.url.split("?", 1)[0]


@contextmanager
def serve(*args: str, env: dict[str, str] | None = None, timeout: float = 20) -> Iterator[Served]:
    """``tokenrace serve --port 0 ARGS`` until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        import select

        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline().strip() if ready else ""
        if not line.startswith("http"):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"tokenrace serve printed {line!r} first; stderr: {err[-2000:]}")
        yield Served(proc, line)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class BrowserTerminal:
    """One page of the app, read through pyte."""

    page: Any
    screen: Any = None
    stream: Any = None
    received: list[bytes] = field(default_factory=list)  # every binary frame, in order
    texts: list[str] = field(default_factory=list)  # every text frame, both ways
    requests: list[str] = field(default_factory=list)  # every URL the page asked for

    def attach(self) -> None:
        import pyte

        self.screen = pyte.Screen(80, 24)
        self.stream = pyte.ByteStream(self.screen)
        self.page.on("websocket", self._on_websocket)
        self.page.on("request", lambda request: self.requests.append(request.url))

    def _on_websocket(self, ws: Any) -> None:
        query = parse_qs(urlparse(ws.url).query)
        self.screen.resize(int(query["height"][0]), int(query["width"][0]))
        ws.on("framereceived", self._received)
        ws.on("framesent", self._sent)

    def _received(self, payload: str | bytes) -> None:
        if isinstance(payload, bytes):
            self.received.append(payload)
            self.stream.feed(payload)
        else:
            self.texts.append(payload)

    def _sent(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            self.texts.append(payload)
            if payload.startswith('["resize"'):
                size = json.loads(payload)[1]
                self.screen.resize(size["height"], size["width"])

    def text(self) -> str:
        """The screen as the page shows it, one line per row."""
        return "\n".join(line.rstrip() for line in self.screen.display)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) is on the screen."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.text())
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} never showed; the screen:\n{self.text()}")
            self.page.wait_for_timeout(100)

    def wait_gone(self, pattern: str, timeout: float = 30.0) -> None:
        """Wait until ``pattern`` (a regex) is no longer on the screen."""
        deadline = time.monotonic() + timeout
        while re.search(pattern, self.text()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} never went; the screen:\n{self.text()}")
            self.page.wait_for_timeout(100)

    def type(self, text: str) -> None:
        """Type into the terminal as a person does (keyboard events on its text area)."""
        self.page.focus(".xterm-helper-textarea")
        self.page.keyboard.type(text)

    def press(self, key: str) -> None:
        self.page.focus(".xterm-helper-textarea")
        self.page.keyboard.press(key)


# A name that is not localhost for a server on 127.0.0.1: a page there is not a secure context
# (plain http off loopback, as another machine on the network would see it), yet every request
# stays on loopback.
PLAIN_HOST = "tokenrace.test"


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium under Playwright (a Browser); PLAIN_HOST is 127.0.0.1."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    assert exe is not None
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=exe,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                f"--host-resolver-rules=MAP {PLAIN_HOST} 127.0.0.1",
            ],
            headless=True,
        )
        try:
            yield browser
        finally:
            browser.close()


def open_app(browser: Any, url: str, *, width: int = 1200, height: int = 720) -> BrowserTerminal:
    """A new tab (its own context: clipboard allowed, a probe on clipboard writes) on ``url``."""
    context = browser.new_context(viewport={"width": width, "height": height})
    origin = url.split("?", 1)[0].rstrip("/")
    if PLAIN_HOST not in origin:  # Chromium refuses the grant where the page is not secure
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
    # Every write to the page's clipboard is recorded before it happens, whoever makes it.
    context.add_init_script(
        """
        window.__copies = [];
        if (navigator.clipboard) {
          const write = navigator.clipboard.writeText.bind(navigator.clipboard);
          navigator.clipboard.writeText = (text) => { window.__copies.push(text);
                                                      return write(text); };
        }
        """
    )
    page = context.new_page()
    term = BrowserTerminal(page)
    term.attach()
    page.goto(url)
    return term

"""``tokenrace serve``: the app in a browser tab, typed into in headless Chromium.

The page's terminal is a canvas; its text is read from the session's output stream fed to pyte
(``tests/support/browser.py``). Outside CI, without Chromium or the serve and dev extras, the
browser tests skip with the reason; under ``CI=true`` they fail instead (tests/conftest.py).
"""

from __future__ import annotations

import base64
import http.client
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.support.browser import PLAIN_HOST, browser_problem, chromium, open_app, serve
from tests.support.cli import REPO
from tests.support.mock_server import MockServerProcess
from tui.actions import ACTIONS, BROWSER_RESERVED
from tui.browser import BROWSER_ENV, COPY_UNAVAILABLE, copy_problem

PROBLEM = browser_problem()
needs_browser = pytest.mark.skipif(PROBLEM is not None, reason=f"browser tests: {PROBLEM}")

FIGURES = re.compile(r"✓ complete · TTFT ([\d.,]+) (ms|s) · ([\d.,]+) tok/s")


def _config(home: Path, mock: MockServerProcess, key_env: str | None = None) -> None:
    line = f'api_key_env = "{key_env}"\n' if key_env else ""
    (home / "config.toml").write_text(f'[endpoints.mock]\nbase_url = "{mock.base_url}"\n{line}')


def _ms(value: str, unit: str) -> float:
    number = float(value.replace(",", ""))
    return number * 1000 if unit == "s" else number


def _requests(mock: MockServerProcess, model: str) -> list[dict[str, Any]]:
    return [
        r for r in mock.log() if r["path"].endswith("/chat/completions") and r["model"] == model
    ]


def _apps(server_pid: int) -> list[Any]:
    """The app processes `tokenrace serve` runs (psutil.Process), one per browser session."""
    import psutil

    return [
        p
        for p in psutil.Process(server_pid).children()
        if "tui.cli" in " ".join(p.cmdline()) and p.is_running()
    ]


def server_figures(record: dict[str, Any]) -> tuple[float, float]:
    """TTFT (ms) and decode rate by the server's clock (as tests/test_timing.py reads them)."""
    sends = [s for s in record["sends"] if s["kind"] == "token"]
    stamps = [int(s.get("t_start_ns") or s["t_ns"]) for s in sends]
    n = sum(s["tokens"] for s in sends) - sends[0]["tokens"]
    return (stamps[0] - record["received_ns"]) / 1e6, n / ((stamps[-1] - stamps[0]) / 1e9)


def _status(url: str, path: str, headers: dict[str, str] | None = None) -> int:
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().status
    finally:
        conn.close()


@needs_browser
def test_chat_in_the_browser(mock_server: MockServerProcess, isolated_home: Path) -> None:
    name = f"serve-chat-{uuid.uuid4().hex[:8]}"
    payload = "pwned-by-the-server"
    osc52 = "\x1b]52;c;" + base64.b64encode(payload.encode()).decode() + "\x07"
    # 20 tokens at 50 tok/s: a decode span of ~0.4 s, long enough that a busy machine's
    # scheduling jitter stays small beside it.
    tail = " ".join(f"w{i}" for i in range(14))
    text = f"Streamed alpha beta gamma {osc52} delta epsilon {tail}"
    mock_server.add_scenario(name, {"text": text, "ttft_ms": 80, "tps": 50})
    key = f"sk-canary-{uuid.uuid4().hex}"
    _config(isolated_home, mock_server, key_env="CANARY_KEY")
    with (
        serve("-m", f"mock/{name}", "--max-sessions", "1", env={"CANARY_KEY": key}) as served,
        chromium() as browser,
    ):
        term = open_app(browser, served.url)
        term.wait_for(r"Message…", timeout=40)

        # The session cap: a second tab gets a page that says so, and no app.
        other = browser.new_page()
        response = other.goto(served.url)
        assert response is not None and response.status == 503
        assert "All 1 sessions are in use" in other.content()
        other.close()
        assert len(_apps(served.proc.pid)) == 1  # one app process, for the one session

        term.type("hello from the browser")
        term.press("Enter")
        figures = term.wait_for(FIGURES.pattern)
        screen = term.text()
        assert "Streamed alpha beta gamma" in screen and f"delta epsilon {tail}" in screen
        ttft = _ms(figures[1], figures[2])
        rate = float(figures[3].replace(",", ""))
        # The page's figures are the engine's, which match the server's own clock.
        server_ttft, server_rate = server_figures(_requests(mock_server, name)[-1])
        # (Margins for a busy 2-core machine: tests/test_timing.py holds the tight ones.)
        assert ttft >= 80 and abs(ttft - server_ttft) < max(50, 0.25 * server_ttft), screen
        assert abs(rate / server_rate - 1) < 0.35, (rate, server_rate, screen)
        assert _requests(mock_server, name)[-1]["body"]["messages"][-1]["content"] == (
            "hello from the browser"
        )

        # The reply's OSC 52 is shown, inert, and never reaches the page's clipboard ...
        assert "␛]52;c;" in screen
        assert term.page.evaluate("window.__copies") == []
        assert term.page.evaluate("navigator.clipboard.readText()") != payload
        # ... while the app's own copy does (a secure context: loopback).
        term.press("Alt+c")
        term.wait_for("Copied the last reply")
        copies = term.page.wait_for_function("window.__copies.length > 0") and term.page.evaluate(
            "window.__copies"
        )
        assert len(copies) == 1 and "Streamed alpha beta gamma" in copies[0]
        assert payload not in copies[0]  # the reply's own OSC 52 stays text, not a command

        # Keys: F5 reaches the app (retry); Alt+T and Alt+N stand in for Ctrl+T and Ctrl+N.
        sent = len(_requests(mock_server, name))
        term.press("F5")
        term.page.wait_for_timeout(300)
        term.wait_for(FIGURES.pattern)
        deadline = 40
        while len(_requests(mock_server, name)) == sent and deadline:
            term.page.wait_for_timeout(250)
            deadline -= 1
        assert len(_requests(mock_server, name)) == sent + 1
        # Ctrl+S exports: the file is delivered to the browser, which downloads it.
        downloads: list[Any] = []

        def on_download(download: Any) -> None:
            downloads.append(download)

        term.page.context.on("page", lambda tab: tab.on("download", on_download))
        term.page.on("download", on_download)
        term.press("Control+s")
        term.wait_for("Export this conversation")
        term.press("m")
        term.wait_for("your browser downloads it")
        for _ in range(100):
            if downloads:
                break
            term.page.wait_for_timeout(100)
        assert downloads, "no download started"
        exported = Path(downloads[0].path()).read_text(encoding="utf-8")
        assert downloads[0].suggested_filename.endswith(".md")
        assert "hello from the browser" in exported and "Streamed alpha beta gamma" in exported
        assert key not in exported

        term.press("F4")  # history
        term.wait_for("Conversations · Enter resumes")
        term.press("Escape")
        term.wait_gone("Conversations · Enter resumes")
        term.press("Alt+t")
        term.wait_for("Search for themes")
        term.press("Escape")
        term.wait_gone("Search for themes")  # an Esc just before Alt+N's ESC n is ambiguous
        term.press("Alt+n")
        term.wait_for("new conversation")

        # The page asked this server for everything it loaded, and nothing else.
        assert term.requests and all(u.startswith(served.base) for u in term.requests), (
            term.requests
        )

        # The key stayed on the server: used there, never sent to the page.
        assert all(
            r["headers"].get("authorization") == f"Bearer {key}"
            for r in _requests(mock_server, name)
        )
        seen = b"".join(term.received).decode("utf-8", "replace") + "".join(term.texts)
        seen += term.page.content()
        assert key not in seen and key[-12:] not in seen

        # Closing the tab ends its app (and the app's engine).
        app = _apps(served.proc.pid)[0]
        term.page.context.close()
        app.wait(timeout=30)
        assert _apps(served.proc.pid) == []


@needs_browser
def test_race_two_panes_in_the_browser(mock_server: MockServerProcess, isolated_home: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    quick, slow = f"serve-quick-{tag}", f"serve-slow-{tag}"
    for name, text, ttft_ms in (
        (quick, "quick one two three four", 30),
        (slow, "slow five six seven eight", 600),
    ):
        mock_server.add_scenario(name, {"text": text, "ttft_ms": ttft_ms, "tps": 200})
    _config(isolated_home, mock_server)
    with serve("-m", f"mock/{quick}", "-m", f"mock/{slow}") as served, chromium() as browser:
        # Through a name that is not localhost: plain http there is not a secure context.
        term = open_app(browser, served.url.replace("127.0.0.1", PLAIN_HOST), width=1400)
        term.wait_for(r"Message…", timeout=40)
        assert term.page.evaluate("window.isSecureContext") is False
        term.type("race")
        term.press("Enter")
        term.wait_for(r"(?s)(✓ complete.*){2}")
        screen = term.text()
        left, right = _halves(screen)
        assert "quick one two three four" in left and "slow five six seven eight" in right, screen
        # Pane A (quick, 30 ms to the first token) and pane B (slow, 600 ms), each from its pane.
        first = re.compile(r"TTFT ([\d.,]+) (ms|s)")
        ttft_a, ttft_b = (_ms(*first.findall(half)[0]) for half in (left, right))
        assert 30 <= ttft_a < 550 and 600 <= ttft_b < 5000, screen
        assert len(_requests(mock_server, quick)) == len(_requests(mock_server, slow)) == 1

        # No clipboard on such a page: the app says so instead of pretending to copy.
        term.press("Alt+c")
        term.wait_for("Copying is unavailable here")
        assert term.page.evaluate("window.__copies") == []


def _halves(screen: str) -> tuple[str, str]:
    """The left and the right half of the screen (pane A and pane B side by side)."""
    lines = screen.splitlines()
    middle = max(len(line) for line in lines) // 2
    return "\n".join(x[:middle] for x in lines), "\n".join(x[middle:] for x in lines)


def test_a_request_without_the_token_is_refused(isolated_home: Path) -> None:
    pytest.importorskip("textual_serve", reason="the serve extra is not installed")
    with serve() as served:
        token = served.url.split("token=", 1)[1]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[\w-]{20,}", served.url)
        upgrade = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
        }
        for path in ("/", "/static/js/textual.js", "/tokenrace-serve.js", "/download/x"):
            assert _status(served.url, path) == 403, path
            assert _status(served.url, path + "?token=wrong-token-0000") == 403, path
        assert _status(served.url, "/ws/secure?width=80&height=24", upgrade) == 403
        cookie = {"Cookie": f"tokenrace-serve-{urlparse(served.url).port}=wrong"}
        assert _status(served.url, "/ws/secure", {**upgrade, **cookie}) == 403
        # A page of another site cannot open a session, even with the cookie in hand.
        good = {"Cookie": f"tokenrace-serve-{urlparse(served.url).port}={token}"}
        evil = {**upgrade, **good, "Origin": "http://evil.example"}
        assert _status(served.url, "/ws/secure", evil) == 403
        # With the token: the page, and the token as a cookie for the page's own requests.
        assert _status(served.url, f"/?token={token}") == 200
        assert _status(served.url, "/static/js/textual.js", good) == 200


def test_https_with_cert_and_key(tmp_path: Path) -> None:
    pytest.importorskip("textual_serve", reason="the serve extra is not installed")
    import shutil
    import ssl

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with serve("--cert", str(cert), "--key", str(key)) as served:
        assert served.url.startswith("https://127.0.0.1:")
        parsed = urlparse(served.url)
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False  # the certificate names 127.0.0.1 as its CN only

        def get(path: str) -> http.client.HTTPResponse:
            conn = http.client.HTTPSConnection(
                parsed.hostname or "", parsed.port, timeout=10, context=context
            )
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            conn.close()
            return response

        assert get("/").status == 403
        page = get(f"/?{parsed.query}")
        assert page.status == 200
        assert "Secure" in (page.getheader("Set-Cookie") or "")
    r = subprocess.run(
        [sys.executable, "-m", "tui.cli", "serve", "--cert", str(cert)],
        capture_output=True, text=True, cwd=REPO, timeout=30, check=False,
    )  # fmt: skip
    assert r.returncode == 2 and "--cert and --key go together" in r.stderr


def test_no_token_is_refused_off_loopback(isolated_home: Path) -> None:
    pytest.importorskip("textual_serve", reason="the serve extra is not installed")
    r = subprocess.run(
        [sys.executable, "-m", "tui.cli", "serve", "--no-token", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        check=False,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert "--no-token is allowed on a loopback address only" in r.stderr
    with serve("--no-token") as served:
        assert "token" not in served.url
        assert _status(served.url, "/") == 200


def test_copy_is_unavailable_on_a_page_that_is_not_secure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BROWSER_ENV, raising=False)
    assert copy_problem(False) is None  # a terminal: OSC 52 and the platform's commands
    assert copy_problem(True) == COPY_UNAVAILABLE
    monkeypatch.setenv(BROWSER_ENV, "insecure")
    assert copy_problem(True) == COPY_UNAVAILABLE
    monkeypatch.setenv(BROWSER_ENV, "secure")
    assert copy_problem(True) is None


def test_every_action_has_a_key_the_browser_passes_on() -> None:
    from tui.screens.chat import ChatScreen
    from tui.screens.compare import CompareScreen
    from tui.screens.welcome import WelcomeScreen

    keys = {a.id: a.keys for a in ACTIONS}
    for screen in (ChatScreen, CompareScreen, WelcomeScreen):
        for b in screen.BINDINGS:
            keys[f"{screen.__name__}.{getattr(b, 'action', b)}"] = getattr(b, "key", "")
    stuck = {what: k for what, k in keys.items() if not set(k.split(",")) - BROWSER_RESERVED}
    assert stuck == {}
    assert {"ctrl+n", "ctrl+t"} <= {k for a in ACTIONS for k in a.keys.split(",")}
    # The README's browser column names the stand-ins, and they are bound (typed above).
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    stand_ins = re.findall(r"\| \*\*(Alt\+\w)\*\*: the browser keeps (Ctrl\+\w)", readme)
    assert sorted(stand_ins) == [("Alt+N", "Ctrl+N"), ("Alt+T", "Ctrl+T")]
    for alt, ctrl in stand_ins:
        action = next(a for a in ACTIONS if ctrl.lower() in a.keys.split(","))
        assert alt.lower() in action.keys.split(","), action

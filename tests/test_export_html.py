"""Sharing a race as one self-contained HTML page (issue 18): strict, inert, offline."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import html5lib
import pytest

from tests.support.chromium import chromium_path, load_page
from tests.support.cli import run_cli
from tests.support.mock_server import MockServerProcess
from tests.support.race_fixture import store_race
from tui.session.export import CSP

REPO = Path(__file__).resolve().parent.parent
XHTML = "{http://www.w3.org/1999/xhtml}"


def export_page(home: Path) -> Path:
    store_race()
    out = home / "race.html"
    r = run_cli("export", "--format", "html", "-o", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_html_export_parses_strictly_and_model_text_is_inert(isolated_home: Path) -> None:
    page = export_page(isolated_home).read_text(encoding="utf-8")
    # strict=True raises on any parse error (bad nesting, stray characters, bad doctype).
    tree = html5lib.HTMLParser(strict=True, namespaceHTMLElements=True).parse(page)
    tags = [el.tag.removeprefix(XHTML) for el in tree.iter() if isinstance(el.tag, str)]
    assert "script" not in tags and "img" not in tags and "iframe" not in tags
    hrefs = []
    for el in tree.iter():
        for name, value in el.attrib.items():
            assert not name.lower().startswith("on"), (el.tag, name)
            assert name != "src", el.tag
            if name == "href":
                hrefs.append(value)
    # Only the two http(s) links survive; javascript:, data: and image URLs are not links.
    assert hrefs == ["https://example.com/x", "https://evil.example/p.png", "https://example.org/"]
    csp = [
        el.get("content")
        for el in tree.iter(f"{XHTML}meta")
        if el.get("http-equiv") == "Content-Security-Policy"
    ]
    assert csp == [CSP] and "default-src 'none'" in CSP
    text = "".join(tree.itertext())
    # The hostile text is shown as text, escaped, not obeyed.
    assert "<script>alert(1)</script>" in text and "javascript:alert(2)" in text
    assert "\x1b" not in page and "␛[31m" in text
    assert "Pane B · mock/safe" in text and "best: mock/safe" in text
    assert "TTFT 180 ms" in text and "95.0 tok/s" in text


def test_markdown_export_still_works_beside_html(isolated_home: Path) -> None:
    store_race()
    r = run_cli("export", "--format", "md")
    assert r.returncode == 0, r.stderr
    assert "### mock/safe" in r.stdout and "\x1b" not in r.stdout


needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[str]]]:
    """A 127.0.0.1 server that records each path asked of it."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/gif")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


@needs_chromium
def test_html_export_opens_in_chromium_without_errors_or_requests(isolated_home: Path) -> None:
    page = export_page(isolated_home)
    url = page.as_uri()
    load = load_page(url)
    assert load.requests == [url]  # the page itself, nothing else
    assert load.errors == [] and load.console == []
    assert load.screenshot.startswith(b"\x89PNG")
    # The screenshot in screenshots/ is refreshed on request only (the page has a timestamp).
    if os.environ.get("TOKENRACE_UPDATE_SCREENSHOTS"):
        (REPO / "screenshots" / "export-html.png").write_bytes(load.screenshot)


@needs_chromium
def test_the_request_monitor_sees_requests_and_the_policy_blocks_them(
    isolated_home: Path, http_server: tuple[str, list[str]]
) -> None:
    base, hits = http_server
    body = f'<img src="{base}/pixel.gif"><script>fetch("{base}/fetch")</script>'
    open_page = isolated_home / "open.html"
    open_page.write_text(f"<!DOCTYPE html><title>t</title>{body}")
    seen = load_page(open_page.as_uri())
    assert f"{base}/pixel.gif" in seen.requests  # the monitor does see a network request
    locked = isolated_home / "locked.html"
    locked.write_text(
        f'<!DOCTYPE html><meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>t</title>{body}"
    )
    assert "/pixel.gif" in hits  # and the server heard it
    hits.clear()
    blocked = load_page(locked.as_uri())
    # Chromium still reports the attempt (then fails it); the server never hears of it.
    assert hits == [], hits
    assert any("Content Security Policy" in e for e in blocked.errors), blocked.errors
    assert "http" not in " ".join(blocked.requests).replace(f"{base}/pixel.gif", "")


async def test_the_app_exports_html_from_the_export_dialog(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from tests.support.tui import make_app, mock_config, scenario, send, wait_for_screen, wait_until
    from tui.screens.chat import ChatScreen
    from tui.screens.export_dialog import ExportDialog

    model = scenario(mock_server, text="see <script>x()</script> [a](javascript:y)", ttft_ms=5)
    app = make_app(mock_config(mock_server), isolated_home, models=[model])
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "export this")
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        await wait_until(pilot, lambda: chat.run is not None and chat.run.shown_final)
        await pilot.press("ctrl+s")
        await wait_for_screen(pilot, ExportDialog)
        await pilot.press("h")
        exports = isolated_home / "data" / "exports"
        await wait_until(pilot, lambda: any(exports.glob("*.html")))
    page = next(exports.glob("*.html")).read_text(encoding="utf-8")
    tree = html5lib.HTMLParser(strict=True).parse(page)
    assert "see <script>x()</script>" in "".join(tree.itertext())
    assert "<script>" not in page and 'href="javascript' not in page

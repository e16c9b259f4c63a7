"""``tokenrace serve``: the full app in a browser tab, one app process per browser session.

Built on textual-serve's ``AppService`` (one app subprocess per websocket, speaking Textual's web
driver protocol) and its ``DownloadManager``; the web server around them is ours, so that every
request needs the session token, sessions are capped, the page loads nothing from elsewhere,
and this process imports neither textual nor rich (textual-serve's own ``Server`` imports rich).

The app processes run here, on the server: they read the keys (environment, key commands,
keyring) and talk to the endpoints; the browser gets the terminal's output and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import html
import ipaddress
import json
import secrets
import shlex
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from textual_serve.app_service import AppService
from textual_serve.download_manager import DownloadManager

from tui.browser import BROWSER_ENV

DEFAULT_PORT = 8765
DEFAULT_MAX_SESSIONS = 4
# An app asked to quit (its tab closed, or the server stops) that is still running after this
# long is killed. The app itself waits up to 15 s for a locked database before saving elsewhere.
STOP_GRACE_S = 20.0
TOKEN_PARAM = "token"

STATIC = Path(str(files("textual_serve"))) / "static"

# The page: textual-serve's terminal (xterm.js, static/js/textual.js) without its template's
# web fonts, so the page requests nothing but this server. The script runs before textual.js's
# window.onload and tells the server, through the websocket's path, whether the page is a secure
# context (only there does navigator.clipboard exist).
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tokenrace</title>
<link rel="stylesheet" href="/static/css/xterm.css">
<style>
@font-face {{ font-family: "Roboto Mono";
  src: url("/static/fonts/RobotoMono-VariableFont_wght.ttf") format("truetype"); }}
html, body {{ margin: 0; height: 100%; background: #0c181f; color: #e8e8e8;
  font-family: "Roboto Mono", monospace; }}
#terminal {{ position: absolute; inset: 0; }}
.notice {{ display: none; position: absolute; inset: 0; align-items: center;
  justify-content: center; z-index: 10; background: #0c181f; }}
body.-closed .notice {{ display: flex; }}
</style>
</head>
<body>
<div class="notice" role="status"><p>Session ended. <a href="">Start a new one</a></p></div>
<div id="terminal" class="textual-terminal" data-session-websocket-url="{ws_url}"
  data-font-size="{font_size}"></div>
<script src="/tokenrace-serve.js"></script>
<script src="/static/js/textual.js"></script>
</body>
</html>
"""

PAGE_SCRIPT = """\
const t = document.getElementById("terminal");
t.dataset.sessionWebsocketUrl += window.isSecureContext ? "/secure" : "/insecure";
"""

BUSY_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tokenrace: all sessions in use</title></head>
<body style="font-family: monospace; margin: 3em">
<h1>All {max_sessions} sessions are in use</h1>
<p>This tokenrace server runs at most {max_sessions} app(s) at once (<code>--max-sessions</code>).
Close another tab that uses it, then reload this page.</p>
</body></html>
"""

REFUSED = (
    "tokenrace serve: this address needs its token. Open the URL that `tokenrace serve` "
    "printed when it started (it ends in ?token=...).\n"
)

# The page loads its script, style and font from this server and talks to it over the
# websocket; nothing else. Downloads open /download/KEY in a new tab.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "font-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SessionService(AppService):
    """One app process for one browser session, told whether the page can use the clipboard."""

    def __init__(self, command: str, *, secure: bool, **kwargs: Any) -> None:
        super().__init__(command, **kwargs)
        self.secure = secure

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        env = super()._build_environment(width=width, height=height)
        env[BROWSER_ENV] = "secure" if self.secure else "insecure"
        return env


class TokenraceServer:
    """The web server: token check, the page, one app per websocket up to ``max_sessions``."""

    def __init__(
        self,
        command: str,
        *,
        token: str | None,
        max_sessions: int,
        tls: bool = False,
    ) -> None:
        self.command = command
        self.token = token
        self.max_sessions = max_sessions
        self.tls = tls
        self.sessions = 0
        self.downloads = DownloadManager()
        self.cookie = ""  # the cookie's name carries the port (cookies ignore ports)

    def make_app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._require_token])
        app.add_routes(
            [
                web.get("/", self.index),
                web.get("/tokenrace-serve.js", self.page_script),
                web.get("/ws/{context}", self.websocket),
                web.get("/download/{key}", self.download),
                web.static("/static", STATIC),
            ]
        )
        return app

    def _has_token(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        given = request.query.get(TOKEN_PARAM) or request.cookies.get(self.cookie) or ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    @web.middleware
    async def _require_token(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if not self._has_token(request):
            return web.Response(status=403, text=REFUSED)
        response = await handler(request)
        if response.prepared:  # a websocket or a download: its headers are gone already
            return response
        if self.token is not None and request.query.get(TOKEN_PARAM) == self.token:
            # The page's own requests (script, websocket, downloads) carry the token as a
            # cookie that no other site's page can send (SameSite=Strict) or read (HttpOnly).
            response.set_cookie(
                self.cookie, self.token, httponly=True, samesite="Strict", secure=self.tls, path="/"
            )
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    async def index(self, request: web.Request) -> web.Response:
        """The page with the terminal, or a page saying every session is in use."""
        if self.sessions >= self.max_sessions:
            return web.Response(
                status=503,
                text=BUSY_PAGE.format(max_sessions=self.max_sessions),
                content_type="text/html",
            )
        scheme = "wss" if self.tls else "ws"
        ws_url = f"{scheme}://{request.host}/ws"
        try:
            font_size = max(6, min(48, int(request.query.get("fontsize", "16"))))
        except ValueError:
            font_size = 16
        page = PAGE.format(ws_url=html.escape(ws_url, quote=True), font_size=font_size)
        return web.Response(text=page, content_type="text/html")

    async def page_script(self, request: web.Request) -> web.Response:
        """The page's one script of its own (a file, so the CSP needs no inline script)."""
        return web.Response(text=PAGE_SCRIPT, content_type="text/javascript")

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """One browser session: its own app process, until the tab closes or the app quits."""
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            return web.Response(status=403, text="tokenrace serve: wrong origin\n")
        ws = web.WebSocketResponse(heartbeat=15)
        await ws.prepare(request)
        if self.sessions >= self.max_sessions:
            await ws.send_str(json.dumps(["log", "all sessions are in use"]))
            await ws.close()
            return ws
        self.sessions += 1
        service: SessionService | None = None
        try:
            width = _int(request.query.get("width"), 80)
            height = _int(request.query.get("height"), 24)
            service = SessionService(
                self.command,
                secure=request.match_info["context"] == "secure",
                write_bytes=ws.send_bytes,
                write_str=ws.send_str,
                close=ws.close,
                download_manager=self.downloads,
            )
            await service.start(width, height)
            await _relay(ws, service)
        except (asyncio.CancelledError, ConnectionResetError):
            pass
        finally:
            self.sessions -= 1
            if service is not None:
                await _stop(service)
            await ws.close()
        return ws

    async def download(self, request: web.Request) -> web.StreamResponse:
        """A file the app delivered (an export), streamed from its process."""
        key = request.match_info["key"]
        try:
            meta = await self.downloads.get_download_metadata(key)
        except KeyError:
            raise web.HTTPNotFound(text="no such download\n") from None
        response = web.StreamResponse()
        content_type = meta.mime_type + (f"; charset={meta.encoding}" if meta.encoding else "")
        response.headers["Content-Type"] = content_type
        disposition = "inline" if meta.open_method == "browser" else "attachment"
        name = meta.file_name.replace('"', "").replace("\\", "")
        response.headers["Content-Disposition"] = f'{disposition}; filename="{name}"'
        response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
        await response.prepare(request)
        async for chunk in self.downloads.download(key):
            await response.write(chunk)
        await response.write_eof()
        return response


async def _relay(ws: web.WebSocketResponse, service: SessionService) -> None:
    """Pass the browser's keys, resizes and focus to the app process."""
    async for message in ws:
        if message.type != WSMsgType.TEXT:
            continue
        try:
            envelope = json.loads(message.data)
            kind = envelope[0]
        except (ValueError, IndexError, KeyError, TypeError):
            continue
        if kind == "stdin" and isinstance(envelope[1], str):
            await service.send_bytes(envelope[1].encode("utf-8"))
        elif kind == "resize" and isinstance(envelope[1], dict):
            size = envelope[1]
            await service.set_terminal_size(
                _int(size.get("width"), 80), _int(size.get("height"), 24)
            )
        elif kind == "ping":
            await ws.send_json(["pong", envelope[1]])
        elif kind == "blur":
            await service.blur()
        elif kind == "focus":
            await service.focus()


async def _stop(service: SessionService) -> None:
    """Ask the app to quit (it saves and stops its engine); kill it if it has not in time."""
    try:
        await asyncio.wait_for(service.stop(), STOP_GRACE_S)
    except TimeoutError:
        process = service._process  # textual-serve keeps no public handle on it
        if process is not None and process.returncode is None:
            process.kill()


def _int(value: object, default: int) -> int:
    try:
        return max(1, min(1000, int(str(value))))
    except ValueError:
        return default


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenrace serve",
        description="The full app in a browser tab: one app process per browser session.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", help="the token every request needs (default: a random one)")
    token.add_argument(
        "--no-token", action="store_true", help="no token (allowed on a loopback address only)"
    )
    p.add_argument(
        "--max-sessions",
        type=int,
        default=DEFAULT_MAX_SESSIONS,
        help=f"browser sessions (app processes) at once (default {DEFAULT_MAX_SESSIONS})",
    )
    p.add_argument("--cert", type=Path, help="TLS certificate (PEM), with --key: serve https")
    p.add_argument("--key", type=Path, help="TLS private key (PEM)")
    p.add_argument(
        "-m",
        "--model",
        action="append",
        default=[],
        metavar="ENDPOINT/MODEL",
        help="model each session opens on; repeat to race models side by side",
    )
    p.add_argument("--vs", action="append", default=[], metavar="ENDPOINT/MODEL")
    return p


def app_command(models: Sequence[str]) -> str:
    """The shell command that runs one app (textual-serve starts it with a shell)."""
    argv = [sys.executable, "-m", "tui.cli"]
    for m in models:
        argv += ["-m", m]
    return "exec " + shlex.join(argv)  # the app replaces the shell: a kill reaches it


def main(argv: list[str]) -> int:
    """Run ``tokenrace serve`` until Ctrl+C or SIGTERM; returns the exit status."""
    ns = _parser().parse_args(argv)
    if ns.no_token and not is_loopback(ns.host):
        print(
            f"tokenrace serve: --no-token is allowed on a loopback address only, not {ns.host}: "
            "anyone who can reach it would run models on your keys",
            file=sys.stderr,
        )
        return 2
    if (ns.cert is None) != (ns.key is None):
        print("tokenrace serve: --cert and --key go together", file=sys.stderr)
        return 2
    if ns.max_sessions < 1:
        print("tokenrace serve: --max-sessions must be at least 1", file=sys.stderr)
        return 2
    if ns.token is not None and len(ns.token) < 8:
        print("tokenrace serve: --token must be at least 8 characters", file=sys.stderr)
        return 2
    context: ssl.SSLContext | None = None
    if ns.cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(ns.cert, ns.key)
        except (OSError, ssl.SSLError) as exc:
            print(f"tokenrace serve: cannot load --cert/--key: {exc}", file=sys.stderr)
            return 2
    token = None if ns.no_token else (ns.token or secrets.token_urlsafe(24))
    server = TokenraceServer(
        app_command([*ns.model, *ns.vs]),
        token=token,
        max_sessions=ns.max_sessions,
        tls=context is not None,
    )
    try:
        asyncio.run(_serve(server, ns.host, ns.port, context))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"tokenrace serve: cannot listen on {ns.host}:{ns.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(
    server: TokenraceServer, host: str, port: int, context: ssl.SSLContext | None
) -> None:
    import signal

    runner = web.AppRunner(server.make_app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=context)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    server.cookie = f"tokenrace-serve-{bound}"
    scheme = "https" if context is not None else "http"
    shown = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown}:{bound}/"
    if server.token is not None:
        url += f"?{TOKEN_PARAM}={server.token}"
    print(url, flush=True)
    secure = context is not None or is_loopback(host)
    print(
        f"Open it in a browser: up to {server.max_sessions} sessions, each its own app. "
        + ("Copy uses the browser's clipboard. " if secure else "")
        + (
            ""
            if secure
            else "Not a secure context (plain http off loopback): copying is unavailable; "
            "--cert/--key serve https. "
        )
        + "Ctrl+C stops the server.",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        await runner.cleanup()

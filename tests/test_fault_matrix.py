"""The fault matrix, end to end: each failure over a real loopback socket, through the engine
process and the compare screen, asserting what the user sees: the status, the message, the text
kept, the other pane finishing untouched, and the app still running.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from providers.config import parse_config
from tests.support.mock_server import MockServerProcess
from tests.support.tui import make_app, wait_until
from tui.screens.compare import CompareScreen
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.error_panel import ErrorPanel
from tui.widgets.prompt_box import PromptBox

HEALTHY = {"text": "The healthy pane finished.", "ttft_ms": 30, "tps": 100}


@dataclass
class Case:
    spec: dict[str, Any] | None  # a mock scenario for pane A; None: see ``endpoint``
    status: str  # what pane A's reply ends as
    message: str = ""  # in the error panel (or a notice) when set
    partial: bool = False  # text received before the failure stays on screen
    endpoint: dict[str, Any] = field(default_factory=dict)  # overrides for pane A's endpoint
    notice: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _remote_looking_host() -> str | None:
    """This machine's hostname when it resolves to loopback (not named 'localhost')."""
    name = socket.gethostname()
    try:
        return name if socket.gethostbyname(name).startswith("127.") else None
    except OSError:
        return None


TOKENS = {"n_tokens": 30, "ttft_ms": 20, "tps": 200}
ERR = {"error": {"message": "mock says no", "type": "invalid_request_error"}}

CASES: dict[str, Case] = {
    "refused-loopback": Case(
        None, "error", "nothing is listening", endpoint={"base_url": "http://127.0.0.1:{port}/v1"}
    ),
    "refused-remote": Case(
        None, "error", "cannot connect to faulty", endpoint={"base_url": "http://{host}:{port}/v1"}
    ),
    "401": Case({"status": 401, "error_body": ERR}, "error", "rejected the API key"),
    "403": Case({"status": 403, "error_body": ERR}, "error", "refused access (403)"),
    "404-model": Case({"status": 404, "error_body": ERR}, "error", "has no model"),
    "429-retry-after-seconds": Case(
        {
            "status": 429,
            "fail_times": 1,
            "error_body": ERR,
            "response_headers": {"Retry-After": "0.3"},
            **TOKENS,
        },
        "complete",
    ),
    "429-retry-after-date": Case(
        {
            "status": 429,
            "fail_times": 1,
            "error_body": ERR,
            "response_headers": {"Retry-After": "__DATE__"},
            **TOKENS,
        },
        "complete",
    ),
    "429-retry-after-ms": Case(
        {
            "status": 429,
            "fail_times": 1,
            "error_body": ERR,
            "response_headers": {"retry-after-ms": "250"},
            **TOKENS,
        },
        "complete",
    ),
    "429-very-long": Case(
        {"status": 429, "error_body": ERR, "response_headers": {"Retry-After": "86400"}},
        "error",
        "longer than max_retry_wait",
    ),
    "429-insufficient-quota": Case(
        {
            "status": 429,
            "error_body": {
                "error": {
                    "message": "You exceeded your current quota",
                    "code": "insufficient_quota",
                }
            },
        },
        "error",
        "quota exhausted",
    ),
    "500-then-ok": Case({"status": 500, "fail_times": 1, "error_body": ERR, **TOKENS}, "complete"),
    "502-then-ok": Case({"status": 502, "fail_times": 1, "error_body": ERR, **TOKENS}, "complete"),
    "503-always": Case({"status": 503, "error_body": ERR}, "error", "server error"),
    "200-json-body": Case(
        {
            "body_instead": '{"error": {"message": "streaming disabled"}}',
            "content_type": "application/json",
        },
        "error",
        "streaming disabled",
    ),
    "200-html-body": Case(
        {"body_instead": "<html><h1>Bad Gateway</h1></html>", "content_type": "text/html"},
        "error",
        "text/html",
    ),
    "dropped-mid-stream": Case(
        {**TOKENS, "drop_after_tokens": 10}, "interrupted", "dropped mid-reply", partial=True
    ),
    "no-done-no-finish": Case(
        {**TOKENS, "end_after_tokens": 10}, "interrupted", "without a finish reason", partial=True
    ),
    "silent-first-token": Case({"silent_after_headers": True}, "error", "first-token timeout"),
    "silent-idle": Case(
        {**TOKENS, "silent_after_tokens": 5}, "interrupted", "idle timeout", partial=True
    ),
    "keepalive-only": Case(
        {"keepalive_only": True, "keepalive_ms": 100}, "error", "first-token timeout"
    ),
    "keepalive-after-tokens": Case(
        {**TOKENS, "silent_after_tokens": 5, "keepalive_ms": 100},
        "interrupted",
        "idle timeout",
        partial=True,
    ),
    "event-error": Case(
        {**TOKENS, "error_event": True, "after_tokens": 5},
        "error",
        "mock upstream error",
        partial=True,
    ),
    "error-json-nested": Case(
        {**TOKENS, "error_json": "nested", "after_tokens": 5},
        "error",
        "mock mid-stream error",
        partial=True,
    ),
    "error-json-flat": Case(
        {**TOKENS, "error_json": "flat", "after_tokens": 5},
        "error",
        "mock mid-stream error",
        partial=True,
    ),
    "malformed-json": Case(
        {**TOKENS, "malformed_json": True, "after_tokens": 5},
        "error",
        "not valid JSON",
        partial=True,
    ),
    "event-over-cap": Case(
        {**TOKENS, "huge_event_bytes": 20000, "after_tokens": 5},
        "error",
        "oversized event",
        partial=True,
    ),
    "finish-length": Case({**TOKENS, "finish_reason": "length"}, "length"),
    "finish-content-filter": Case({**TOKENS, "finish_reason": "content_filter"}, "filtered"),
    "invalid-utf8": Case(
        {**TOKENS, "invalid_utf8": True, "after_tokens": 5}, "complete", notice="not valid UTF-8"
    ),
    "multibyte-split": Case(
        {"text": "héllo wörld 你好 🎉", "split_multibyte": True, "ttft_ms": 10}, "complete"
    ),
    "slow-drip": Case(
        {"text": "drip by drip", "drip_bytes": True, "drip_ms": 1, "ttft_ms": 10}, "complete"
    ),
    "rejects-stream-options": Case(
        {**TOKENS, "reject_fields": ["stream_options"]},
        "complete",
        notice="rejected the 'stream_options' field",
    ),
}


def _config(mock: MockServerProcess, overrides: dict[str, Any]) -> Any:
    faulty = {"base_url": mock.base_url, "timeouts": {"first_token": 1.0, "idle": 1.0}}
    for key, value in overrides.items():
        faulty[key] = value
    return parse_config(
        {
            "endpoints": {"faulty": faulty, "mock": {"base_url": mock.base_url}},
            "engine": {"retries": 1, "max_retry_wait": 60, "max_event_bytes": 4096},
        }
    )


@pytest.mark.parametrize("name", list(CASES))
async def test_fault(name: str, isolated_home: Path, mock_server: MockServerProcess) -> None:
    case = CASES[name]
    overrides = dict(case.endpoint)
    if "base_url" in overrides:
        host = _remote_looking_host() if "{host}" in overrides["base_url"] else "127.0.0.1"
        if host is None:
            pytest.skip("no hostname here resolves to loopback under another name")
        overrides["base_url"] = overrides["base_url"].format(port=free_port(), host=host)
    scenario = f"f-{uuid.uuid4().hex[:8]}"
    if case.spec is not None:
        spec = dict(case.spec)
        headers = spec.get("response_headers")
        if headers and headers.get("Retry-After") == "__DATE__":
            import time

            spec["response_headers"] = {"Retry-After": formatdate(time.time() + 1, usegmt=True)}
        mock_server.add_scenario(scenario, spec)
    healthy = f"h-{uuid.uuid4().hex[:8]}"
    mock_server.add_scenario(healthy, HEALTHY)
    app = make_app(
        _config(mock_server, overrides),
        isolated_home,
        models=[f"faulty/{scenario}", f"mock/{healthy}"],
    )
    async with app.run_test(size=(160, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        prompt = screen.query_one(PromptBox)
        prompt.set_prompt("trigger")
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: bool(screen.runs) and all(r.shown_final for r in screen.runs.values()),
            timeout=20,
            what=f"{name} to end",
        )
        a, b = screen.runs[0], screen.runs[1]
        # The other pane is unaffected.
        assert b.status == "complete"
        assert screen.pane(1).query_one(AssistantMessage).body.source == HEALTHY["text"]
        # What the user sees in pane A.
        reply = screen.pane(0).query_one(AssistantMessage)
        assert a.status == case.status, (a.status, [type(e).__name__ for e in a.events])
        assert reply.status == case.status
        panels = list(screen.pane(0).query(ErrorPanel))
        if case.status == "complete" and not case.notice:
            assert not panels
            assert reply.body.source == a.text and a.text
        if case.message and case.status in ("error", "interrupted"):
            assert panels, "an error panel is shown"
            assert case.message in panels[0].message, panels[0].message
        if case.partial:
            assert reply.body.source and reply.body.source == a.text
        if case.notice:
            notices = str(reply.notices.render())
            assert case.notice in notices, notices
        if name.startswith(("429-retry", "500-", "502-")):
            assert a.final().retries == 1 and a.final().retry_wait_ms > 0
        if name == "multibyte-split":
            assert reply.body.source == "héllo wörld 你好 🎉"
        assert app.is_running


async def test_long_retry_after_shows_a_countdown_and_esc_stops_it(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    scenario = f"f-{uuid.uuid4().hex[:8]}"
    mock_server.add_scenario(
        scenario, {"status": 429, "error_body": ERR, "response_headers": {"Retry-After": "45"}}
    )
    app = make_app(_config(mock_server, {}), isolated_home, models=[f"faulty/{scenario}"])
    async with app.run_test(size=(120, 30)) as pilot:
        from tui.screens.chat import ChatScreen
        from tui.widgets.status_bar import StatusBar

        screen = app.screen
        assert isinstance(screen, ChatScreen)
        prompt = screen.query_one(PromptBox)
        prompt.set_prompt("wait for it")
        await pilot.press("enter")
        status = screen.query_one(StatusBar)
        await wait_until(
            pilot, lambda: "retrying in" in str(status.figures.render()), what="a countdown"
        )
        first = str(status.figures.render())
        assert "Esc cancels" in first and "rate limiting" in first
        await pilot.pause(1.2)
        second = str(status.figures.render())
        assert first != second  # it counts down
        await pilot.press("escape")
        await wait_until(
            pilot,
            lambda: screen.run is not None and screen.run.shown_final,
            timeout=3,
            what="cancel during the wait",
        )
        assert screen.run is not None and screen.run.status == "cancelled"
        assert app.is_running

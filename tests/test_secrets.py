"""Credentials never leak: not across endpoints, not into logs, exports, errors or screenshots."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.mock_server import MockServerProcess
from tests.support.tui import make_app, wait_until
from tui.widgets.error_panel import ErrorPanel
from tui.widgets.prompt_box import PromptBox

OPENAI_CANARIES = {
    "OPENAI_API_KEY": "sk-canary-openai-AAAA1111BBBB2222",
    "OPENAI_ORG_ID": "org-canary-CCCC3333",
    "OPENAI_PROJECT_ID": "proj-canary-DDDD4444",
}


def headers_seen(mock: MockServerProcess) -> str:
    return json.dumps([r.get("headers", {}) for r in mock.log()])


def test_openai_env_never_reaches_another_endpoint(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    """DESIGN §2: canaries in OPENAI_* must not reach a non-OpenAI endpoint (ask and models)."""
    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\n'
    )
    mock_server.reset_log()
    r1 = run_cli("ask", "-m", "mock/mock-instant", "--json", "hi", env=OPENAI_CANARIES)
    r2 = run_cli("models", "mock", "--json", env=OPENAI_CANARIES)
    assert r1.returncode == 0, r1.stderr
    assert r2.returncode == 0, r2.stderr
    log = mock_server.log()
    assert any(r["path"].endswith("/models") for r in log)  # the SDK path was exercised
    assert any(r["path"].endswith("/chat/completions") for r in log)
    seen = headers_seen(mock_server)
    for value in OPENAI_CANARIES.values():
        assert value not in seen
        assert value not in r1.stdout + r1.stderr + r2.stdout + r2.stderr
    assert "authorization" not in seen.lower()  # the endpoint has no key: none is sent


def test_openai_preset_gets_its_own_env(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    """OPENAI_BASE_URL moves the openai preset (here to the mock), which then carries them."""
    env = {**OPENAI_CANARIES, "OPENAI_BASE_URL": mock_server.base_url}
    mock_server.reset_log()
    r = run_cli("ask", "-m", "openai/mock-instant", "--json", "hi", env=env)
    assert r.returncode == 0, r.stderr
    (req,) = [x for x in mock_server.log() if x["path"].endswith("/chat/completions")]
    assert req["headers"]["authorization"] == f"Bearer {OPENAI_CANARIES['OPENAI_API_KEY']}"
    assert req["headers"]["openai-organization"] == OPENAI_CANARIES["OPENAI_ORG_ID"]
    assert req["headers"]["openai-project"] == OPENAI_CANARIES["OPENAI_PROJECT_ID"]
    assert OPENAI_CANARIES["OPENAI_API_KEY"] not in r.stdout + r.stderr


def _canary() -> str:
    return f"sk-canary-{uuid.uuid4().hex}"


def base_url_for(mock: MockServerProcess, protocol: str) -> str:
    return mock.base_url.removesuffix("/v1") + "/v1beta" if protocol == "gemini" else mock.base_url


def key_sent(headers: dict[str, str], protocol: str) -> str:
    """The key as the request carried it, in the protocol's own header."""
    if protocol == "anthropic":
        assert "authorization" not in headers
        return headers["x-api-key"]
    if protocol == "gemini":
        assert "authorization" not in headers
        return headers["x-goog-api-key"]
    return headers["authorization"].removeprefix("Bearer ")


@pytest.mark.parametrize(
    ("source", "protocol"),
    [
        ("env", "chat"),
        ("cmd", "chat"),
        ("keyring", "chat"),
        ("env", "anthropic"),
        ("keyring", "gemini"),
        ("cmd", "responses"),
    ],
)
async def test_a_canary_key_never_shows(
    source: str, protocol: str, isolated_home: Path, mock_server: MockServerProcess
) -> None:
    """The server echoes the key in its error (as some do): the user never sees it."""
    from providers.config import parse_config

    key = _canary()
    name = f"s-{uuid.uuid4().hex[:8]}"
    mock_server.add_scenario(
        name,
        {
            "status": 401,
            "error_body": {
                "error": {
                    "message": f"Incorrect API key provided: {key}",
                    "code": "invalid_api_key",
                }
            },
        },
    )
    endpoint: dict[str, Any] = {
        "base_url": base_url_for(mock_server, protocol),
        "protocol": protocol,
    }
    import os

    env_restore = os.environ.get("CANARY_KEY")
    if source == "env":
        endpoint["api_key_env"] = "CANARY_KEY"
        os.environ["CANARY_KEY"] = key
    elif source == "cmd":
        endpoint["api_key_cmd"] = f"{sys.executable} -c \"print('{key}')\""
    else:
        from providers.keys import Keyring

        Keyring(timeout_s=2).set("mock", key)
    try:
        config = parse_config({"endpoints": {"mock": endpoint}})
        app = make_app(config, isolated_home, models=[f"mock/{name}"])
        async with app.run_test(size=(110, 30)) as pilot:
            prompt = app.screen.query_one(PromptBox)
            prompt.set_prompt("hello")
            await pilot.press("enter")
            await wait_until(pilot, lambda: app.screen.query(ErrorPanel), what="error")
            panel = app.screen.query_one(ErrorPanel)
            assert key not in panel.message and "sk-…" in panel.message
            svg = app.export_screenshot()
            assert key not in svg
            await pilot.press("ctrl+s", "j")
            await pilot.pause(0.3)
            assert app.store is not None
            app.store.flush()
        # The request did carry the key (to the right endpoint only).
        (req,) = [r for r in mock_server.log() if r["model"] == name]
        assert key_sent(req["headers"], protocol) == key
        files = [p for p in (isolated_home / "data").rglob("*") if p.is_file()]
        assert any(p.name == "runs.jsonl" for p in files)
        assert any(p.suffix == ".json" and "exports" in p.parts for p in files)
        for p in files:
            if p.name == "keyring.json":
                continue  # the fake keyring itself (tests only)
            assert key.encode() not in p.read_bytes(), p
    finally:
        if env_restore is None:
            os.environ.pop("CANARY_KEY", None)
        else:
            os.environ["CANARY_KEY"] = env_restore


@pytest.mark.parametrize("protocol", ["chat", "anthropic", "gemini", "responses"])
def test_cli_error_messages_redact_the_key(
    protocol: str, isolated_home: Path, mock_server: MockServerProcess
) -> None:
    key = _canary()
    name = f"s-{uuid.uuid4().hex[:8]}"
    mock_server.add_scenario(
        name, {"status": 401, "error_body": {"error": {"message": f"bad key {key}"}}}
    )
    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{base_url_for(mock_server, protocol)}"\n'
        f'api_key_env = "MOCK_KEY"\nprotocol = "{protocol}"\n'
    )
    r = run_cli("ask", "-m", f"mock/{name}", "hi", env={"MOCK_KEY": key})
    r2 = run_cli("ask", "-m", f"mock/{name}", "--json", "hi", env={"MOCK_KEY": key})
    r3 = run_cli("keys", "list", "mock", env={"MOCK_KEY": key})
    r4 = run_cli("models", "mock", "--json", env={"MOCK_KEY": key})
    assert r.returncode == 1 and "rejected the API key" in r.stderr
    for out in (r, r2, r3, r4):
        assert key not in out.stdout + out.stderr
    assert "sk-…" in r3.stdout
    (req,) = [x for x in mock_server.log() if x["model"] == name][:1]
    assert key_sent(req["headers"], protocol) == key

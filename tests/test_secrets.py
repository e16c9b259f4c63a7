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


# --- issue 15.8: credentials in a base URL's userinfo and in api_key_cmd's stderr -----------


def _data_files(home: Path) -> list[Path]:
    """Files tokenrace wrote (not the fake keyring, not the config the test wrote)."""
    return [
        p for p in home.rglob("*") if p.is_file() and p.name not in ("keyring.json", "config.toml")
    ]


async def _error_then_export(config: Any, home: Path, model: str) -> str:
    """Send a prompt in the app, wait for the error panel, export; the panel's text."""
    app = make_app(config, home, models=[model])
    async with app.run_test(size=(110, 30)) as pilot:
        app.screen.query_one(PromptBox).set_prompt("hello")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.screen.query(ErrorPanel), what="error", timeout=20)
        panel = app.screen.query_one(ErrorPanel)
        shown = panel.message + app.export_screenshot()
        await pilot.press("ctrl+s", "m")
        await pilot.pause(0.3)
        assert app.store is not None
        app.store.flush()
    return shown


async def test_base_url_userinfo_never_shows(isolated_home: Path) -> None:
    """``http://user:secret@host/v1``: the password is in no message, file or export."""
    import socket

    from providers.config import parse_config

    secret = f"pw-canary-{uuid.uuid4().hex}"
    with socket.socket() as s:  # a port nobody listens on: "nothing is listening at …"
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://alice:{secret}@127.0.0.1:{port}/v1"
    config = parse_config({"endpoints": {"ui": {"base_url": url}}})
    shown = await _error_then_export(config, isolated_home, "ui/m")
    assert "nothing is listening at http://***@127.0.0.1" in shown
    assert secret not in shown
    (isolated_home / "config.toml").write_text(f'[endpoints.ui]\nbase_url = "{url}"\n')
    outs = [
        run_cli("ask", "-m", "ui/m", "hi"),
        run_cli("ask", "-m", "ui/m", "--json", "hi"),
        run_cli("models", "ui"),
        run_cli("models", "ui", "--json"),
        run_cli("endpoints", "list"),
        run_cli("export", "--format", "md"),
    ]
    assert any("nothing is listening" in o.stderr for o in outs)
    for o in outs:
        assert secret not in o.stdout + o.stderr, o.args
    (isolated_home / "config.toml").write_text(
        f'[endpoints.ui]\nbase_url = "ftp://alice:{secret}@127.0.0.1/v1"\n'
    )
    bad = run_cli("models")
    assert bad.returncode != 0 and "base_url" in bad.stderr and secret not in bad.stderr
    for p in _data_files(isolated_home):
        assert secret.encode() not in p.read_bytes(), p


async def test_api_key_cmd_stderr_never_shows_a_key(isolated_home: Path) -> None:
    """A key command that fails and echoes the key (or another token) on stderr."""
    from providers.config import parse_config

    key = _canary()
    script = (
        "import sys; print('" + key + "'); "
        "sys.stderr.write('error: cannot unlock " + key + " token " + key[::-1] + "\\n'); "
        "sys.exit(3)"
    )
    cmd = f'{sys.executable} -c "{script}"'
    config = parse_config(
        {"endpoints": {"kc": {"base_url": "http://127.0.0.1:9/v1", "api_key_cmd": cmd}}}
    )
    shown = await _error_then_export(config, isolated_home, "kc/m")
    assert "api_key_cmd exited with status 3" in shown
    assert key not in shown and key[::-1] not in shown
    (isolated_home / "config.toml").write_text(
        f"[endpoints.kc]\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_cmd = '''{cmd}'''\n"
    )
    outs = [
        run_cli("ask", "-m", "kc/m", "hi"),
        run_cli("ask", "-m", "kc/m", "--json", "hi"),
        run_cli("keys", "list"),
        run_cli("models", "kc"),
    ]
    assert any("status 3" in o.stdout + o.stderr for o in outs)
    for o in outs:
        assert key not in o.stdout + o.stderr, o.args
        assert key[::-1] not in o.stdout + o.stderr, o.args
    for p in _data_files(isolated_home):
        data = p.read_bytes()
        assert key.encode() not in data and key[::-1].encode() not in data, p


@pytest.mark.parametrize("protocol", ["anthropic", "gemini"])
def test_native_key_headers_stay_out_of_logs_and_exports(
    protocol: str, isolated_home: Path, mock_server: MockServerProcess
) -> None:
    """``x-api-key`` / ``x-goog-api-key``: a reply that works and an error that echoes the key
    (Gemini answers a bad key with HTTP 400) leave it in no output or log; the app's exports
    of both protocols are checked in ``test_a_canary_key_never_shows``."""
    key = _canary()
    ok, bad = f"s-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    mock_server.add_scenario(ok, {"n_tokens": 3})
    mock_server.add_scenario(
        bad,
        {
            "status": 400,
            "error_body": {"error": {"message": f"API key not valid: {key}", "code": 400}},
        },
    )
    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{base_url_for(mock_server, protocol)}"\n'
        f'api_key_env = "MOCK_KEY"\nprotocol = "{protocol}"\n'
    )
    env = {"MOCK_KEY": key}
    outs = [
        run_cli("ask", "-m", f"mock/{ok}", "--json", "hi", env=env),
        run_cli("ask", "-m", f"mock/{bad}", "hi", env=env),
        run_cli("ask", "-m", f"mock/{bad}", "--json", "hi", env=env),
    ]
    assert outs[0].returncode == 0, outs[0].stderr
    assert outs[1].returncode == 1 and "sk-…" in outs[1].stderr
    (req,) = [x for x in mock_server.log() if x["model"] == ok]
    assert key_sent(req["headers"], protocol) == key
    for out in outs:
        assert key not in out.stdout + out.stderr, out.args
    files = _data_files(isolated_home)
    assert any(p.name == "runs.jsonl" for p in files)  # the metrics log (exports: see above)
    for p in files:
        assert key.encode() not in p.read_bytes(), p

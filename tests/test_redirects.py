"""Issue 15.3: no request of ours follows a redirect to another origin with credentials.

Server A (127.0.0.1:portA) answers every request with a 302 to server B (127.0.0.1:portB:
another origin, by port), which records what it receives. The endpoint's key rides in the
Azure-style ``api-key`` header, a custom secret header and a secret query parameter; none may
reach B, through ``tokenrace models`` (the control plane, and the app's background discovery
that runs it), ``keys set`` validation, or the streaming path, which says "redirected to …".
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.hostile_server import HostileServer


@pytest.fixture
def pair() -> Iterator[tuple[HostileServer, HostileServer]]:
    with HostileServer() as target, HostileServer() as origin:
        origin.redirect_to = target.base_url
        yield origin, target


def _canaries() -> dict[str, str]:
    tag = uuid.uuid4().hex
    return {"key": f"sk-canary-key-{tag}", "header": f"hdr-canary-{tag}", "query": f"q-{tag}"}


def _config(home: Path, origin: HostileServer, c: dict[str, str], azure: bool) -> None:
    headers = '"api-key" = "{api_key}", ' if azure else ""
    (home / "config.toml").write_text(
        "[endpoints.red]\n"
        f'base_url = "{origin.base_url}"\n'
        'api_key_env = "RED_KEY"\n'
        'models = ["m"]\n'
        f'headers = {{ {headers}"X-Secret" = "{c["header"]}" }}\n'
        f'query = {{ "sig" = "{c["query"]}" }}\n'
    )


def _leaked(target: HostileServer, c: dict[str, str]) -> list[str]:
    seen = target.headers_seen() + " ".join(r.path for r in target.requests)
    return [name for name, value in c.items() if value in seen]


@pytest.mark.parametrize("azure", [True, False], ids=["api-key header", "bearer"])
def test_models_does_not_carry_keys_across_a_redirect(
    isolated_home: Path, pair: tuple[HostileServer, HostileServer], azure: bool
) -> None:
    origin, target = pair
    c = _canaries()
    _config(isolated_home, origin, c, azure)
    r = run_cli("models", "red", env={"RED_KEY": c["key"]})
    assert r.returncode == 0, r.stderr
    assert origin.requests, "the request never reached the first server"
    assert _leaked(target, c) == []
    assert not any("authorization" in req.headers for req in target.requests)
    assert f"redirected to {target.base_url}/models" in r.stdout
    assert c["key"] not in r.stdout + r.stderr
    # The app's background discovery runs this very command.
    r = run_cli("models", "--json", "--all", env={"RED_KEY": c["key"]})
    assert r.returncode == 0, r.stderr
    assert _leaked(target, c) == []


def test_key_validation_does_not_follow_a_redirect(
    isolated_home: Path, pair: tuple[HostileServer, HostileServer]
) -> None:
    origin, target = pair
    c = _canaries()
    _config(isolated_home, origin, c, azure=True)
    r = run_cli("keys", "set", "red", input=c["key"] + "\n")
    assert origin.requests
    assert _leaked(target, c) == []
    assert "redirected to" in r.stderr
    assert c["key"] not in r.stdout + r.stderr


def test_streaming_says_redirected_to(
    isolated_home: Path, pair: tuple[HostileServer, HostileServer]
) -> None:
    origin, target = pair
    c = _canaries()
    _config(isolated_home, origin, c, azure=True)
    r = run_cli("ask", "-m", "red/m", "hi", env={"RED_KEY": c["key"]})
    assert r.returncode == 1
    assert f"redirected to {target.base_url}/chat/completions" in r.stderr, r.stderr
    assert "HTTP 302: " not in r.stderr
    assert _leaked(target, c) == []


@pytest.mark.parametrize(
    ("protocol", "header", "path"),
    [
        ("anthropic", "x-api-key", "/messages"),
        ("gemini", "x-goog-api-key", "/models/m:streamGenerateContent"),
    ],
)
def test_native_key_headers_never_cross_a_redirect(
    isolated_home: Path,
    pair: tuple[HostileServer, HostileServer],
    protocol: str,
    header: str,
    path: str,
) -> None:
    """Anthropic's ``x-api-key`` and Gemini's ``x-goog-api-key`` are no Authorization header,
    which is all an HTTP library strips on a cross-origin redirect: none may reach B, through
    the model listing, key validation or a streamed reply."""
    origin, target = pair
    key = f"sk-canary-{uuid.uuid4().hex}"
    (isolated_home / "config.toml").write_text(
        "[endpoints.red]\n"
        f'base_url = "{origin.base_url}"\n'
        f'protocol = "{protocol}"\n'
        'api_key_env = "RED_KEY"\n'
        'models = ["m"]\n'
    )
    outs = [
        run_cli("models", "red", env={"RED_KEY": key}),
        run_cli("keys", "set", "red", input=key + "\n"),
        run_cli("ask", "-m", "red/m", "hi", env={"RED_KEY": key}),
    ]
    # The key did go out, in its protocol's header, to the origin: the test can fail.
    assert any(req.headers.get(header) == key for req in origin.requests), origin.requests
    assert key not in target.headers_seen() + " ".join(r.path for r in target.requests)
    assert not any(header in req.headers for req in target.requests)
    assert f"redirected to {target.base_url}{path}" in outs[2].stderr, outs[2].stderr
    for out in outs:
        assert key not in out.stdout + out.stderr

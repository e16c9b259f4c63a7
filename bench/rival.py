"""Final-token lag of a rival Textual chat client (elia) in a real terminal, as tokenrace's is.

    python bench/rival.py --client elia --tokens 2000 --tps 200 --runs 3 --width 120 --height 40
    python bench/rival.py --client elia --with-tokenrace   # tokenrace too, runs interleaved

The mock server streams a long mixed-markdown reply (prose, lists, code fences) whose last token
is a unique marker word. The client runs in a private tmux server (own socket, status line off)
at a fixed size; the screen is read with `capture-pane -p` until the marker shows. Final-token
lag = perf_counter_ns right after the first capture showing the marker - the server's
perf_counter_ns just before it wrote that token (both CLOCK_MONOTONIC, comparable across
processes). Captures go through one tmux control-mode client (a command line over a pipe, ~0.1 ms,
instead of a fork+exec of tmux, ~2 ms), back to back but at most one per --poll-ms (1 ms), and only
from --lead-ms before the token's scheduled send time, so the poller does not steal a core from
the client while the reply streams. "win ms" is the resolution: the marker appeared within it.

The rival lives in its own venv (`python -m venv /tmp/rivalenv && /tmp/rivalenv/bin/pip install
elia-chat`), pointed at with --python or --exe; it gets a throwaway HOME and XDG dirs, a config
whose only model is the mock (litellm's `openai/` route, dummy key, `api_base` = the mock), and
litellm's offline switches. elia takes the prompt on its command line; tokenrace gets it typed
(send-keys) once its prompt box shows. Writes bench/results/rival.json. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from bench.common import Tmux, TmuxError  # noqa: E402
from tests.support.mock_server import MockServerProcess, tokenize  # noqa: E402

SCENARIO = "rival-reply"
PROMPT = "Write a long answer with prose, lists and code"
TOKENRACE_READY = "Message…"
CLIENTS = ("elia",)
POLLERS = ("control", "exec")
DEFAULT_PYTHON = "/tmp/rivalenv/bin/python"
RESULTS = HERE / "results" / "rival.json"

# fmt: off
_WORDS = (
    "latency", "render", "stream", "token", "widget", "markdown", "terminal", "buffer", "frame",
    "layout", "paint", "cursor", "scroll", "screen", "update", "delta", "reply", "model", "chunk",
    "socket", "engine", "queue", "timer", "budget", "signal", "parser", "glyph", "column",
)
_CODE = (
    ("python", "def total(xs: list[int]) -> int:\n    acc = 0\n    for x in xs:\n"
               "        acc += x * x\n    return acc\n\n\nprint(total([1, 2, 3]))\n"),
    ("bash", 'for f in logs/*.txt; do\n  grep -c ERROR "$f"\ndone | sort -n | tail -3\n'),
    ("rust", "fn main() {\n    let v: Vec<u64> = (1..=8).map(|x| x * x).collect();\n"
             '    println!("{:?}", v);\n}\n'),
)
# fmt: on


class BenchError(RuntimeError):
    """A run could not be measured (client died, marker never shown, ...)."""


# ----------------------------------------------------------------------------- the reply


def _prose(n: int, start: int) -> str:
    """n deterministic words of prose with a sprinkle of inline markup."""
    words = []
    for i in range(n):
        w = _WORDS[(start + i * 5) % len(_WORDS)]
        if i % 17 == 5:
            w = f"**{w}**"
        elif i % 23 == 11:
            w = f"`{w}`"
        words.append(w)
    return " ".join(words)


def _section(k: int) -> str:
    """One markdown section: heading, prose, bullets, numbered steps, a code fence, a quote."""
    lang, code = _CODE[k % len(_CODE)]
    parts = [
        f"## Part {k}: {_WORDS[k % len(_WORDS)].title()}\n\n",
        _prose(45 + k % 4 * 5, k) + ".\n\n",
        *(f"- point {k}.{i}: *{_WORDS[(k + i) % len(_WORDS)]}* matters\n" for i in range(4)),
        "\n",
        *(f"{i}. step {i} of part {k}\n" for i in range(1, 4)),
        "\n",
        f"```{lang}\n{code}```\n\n",
    ]
    if k % 3 == 0:
        parts.append("> A quoted remark before the next part.\n\n")
    return "".join(parts)


def build_reply(n_tokens: int, marker: str) -> str:
    """A deterministic mixed-markdown reply of exactly n_tokens mock tokens, ending with marker."""
    if n_tokens < 2:
        raise ValueError("the reply needs at least 2 tokens")
    head = "# A long streamed answer\n\n"
    text = head
    k = 0
    while True:
        candidate = text + _section(k + 1)
        # Keep room for a closing paragraph of at least 20 words plus the marker.
        if len(tokenize(candidate)) + 21 > n_tokens:
            break
        text = candidate
        k += 1
    if text == head and len(tokenize(head)) + 1 > n_tokens:
        text = ""
    room = n_tokens - len(tokenize(text)) - 1
    closing = (_prose(room, 3) + " ") if room > 0 else ""
    reply = f"{text}{closing}{marker}"
    count = len(tokenize(reply))
    if count != n_tokens:
        raise AssertionError(f"built {count} tokens, wanted {n_tokens}")
    return reply


def new_marker() -> str:
    """A unique marker word (no markdown meaning, never in a prompt)."""
    return f"ENDMARK{secrets.token_hex(5).upper()}"


# ----------------------------------------------------------------------------- tmux


def type_and_enter(tmux: Tmux, prompt: str) -> None:
    """Type the prompt into the focused input and press Enter."""
    tmux.keys(prompt, literal=True)
    tmux.keys("Enter")


# ----------------------------------------------------------------------------- measuring


@dataclass
class LagSample:
    """One measured run."""

    lag_ms: float
    window_ms: float | None  # the marker appeared within this long before it was seen
    start_to_last_send_ms: float  # server: request received -> last token written
    tokens: int
    tight_polls: int
    poll_ms_median: float | None
    client_cpu_s: float | None
    others_cpu_pct: float  # other processes' CPU during the run, % of one core (contention)
    marker: str = field(repr=False)


def _busy_seconds() -> float:
    """System-wide busy CPU seconds so far (all cores)."""
    t = psutil.cpu_times()
    busy: float = (
        sum(t)
        - t.idle
        - getattr(t, "iowait", 0.0)
        - getattr(t, "guest", 0.0)
        - getattr(t, "guest_nice", 0.0)
    )
    return busy


def _chat_record(log: list[dict[str, Any]], model: str) -> dict[str, Any] | None:
    """The latest chat completion request for model in a server log."""
    recs = [r for r in log if r.get("path") == "/v1/chat/completions" and r.get("model") == model]
    return recs[-1] if recs else None


def _screen_error(tmux: Tmux, what: str) -> BenchError:
    """A BenchError carrying the current screen."""
    try:
        screen = tmux.screen()
    except TmuxError:
        screen = "(no screen)"
    return BenchError(f"{what}; screen:\n{screen.rstrip()}")


def measure_run(
    command: Sequence[str] | str,
    env: Mapping[str, str],
    prompt: str,
    marker: str,
    send_prompt: Callable[[Tmux, str], None] | None,
    width: int,
    height: int,
    timeout: float,
    *,
    server: MockServerProcess,
    model: str,
    cwd: Path = REPO,
    ready: str | None = None,
    stream_ns: int | None = None,
    lead_ms: float = 250.0,
    poll_ms: float = 1.0,
    poller: str = "control",
) -> LagSample:
    """Run one client in tmux until the marker shows; return its final-token lag and details."""
    if poller not in POLLERS:
        raise ValueError(f"poller must be one of {POLLERS}")
    server.reset_log()
    deadline = time.monotonic() + timeout
    try:
        tmux = Tmux(
            command, env, width, height, exact_env=True, cwd=cwd, control=poller == "control"
        )
    except TmuxError as exc:
        raise BenchError(str(exc)) from None
    try:
        others_t0 = _busy_seconds() - tmux.bench_cpu_seconds([server.pid])
        wall_t0 = time.perf_counter_ns()
        if ready is not None:
            while ready not in tmux.screen():
                if tmux.dead() or time.monotonic() > deadline:
                    raise _screen_error(tmux, f"{ready!r} never appeared")
                time.sleep(0.05)
        if send_prompt is not None:
            send_prompt(tmux, prompt)
        while (rec := _chat_record(server.log(), model)) is None:
            if tmux.dead() or time.monotonic() > deadline:
                raise _screen_error(tmux, "the client sent no chat request")
            time.sleep(0.05)
        tight_from = rec["received_ns"] + (stream_ns or 0) - int(lead_ms * 1e6)
        while (left := tight_from - time.perf_counter_ns()) > 0:
            time.sleep(min(left / 1e9, 0.2))
            if time.monotonic() > deadline:
                break
        prev_before: int | None = None
        polls = 0
        periods: list[int] = []
        while True:
            before = time.perf_counter_ns()
            screen = tmux.screen()
            after = time.perf_counter_ns()
            if marker in screen:
                break
            if prev_before is not None:
                periods.append(before - prev_before)
            prev_before = before
            polls += 1
            if poll_ms > 0:
                # A floor on the polling period: resolution stays ~poll_ms, at a fraction of a core.
                pause = before + int(poll_ms * 1e6) - time.perf_counter_ns()
                if pause > 0:
                    time.sleep(pause / 1e9)
            if polls % 200 == 0 and (tmux.dead() or time.monotonic() > deadline):
                raise _screen_error(tmux, f"marker {marker} not shown within {timeout:.0f}s")
        cpu = tmux.cpu_seconds()
        others = _busy_seconds() - tmux.bench_cpu_seconds([server.pid]) - others_t0
        others_pct = max(0.0, others) / ((time.perf_counter_ns() - wall_t0) / 1e9) * 100
        rec_id = rec["id"]
        rec = next((r for r in server.log() if r.get("id") == rec_id), None)
        sends = [s for s in (rec or {}).get("sends", []) if s.get("kind") == "token"]
        if rec is None or not sends:
            raise BenchError("the server log has no token sends for the request")
        last = sends[-1]["t_start_ns"]
        if after < last:
            raise BenchError("the marker showed before the server sent it (is it in the prompt?)")
        if prev_before is None and before > last:
            raise BenchError("the marker was already shown at the first capture: raise --lead-ms")
        return LagSample(
            lag_ms=(after - last) / 1e6,
            window_ms=None if prev_before is None else (after - prev_before) / 1e6,
            start_to_last_send_ms=(last - rec["received_ns"]) / 1e6,
            tokens=sum(int(s.get("tokens", 0)) for s in sends),
            tight_polls=polls + 1,
            poll_ms_median=statistics.median(periods) / 1e6 if periods else None,
            client_cpu_s=cpu,
            others_cpu_pct=round(others_pct, 1),
            marker=marker,
        )
    finally:
        tmux.close()


def measure_final_token_lag(
    command: Sequence[str] | str,
    env: Mapping[str, str],
    prompt: str,
    marker: str,
    send_prompt: Callable[[Tmux, str], None] | None,
    width: int,
    height: int,
    timeout: float,
    **kwargs: Any,
) -> float:
    """Final-token lag in ms of one run (see measure_run for the keyword arguments)."""
    return measure_run(
        command, env, prompt, marker, send_prompt, width, height, timeout, **kwargs
    ).lag_ms


# ----------------------------------------------------------------------------- clients


@dataclass
class Target:
    """How to launch one chat client against the mock and hand it the prompt."""

    name: str
    version: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    ready: str | None
    send_prompt: Callable[[Tmux, str], None] | None


def _base_env(home: Path) -> dict[str, str]:
    """The environment every client gets: a throwaway HOME and XDG dirs, UTF-8, no proxies."""
    dirs = {
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_DATA_HOME": home / ".local" / "share",
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_STATE_HOME": home / ".local" / "state",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        **{k: str(v) for k, v in dirs.items()},
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "NO_PROXY": "127.0.0.1,localhost",
    }


def _toml_str(value: str) -> str:
    """A TOML basic string (JSON escaping is a subset)."""
    return json.dumps(value)


def resolve_rival(client: str, python: str | None, exe: str | None) -> tuple[str, list[str]]:
    """(version, command prefix) of the installed rival; raises BenchError if it is missing."""
    if client != "elia":
        raise BenchError(f"unsupported client {client!r} (supported: {', '.join(CLIENTS)})")
    if exe is not None:
        exe_path = Path(exe)
        if not exe_path.is_file() or not os.access(exe_path, os.X_OK):
            raise BenchError(f"elia executable not found: {exe}")
        sibling = exe_path.parent / "python"
        python = str(sibling) if sibling.exists() else python
    python = python or DEFAULT_PYTHON
    if not Path(python).exists():
        raise BenchError(
            f"elia is not installed: {python} does not exist; install it with\n"
            "  python3 -m venv /tmp/rivalenv && /tmp/rivalenv/bin/pip install elia-chat\n"
            "and pass --python /tmp/rivalenv/bin/python (or --exe /tmp/rivalenv/bin/elia)"
        )
    probe = subprocess.run(
        [python, "-c", "import elia_chat, importlib.metadata as m; print(m.version('elia-chat'))"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    if probe.returncode != 0:
        raise BenchError(
            f"elia is not installed for {python} (`import elia_chat` failed); install it with\n"
            f"  {python} -m pip install elia-chat\n{probe.stderr.strip()[-500:]}"
        )
    prefix = [exe] if exe is not None else [python, "-m", "elia_chat"]
    return probe.stdout.strip(), prefix


def elia_target(version: str, prefix: list[str], home: Path, base_url: str, prompt: str) -> Target:
    """elia with a config whose only model is the mock; the prompt goes on its command line."""
    env = _base_env(home)
    conf_dir = Path(env["XDG_CONFIG_HOME"]) / "elia"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "config.toml").write_text(
        'default_model = "bench-mock"\n\n[[models]]\nid = "bench-mock"\n'
        f'name = {_toml_str("openai/" + SCENARIO)}\ndisplay_name = "mock"\n'
        f'api_base = {_toml_str(base_url)}\napi_key = "sk-bench-dummy"\n',
        encoding="utf-8",
    )
    env.update(
        {
            "OPENAI_API_KEY": "sk-bench-dummy",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_OFFLINE_MODE": "true",
            "HF_HUB_OFFLINE": "1",
        }
    )
    return Target("elia", version, [*prefix, prompt], env, home, None, None)


def tokenrace_version() -> str:
    """tokenrace's version (installed metadata, else "dev") plus the git commit."""
    try:
        from importlib.metadata import version

        ver = version("tokenrace")
    except Exception:
        ver = "dev"
    rev = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{ver}+{rev}" if rev else ver


def tokenrace_target(home: Path, base_url: str) -> Target:
    """tokenrace from this repo on the mock endpoint; the prompt is typed, then Enter."""
    env = _base_env(home)
    tr_home = home / "tokenrace"
    tr_home.mkdir(parents=True, exist_ok=True)
    (tr_home / "config.toml").write_text(
        f"[endpoints.mock]\nbase_url = {_toml_str(base_url)}\n", encoding="utf-8"
    )
    env.update(
        {
            "TOKENRACE_HOME": str(tr_home),
            "PYTHONPATH": str(REPO),
            "PYTHON_KEYRING_BACKEND": "tests.support.fake_keyring.FileKeyring",
            "TOKENRACE_FAKE_KEYRING": str(tr_home / "keyring.json"),
        }
    )
    command = [sys.executable, "-m", "tui.cli", "-m", f"mock/{SCENARIO}"]
    return Target(
        "tokenrace", tokenrace_version(), command, env, REPO, TOKENRACE_READY, type_and_enter
    )


# ----------------------------------------------------------------------------- CLI


def _median(values: Sequence[float]) -> float | None:
    """Median, or None for no values."""
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str = ".1f") -> str:
    """A number for the table, '-' for None."""
    return "-" if value is None else format(value, spec)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into SystemExit so the finally blocks clean up."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--client", choices=CLIENTS, default="elia")
    p.add_argument("--python", help=f"the rival's venv python (default {DEFAULT_PYTHON})")
    p.add_argument("--exe", help="the rival's executable (e.g. /tmp/rivalenv/bin/elia)")
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--tps", type=float, default=200.0)
    p.add_argument("--ttft-ms", type=float, default=20.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--width", type=int, default=120)
    p.add_argument("--height", type=int, default=40)
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per run")
    p.add_argument("--lead-ms", type=float, default=250.0, help="tight polling starts this early")
    p.add_argument("--poll-ms", type=float, default=1.0, help="capture period floor (0: none)")
    p.add_argument(
        "--poller",
        choices=POLLERS,
        default="control",
        help="capture through a tmux control client, or exec `tmux capture-pane` each time",
    )
    p.add_argument("--with-tokenrace", action="store_true", help="measure tokenrace too")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.runs < 1 or args.tokens < 2 or args.tps <= 0:
        p.error("--runs >= 1, --tokens >= 2 and --tps > 0 are required")
    signal.signal(signal.SIGTERM, _on_sigterm)
    if shutil.which("tmux") is None:
        print("error: tmux is not installed (apt-get install tmux)", file=sys.stderr)
        return 2
    try:
        version, prefix = resolve_rival(args.client, args.python, args.exe)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stream_ns = int((args.ttft_ms + (args.tokens - 1) * 1000.0 / args.tps) * 1e6)
    samples: dict[str, list[LagSample]] = {args.client: []}
    versions = {args.client: version}
    if args.with_tokenrace:
        samples["tokenrace"] = []
    print(
        f"final-token lag: {args.tokens} tokens at {args.tps:g} tok/s, "
        f"{args.width}x{args.height}, {args.runs} run(s) per client"
    )
    print(f"{'run':>3}  {'client':<10} {'lag ms':>9} {'win ms':>8} {'polls':>6} "
          f"{'poll ms':>8} {'tokens':>6} {'stream s':>8} {'cpu s':>6} {'others%':>7}")  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="rivalbench-") as tmp, MockServerProcess() as srv:
            workdir = Path(tmp)
            for run in range(1, args.runs + 1):
                for name, done in samples.items():
                    marker = new_marker()
                    reply = build_reply(args.tokens, marker)
                    srv.add_scenario(
                        SCENARIO, {"text": reply, "ttft_ms": args.ttft_ms, "tps": args.tps}
                    )
                    home = workdir / f"{name}-{run}"
                    home.mkdir()
                    if name == "tokenrace":
                        target = tokenrace_target(home, srv.base_url)
                        versions[name] = target.version
                    else:
                        target = elia_target(version, prefix, home, srv.base_url, PROMPT)
                    s = measure_run(
                        target.command, target.env, PROMPT, marker, target.send_prompt,
                        args.width, args.height, args.timeout, server=srv, model=SCENARIO,
                        cwd=target.cwd, ready=target.ready,
                        stream_ns=stream_ns, lead_ms=args.lead_ms, poll_ms=args.poll_ms,
                        poller=args.poller,
                    )  # fmt: skip
                    done.append(s)
                    print(
                        f"{run:>3}  {name:<10} {s.lag_ms:>9.1f} {_fmt(s.window_ms):>8} "
                        f"{s.tight_polls:>6} {_fmt(s.poll_ms_median, '.2f'):>8} {s.tokens:>6} "
                        f"{s.start_to_last_send_ms / 1000:>8.2f} {_fmt(s.client_cpu_s, '.2f'):>6} "
                        f"{s.others_cpu_pct:>7.1f}",
                        flush=True,
                    )
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    def summary(name: str) -> dict[str, Any]:
        """JSON for one client's runs."""
        lags = [round(s.lag_ms, 2) for s in samples[name]]
        return {
            "client": name,
            "version": versions[name],
            "runs": lags,
            "median_ms": round(_median(lags) or 0.0, 2),
            "details": [asdict(s) for s in samples[name]],
        }

    result = summary(args.client)
    result["setup"] = {
        "tokens": args.tokens,
        "tps": args.tps,
        "ttft_ms": args.ttft_ms,
        "width": args.width,
        "height": args.height,
        "lead_ms": args.lead_ms,
        "poll_ms": args.poll_ms,
        "poller": args.poller,
        "python": sys.version.split()[0],
    }
    print()
    print(f"{args.client} {version}: median final-token lag {result['median_ms']:.1f} ms")
    if args.with_tokenrace:
        ours = summary("tokenrace")
        result["tokenrace"] = ours
        ratio = result["median_ms"] / ours["median_ms"] if ours["median_ms"] > 0 else None
        result["ratio_rival_over_tokenrace"] = None if ratio is None else round(ratio, 2)
        print(f"tokenrace {ours['version']}: median final-token lag {ours['median_ms']:.1f} ms")
        if ratio is not None:
            print(f"ratio {args.client}/tokenrace: {ratio:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def run(quick: bool = False) -> list[Any]:
    """The rival as rows of ``bench/run.py``: skipped, saying how to install it, when elia is
    not installed; one short run each with ``--quick``."""
    from bench.common import Row

    name = "Final-token lag vs elia, 200 tok/s, 120×40 (same run)"
    python = os.environ.get("TOKENRACE_RIVAL_PYTHON")
    try:
        resolve_rival("elia", python, None)
    except BenchError:
        how = "python3 -m venv /tmp/rivalenv && /tmp/rivalenv/bin/pip install elia-chat"
        return [Row(name, "ratio reported", f"skipped: elia not installed ({how})", None)]
    tokens = 300 if quick else 2000
    out = HERE / "results" / ("rival-quick.json" if quick else "rival.json")
    argv = ["--with-tokenrace", "--runs", "1" if quick else "3", "--tokens", str(tokens)]
    argv += ["--out", str(out), *(["--python", python] if python else [])]
    if main(argv) != 0 or not out.exists():
        return [Row(name, "ratio reported", "crashed: bench/rival.py failed (see above)", False)]
    doc = json.loads(out.read_text())
    ours, ratio = doc["tokenrace"]["median_ms"], doc["ratio_rival_over_tokenrace"]
    measured = (
        f"{tokens:,} tokens: elia {doc['version']} {doc['median_ms']:,.0f} ms, "
        f"tokenrace {ours:,.1f} ms = {ratio:,.0f}× later"
    )
    return [Row(name, "ratio reported", measured, None, doc)]


if __name__ == "__main__":
    sys.exit(main())

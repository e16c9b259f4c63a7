"""Start-up cost of a local model: from typing ``tokenrace`` to the first token of its reply.

``python bench/local_first_token.py [--runs N] [--model local/smollm2-135m ...]``

Each run starts ``tokenrace -m MODEL`` in a real terminal (tmux), sends a question as soon as
the prompt is on screen, and stops the clock when the status bar shows a TTFT (the first token
has arrived). *Cold*: fresh data and cache dirs (a new server; Gemma's file is assembled from its
packages); *warm*: the same dirs again (a new server, the file ready). Either way the OS's file
cache may already hold the model: this machine cannot drop it without root. Needs tmux and
``tokenrace[local]``; not part of ``bench/run.py`` (it compiles nothing, but it takes minutes).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench.common import Row, Tmux, app_env, median, print_table, write_json

QUESTION = "What is the capital of France?"


def first_token_s(model: str, home: Path) -> dict[str, float]:
    """One launch: seconds to the first frame, to the question sent, to the first token."""
    env = app_env(home)
    env["TOKENRACE_CACHE_DIR"] = str(home / "cache")
    tmux = Tmux(f"{sys.executable} -m tui.cli -m {model}", env, width=140, height=40)
    try:
        frame_ns, _ = tmux.wait_for("Message…", 60, 0.02)
        tmux.keys(QUESTION, literal=True)
        tmux.keys("Enter")
        sent_ns = frame_ns
        token_ns, _ = tmux.wait_for(r"TTFT \d", 180, 0.02)
        return {
            "first_frame_s": (frame_ns - tmux.started_ns) / 1e9,
            "question_sent_s": (sent_ns - tmux.started_ns) / 1e9,
            "first_token_s": (token_ns - tmux.started_ns) / 1e9,
        }
    finally:
        tmux.keys("C-q")
        tmux.close()


def run(models: list[str], runs: int) -> list[Row]:
    rows = []
    for model in models:
        cold, warm = [], []
        for _ in range(runs):
            home = Path(tempfile.mkdtemp(prefix="tokenrace-bench-local-"))
            try:
                cold.append(first_token_s(model, home))
                warm.append(first_token_s(model, home))
            finally:
                shutil.rmtree(home, ignore_errors=True)
        for label, samples in (("cold", cold), ("warm", warm)):
            med = median([s["first_token_s"] for s in samples])
            frame = median([s["first_frame_s"] for s in samples])
            assert med is not None and frame is not None
            rows.append(
                Row(
                    f"`tokenrace -m {model}` to first token ({label})",
                    "informational",
                    f"{med:.1f} s (first frame {frame:.2f} s), median of {len(samples)}",
                    None,
                    {"samples": samples},
                )
            )
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--model", action="append", help="default: both bundled models")
    ns = p.parse_args()
    if shutil.which("tmux") is None:
        print("needs tmux", file=sys.stderr)
        return 2
    rows = run(ns.model or ["local/smollm2-135m", "local/gemma-3-270m"], ns.runs)
    print_table(rows)
    write_json("local-first-token", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

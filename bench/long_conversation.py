"""A long conversation: 500 stored messages, 200k tokens. Time to open it (`--resume`, from
process start to its last reply on screen), keystroke-to-echo latency, and the app's RSS."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil

from bench.cold_start import POLL_S
from bench.common import Row, Tmux, app_env, median, now_ns, pct, temp_home
from tests.support.mock_server import MockServerProcess, builtin_scenarios

LAST_WORDS = "the-final-reply-marker"


def make_long_conversation(home: Path, messages: int, tokens: int) -> int:
    """Store a conversation of ``messages`` turns holding about ``tokens`` tokens."""
    from tui.session.conversation import Conversation
    from tui.session.state import UiState
    from tui.session.store import Store, new_id

    spec = builtin_scenarios()["mock-markdown"]
    text = str(spec.get("text") or "".join(spec["tokens"]))
    per_reply = tokens * 4 // (messages // 2)  # ≈ characters per reply (4 chars a token)
    reply = (text * (per_reply // len(text) + 1))[:per_reply]
    store = Store(home / "data" / "history.db")
    conv = Conversation(title="A very long conversation")
    conv.ensure_saved(store)
    for i in range(messages // 2):
        store.save_message(new_id(), conv.id, "user", f"question {i}: tell me more")
        body = reply if i < messages // 2 - 1 else reply + f"\n\n{LAST_WORDS}\n"
        store.save_message(new_id(), conv.id, "assistant", body, model="mock/mock-fast")
    assert store.flush(60)
    store.close()
    UiState(last_model="mock/mock-fast", last_conversation=conv.id).save(
        home / "data" / "state.json"
    )
    return conv.id


def run(quick: bool = False) -> list[Row]:
    messages, tokens = (40, 16_000) if quick else (500, 200_000)
    with MockServerProcess() as server:
        home = temp_home(server.base_url)
        make_long_conversation(home, messages, tokens)
        # Read through one control client; the opening every POLL_S, as cold start reads
        # (bench/cold_start.py): read flat out with a tmux process each time, the poller took
        # a core from the app and the engine starting beside it (same session, three rounds
        # each: 1,740-2,448 ms that way, 1,163-1,715 ms this way, for the same code).
        tmux = Tmux(f"{sys.executable} -m tui.cli --resume", app_env(home), 160, 45, control=True)
        try:
            seen, _ = tmux.wait_for(LAST_WORDS, 30, POLL_S)
            open_ms = (seen - tmux.started_ns) / 1e6
            tmux.wait_for("Message…", 10)
            time.sleep(1.0)
            echoes: list[float] = []
            for ch in "typingspeed"[: 4 if quick else 11]:
                t = now_ns()
                tmux.keys(ch, literal=True)
                typed_before = len(echoes)
                word = "typingspeed"[: typed_before + 1]
                seen_t, _ = tmux.wait_for(f"│ {word}", 5)
                echoes.append((seen_t - t) / 1e6)
            proc = next(
                p
                for p in psutil.Process(tmux.pane_pid()).children(recursive=True)
                if "tui.cli" in " ".join(p.cmdline())
            )
            rss = proc.memory_info().rss / 1e6
        finally:
            tmux.keys("C-q")
            time.sleep(0.3)
            tmux.close()
    med = median(echoes)
    p95 = pct(echoes, 95)
    assert med is not None and p95 is not None
    return [
        Row(
            f"Open a {messages}-message / {tokens // 1000}k-token conversation",
            "≤ 1 s",
            f"{open_ms:.0f} ms",
            open_ms <= 1000,
            {"open_ms": open_ms},
        ),
        Row(
            "Keystroke to echo (long conversation open)",
            "≤ 50 ms",
            f"median {med:.0f} ms, p95 {p95:.0f} ms",
            p95 <= 50,
            {"echo_ms": echoes},
        ),
        Row(
            "App RSS with the long conversation",
            "≤ 300 MB",
            f"{rss:.0f} MB",
            rss <= 300,
            {"rss_mb": rss},
        ),
    ]

"""Soak test: two panes racing for N minutes, replies and failures alternating.

    python bench/soak.py --minutes 30

Drives the real app (headless) and engine process against the mock server. Pane A always
answers; pane B fails every other prompt (HTTP 500, or a connection dropped mid-reply). The
conversation is trimmed to a fixed size, as a long session would scroll old turns away, so any
growth left is a leak. RSS of the app and engine processes is sampled every minute; after a
warm-up, memory growth must stay under 1 MB per 100 replies. Prints a table and writes
bench/results/soak.json. Not part of CI (it runs for minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from providers.config import parse_config  # noqa: E402
from tests.support.mock_server import MockServerProcess  # noqa: E402
from tui.app import TokenraceApp  # noqa: E402
from tui.screens.compare import CompareScreen  # noqa: E402
from tui.session.state import UiState  # noqa: E402
from tui.session.store import Store  # noqa: E402

KEEP_TURNS = 12  # per pane: the visible history stays this long
LIMIT_MB_PER_100 = 1.0


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        rss: int = psutil.Process(pid).memory_info().rss
        return rss / 1e6
    except psutil.Error:
        return 0.0


def trim(screen: CompareScreen) -> None:
    """Drop the oldest turns (widgets and history) beyond KEEP_TURNS per pane."""
    for pane in screen.panes:
        turns = screen.conv.turns(pane.index)
        if len(turns) > KEEP_TURNS:
            del turns[: len(turns) - KEEP_TURNS]
        children = list(pane.messages.children)
        extra = len(children) - KEEP_TURNS
        if extra > 0:
            for child in children[:extra]:
                child.remove()


def slope_per_100(samples: list[dict[str, Any]], key: str) -> float | None:
    """Least-squares MB per 100 replies over the samples after warm-up."""
    pts = [(s["replies"], s[key]) for s in samples]
    if len(pts) < 2:
        return None
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    den = sum((x - mx) ** 2 for x, _ in pts)
    if den == 0:
        return None
    return float(100 * sum((x - mx) * (y - my) for x, y in pts) / den)


async def soak(minutes: float, sample_s: float, warmup_s: float) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="tokenrace-soak-"))
    os.environ["TOKENRACE_HOME"] = str(home)
    with MockServerProcess() as server:
        server.add_scenario("soak-a", {"n_tokens": 120, "ttft_ms": 20, "tps": 400})
        config = parse_config(
            {"endpoints": {"mock": {"base_url": server.base_url}}, "engine": {"retries": 0}}
        )
        store = Store(home / "history.db")
        app = TokenraceApp(
            config,
            store=store,
            state=UiState(),
            save_state=False,
            models=["mock/soak-a", "mock/soak-b"],
            discover_models=False,
            probe_loopback=False,
        )
        samples: list[dict[str, Any]] = []
        replies = failures = 0
        async with app.run_test(size=(160, 40)) as pilot:
            screen = app.screen
            assert isinstance(screen, CompareScreen)
            start = time.monotonic()
            next_sample = start
            i = 0
            while time.monotonic() - start < minutes * 60:
                failing = i % 2 == 1
                spec: dict[str, Any] = {"n_tokens": 120, "ttft_ms": 20, "tps": 400}
                if failing:
                    spec = (
                        {"status": 500}
                        if i % 4 == 1
                        else {"n_tokens": 120, "ttft_ms": 20, "tps": 400, "drop_after_tokens": 40}
                    )
                server.add_scenario("soak-b", spec)
                screen.send(f"prompt {i}: tell me something")
                while not (screen.runs and all(r.shown_final for r in screen.runs.values())):
                    await pilot.pause(0.02)
                for r in screen.runs.values():
                    if r.status in ("complete", "length"):
                        replies += 1
                    else:
                        failures += 1
                trim(screen)
                i += 1
                now = time.monotonic()
                if now >= next_sample:
                    await pilot.pause(0.2)
                    sample = {
                        "t_s": round(now - start, 1),
                        "prompts": i,
                        "replies": replies,
                        "failures": failures,
                        "app_mb": round(rss_mb(os.getpid()), 2),
                        "engine_mb": round(rss_mb(app.engine.pid), 2),
                    }
                    samples.append(sample)
                    print(
                        f"{sample['t_s']:>7.0f} s  {i:>6} prompts  {replies:>6} replies  "
                        f"{failures:>5} failures  app {sample['app_mb']:>7.1f} MB  "
                        f"engine {sample['engine_mb']:>6.1f} MB",
                        flush=True,
                    )
                    next_sample += sample_s
        store.close()
    after = [s for s in samples if s["t_s"] >= warmup_s]
    result = {
        "minutes": minutes,
        "prompts": i,
        "replies": replies,
        "failures": failures,
        "samples": samples,
        "app_mb_per_100_replies": slope_per_100(after, "app_mb"),
        "engine_mb_per_100_replies": slope_per_100(after, "engine_mb"),
        "limit_mb_per_100_replies": LIMIT_MB_PER_100,
    }
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--sample-seconds", type=float, default=60.0)
    p.add_argument("--warmup-seconds", type=float, default=120.0)
    ns = p.parse_args()
    result = asyncio.run(soak(ns.minutes, ns.sample_seconds, ns.warmup_seconds))
    out = HERE / "results" / "soak.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    app_g, eng_g = result["app_mb_per_100_replies"], result["engine_mb_per_100_replies"]
    ok = all(g is not None and g < LIMIT_MB_PER_100 for g in (app_g, eng_g))
    print(
        f"\n{result['replies']} replies, {result['failures']} failures in "
        f"{ns.minutes:g} min; growth after warm-up: app "
        f"{app_g if app_g is None else round(app_g, 3)} MB/100 replies, engine "
        f"{eng_g if eng_g is None else round(eng_g, 3)} MB/100 replies "
        f"(limit {LIMIT_MB_PER_100}) → {'PASS' if ok else 'FAIL'}"
    )
    print(f"wrote {out.relative_to(REPO)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

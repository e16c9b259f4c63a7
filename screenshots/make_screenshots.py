"""Regenerate the README's screenshots by driving the real app against the mock server.

    python screenshots/make_screenshots.py            # every scene, both themes
    python screenshots/make_screenshots.py chat-done  # one scene
    python screenshots/make_screenshots.py browser    # `tokenrace serve` in headless Chromium

Each scene starts the mock server, the real engine process and the app (headless, at a fixed
terminal size), types into it with Pilot, and saves an SVG per theme. The figures on screen are
real measurements of that run, so they differ slightly from run to run.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from providers.config import parse_config  # noqa: E402
from tests.support.mock_server import MockServerProcess  # noqa: E402
from tui.app import TokenraceApp  # noqa: E402
from tui.session.state import UiState  # noqa: E402
from tui.session.store import Store  # noqa: E402

THEMES = ("tokenrace-dark", "tokenrace-light")
SIZE = (120, 36)
PROMPT = "Show me a Python retry helper with exponential backoff, and explain it."

REPLY = """A retry helper with **exponential backoff** waits longer after each failure:

```python
import random
import time

def retry(fn, attempts=5, base=0.25, cap=8.0):
    for i in range(attempts):
        try:
            return fn()
        except OSError:
            if i == attempts - 1:
                raise
            delay = min(cap, base * 2 ** i)
            time.sleep(delay * (1 + random.random() / 4))
```

- The delay doubles: 0.25 s, 0.5 s, 1 s, 2 s…
- **Jitter** spreads retries out, so clients do not stampede.
- `cap` keeps the longest wait bounded.

| attempt | delay |
|---|---|
| 1 | 0.25 s |
| 2 | 0.5 s |
| 3 | 1.0 s |

Use it for idempotent calls only: retrying a payment is a bug.
"""

Scene = Callable[[MockServerProcess, str, Path], Awaitable[None]]


def make_app(
    server: MockServerProcess, theme: str, home: Path, models: list[str], **kwargs: Any
) -> TokenraceApp:
    config = parse_config(
        {
            "endpoints": {
                "demo": {"base_url": server.base_url, "models": ["fast-model", "slow-model"]}
            },
            "prices": {
                "demo/fast-model": {"input": 0.15, "output": 0.60, "context": 128000},
                "demo/slow-model": {"input": 2.50, "output": 10.00, "context": 200000},
            },
        }
    )
    return TokenraceApp(
        config,
        store=Store(home / "history.db"),
        state=UiState(theme=theme),
        models=models,
        discover_models=False,
        save_state=False,
        probe_loopback=False,
        **kwargs,
    )


async def _send(pilot: Any, text: str) -> None:
    from tui.widgets.prompt_box import PromptBox

    prompt = pilot.app.screen.query_one(PromptBox)
    prompt.set_prompt(text)
    await pilot.press("enter")


async def chat(server: MockServerProcess, theme: str, out: Path, *, done: bool) -> None:
    server.add_scenario(
        "fast-model",
        {
            "text": REPLY,
            "ttft_ms": 180,
            "tps": 60,
            "reasoning": "They want a reusable helper; mention jitter and idempotency.",
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(server, theme, Path(tmp), ["demo/fast-model"])
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.5)
            await _send(pilot, PROMPT)
            if done:
                from tui.widgets.assistant_message import AssistantMessage

                for _ in range(400):
                    await pilot.pause(0.05)
                    replies = list(app.screen.query(AssistantMessage))
                    if replies and replies[0].status != "streaming":
                        break
                await pilot.pause(0.4)
            else:
                await pilot.pause(2.2)
            await pilot.pause(0.4)
            app.save_screenshot(str(out))


async def chat_mid(server: MockServerProcess, theme: str, out: Path) -> None:
    await chat(server, theme, out, done=False)


async def chat_done(server: MockServerProcess, theme: str, out: Path) -> None:
    await chat(server, theme, out, done=True)


async def race(server: MockServerProcess, theme: str, out: Path, *, done: bool) -> None:
    server.add_scenario(
        "fast-model", {"text": REPLY, "ttft_ms": 180, "tps": 90, "prompt_tokens": 40}
    )
    server.add_scenario(
        "slow-model", {"text": REPLY, "ttft_ms": 650, "tps": 35, "prompt_tokens": 40}
    )
    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(server, theme, Path(tmp), ["demo/fast-model", "demo/slow-model"])
        async with app.run_test(size=(150, 40)) as pilot:
            await pilot.pause(0.5)
            await _send(pilot, PROMPT)
            if done:
                for _ in range(600):
                    await pilot.pause(0.05)
                    screen: Any = app.screen
                    if screen.runs and all(r.shown_final for r in screen.runs.values()):
                        break
            else:
                await pilot.pause(2.0)
            await pilot.pause(0.4)
            app.save_screenshot(str(out))


async def race_mid(server: MockServerProcess, theme: str, out: Path) -> None:
    await race(server, theme, out, done=False)


async def race_done(server: MockServerProcess, theme: str, out: Path) -> None:
    await race(server, theme, out, done=True)


async def protocols(server: MockServerProcess, theme: str, out: Path) -> None:
    """One pane per wire protocol, the same model behind each, a tool offered and called."""
    import json

    server.add_scenario(
        "demo-model",
        {
            "text": "Let me look that up with the weather tool.",
            "ttft_ms": 150,
            "tps": 80,
            "prompt_tokens": 1200,
            "cached_tokens": 1000,
            "tool_call": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 3}'},
            "tool_chunk_chars": 6,
            "finish_reason": "tool_calls",
        },
    )
    root = server.base_url.removesuffix("/v1")
    names = ("chat", "anthropic", "gemini", "responses")
    endpoints = {
        f"{p}-api": {
            "base_url": f"{root}/v1beta" if p == "gemini" else server.base_url,
            "protocol": p,
        }
        for p in names
    }
    models = [f"{p}-api/demo-model" for p in names]
    price = {"input": 3.0, "output": 15.0, "cached_input": 0.3}
    config = parse_config({"endpoints": endpoints, "prices": {m: price for m in models}})
    tool = {
        "name": "get_weather",
        "description": "Weather forecast for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        tools = Path(tmp) / "tools.json"
        tools.write_text(json.dumps([tool]))
        app = TokenraceApp(
            config,
            store=Store(Path(tmp) / "history.db"),
            state=UiState(theme=theme),
            models=models,
            discover_models=False,
            save_state=False,
            probe_loopback=False,
        )
        async with app.run_test(size=(170, 40)) as pilot:
            await pilot.pause(0.5)
            await _send(pilot, f"/tools {tools}")
            await _send(pilot, "What will the weather be in Paris for the next three days?")
            for _ in range(600):
                await pilot.pause(0.05)
                screen: Any = app.screen
                if screen.runs and all(r.shown_final for r in screen.runs.values()):
                    break
            await pilot.pause(0.6)
            app.save_screenshot(str(out))


def browser(server: MockServerProcess, out: Path) -> None:
    """A race in `tokenrace serve`, in headless Chromium (Debian's, through Playwright)."""
    from tests.support.browser import chromium, open_app, serve

    server.add_scenario("fast-model", {"text": REPLY, "ttft_ms": 180, "tps": 90})
    server.add_scenario("slow-model", {"text": REPLY, "ttft_ms": 650, "tps": 35})
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(
            f'[endpoints.demo]\nbase_url = "{server.base_url}"\n'
            'models = ["fast-model", "slow-model"]\n'
            '[prices."demo/fast-model"]\ninput = 0.15\noutput = 0.60\n'
            '[prices."demo/slow-model"]\ninput = 2.50\noutput = 10.00\n'
        )
        env = {"TOKENRACE_HOME": tmp, "TOKENRACE_CONFIG": str(config)}
        models = ["-m", "demo/fast-model", "-m", "demo/slow-model"]
        with serve(*models, env=env) as served, chromium() as chrome:
            term = open_app(chrome, served.url, width=1400, height=760)
            term.wait_for("Message…", timeout=60)
            term.type(PROMPT)
            term.press("Enter")
            term.wait_for(r"(?s)(✓ complete.*){2}", timeout=60)
            term.page.wait_for_timeout(500)
            term.page.screenshot(path=str(out))


SCENES: dict[str, Scene] = {
    "chat-mid": chat_mid,
    "chat-done": chat_done,
    "compare-mid": race_mid,
    "compare-done": race_done,
    "protocols": protocols,
}


async def main(names: list[str]) -> None:
    os.environ.setdefault("TOKENRACE_HOME", tempfile.mkdtemp(prefix="tokenrace-shots-"))
    os.environ["TOKENRACE_CONFIG"] = "/home/user/.config/tokenrace/config.toml"
    with MockServerProcess() as server:
        for name in names:
            if name == "browser":
                out = HERE / "browser-race.png"
                await asyncio.to_thread(browser, server, out)  # Playwright's API is synchronous
                print(f"wrote {out.relative_to(REPO)}")
                continue
            for theme in THEMES:
                out = HERE / f"{name}-{theme}.svg"
                await SCENES[name](server, theme, out)
                print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    chosen = sys.argv[1:] or [*SCENES, "browser"]
    unknown = [n for n in chosen if n not in SCENES and n != "browser"]
    if unknown:
        sys.exit(f"unknown scene(s): {', '.join(unknown)}; known: {', '.join(SCENES)}, browser")
    asyncio.run(main(chosen))

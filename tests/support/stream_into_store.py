"""Run the real app headless, send one prompt, and keep streaming until killed.

Used by the crash test: the test SIGKILLs this process mid-reply and reopens the database.
    python -m tests.support.stream_into_store BASE_URL MODEL
"""

from __future__ import annotations

import asyncio
import sys

from providers import paths
from providers.config import parse_config
from tui.app import TokenraceApp
from tui.session.state import UiState
from tui.session.store import Store


async def main(base_url: str, model: str) -> None:
    config = parse_config({"endpoints": {"mock": {"base_url": base_url}}})
    store = Store(paths.data_dir() / "history.db")
    app = TokenraceApp(
        config,
        store=store,
        state=UiState(),
        models=[f"mock/{model}"],
        discover_models=False,
        save_state=False,
        probe_loopback=False,
    )
    async with app.run_test(size=(100, 30)) as pilot:
        from tui.widgets.prompt_box import PromptBox

        prompt = app.screen.query_one(PromptBox)
        prompt.set_prompt("count slowly")
        await pilot.press("enter")
        print("SENT", flush=True)
        while True:
            await pilot.pause(0.1)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

"""Replay and export, shared by the chat and compare screens."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual.screen import Screen

from providers.metrics import RunMetrics
from tui.session.race import summarise


def _runs_of(screen: Any) -> list[Any]:
    """The LiveRuns the screen has going (one in chat, one per pane in compare)."""
    if hasattr(screen, "runs"):
        return list(screen.runs.values())
    return [screen.run] if getattr(screen, "run", None) is not None else []


def replay_prompt(screen: Any, times: int) -> None:
    """Run the last prompt again ``times`` times in a row, each on the same history, then
    show median / p95 TTFT, median decode rate, tokens and cost per model."""
    if screen.streaming:
        screen.notify("Still streaming: Esc cancels it first.", severity="warning")
        return
    if not any(t.role == "user" for t in screen.conv.turns(0)):
        screen.notify("Nothing to replay yet: send a prompt first.")
        return
    screen.app.run_worker(_replay(screen, times), group="replay", exit_on_error=False)


async def _replay(screen: Any, times: int) -> None:
    finished: list[tuple[str, RunMetrics]] = []
    for k in range(times):
        if not screen.is_attached:
            return
        screen.retry()
        runs = _runs_of(screen)
        if times > 1:
            screen.notify(f"Replay {k + 1} of {times}…", timeout=2)
        while screen.streaming:  # noqa: ASYNC110 - runs end in their own workers
            await asyncio.sleep(0.05)
        await asyncio.sleep(0)
        statuses = [r.final() for r in runs]
        finished += [(r.model, m) for r, m in zip(runs, statuses, strict=True)]
        if any(m.status == "cancelled" for m in statuses):
            screen.notify("Replay stopped: a run was cancelled.", severity="warning")
            break
    if times > 1 and finished:
        from tui.screens.replay_results import ReplayResults

        rows = [{"model": model, **m.to_json(), "status": m.status} for model, m in finished]
        screen.app.push_screen(ReplayResults(summarise(rows), len(finished)))


def export_conversation(screen: Screen[Any]) -> None:
    """Ask for a format and write the conversation's export."""
    from tui.screens.export_dialog import ExportDialog

    app: Any = screen.app
    conv = getattr(screen, "conv", None)
    if conv is None or not conv.saved or app.store is None:
        screen.notify("Nothing to export yet (or history is off).")
        return

    def chosen(fmt_name: str | None) -> None:
        if fmt_name is None:
            return
        from tui.session.export import ExportError, write_export

        app.store.flush()
        try:
            path = write_export(app.store, conv.id, fmt_name)
        except ExportError as exc:
            screen.notify(str(exc), severity="error")
            return
        if app.is_web:  # tokenrace serve: the file is on the server; the browser downloads it
            mime = {"md": "text/markdown", "json": "application/json", "html": "text/html"}
            app.deliver_binary(
                path, save_filename=Path(path).name, mime_type=mime.get(fmt_name, "text/plain")
            )
            screen.notify(f"Exported {Path(path).name}: your browser downloads it", timeout=8)
            return
        screen.notify(f"Exported to {path}", timeout=8)

    app.push_screen(ExportDialog(), chosen)

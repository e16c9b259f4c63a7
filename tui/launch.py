"""Start the TUI: load config, open the store, build the app with its services, run it."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from providers import paths
from providers.config import ConfigError, load_config
from providers.local import LocalError, alias_for, check_gguf, missing_modules, with_local

if TYPE_CHECKING:
    from tui.session.conversation import Conversation
    from tui.session.state import UiState
    from tui.session.store import Store


class TerminalOutput:
    """The terminal stream Textual writes to, surviving the terminal going away.

    Textual's writer thread writes frames to ``sys.__stderr__`` and dies on the first error;
    when the terminal is closed (SIGHUP) those writes fail with EIO, the thread's bounded queue
    fills, and the app's next frame blocked forever, before the SIGHUP handler could save the
    replies. Writes to a terminal that is gone are dropped instead.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return int(self._stream.write(text))
            except OSError:
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except OSError:
                self.gone = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def resume_conversation(store: Store, state: UiState) -> Conversation | None:
    """The conversation --resume reopens: the last one used, else the newest stored."""
    from tui.session.conversation import Conversation

    for conv_id in (state.last_conversation, store.latest_conversation()):
        if conv_id is not None:
            conv = Conversation.load(store, conv_id)
            if conv is not None:
                return conv
    return None


def local_problem(gguf: str) -> str | None:
    """Why ``--local PATH`` cannot work, said before the app starts; None when it can."""
    from pathlib import Path

    try:
        check_gguf(Path(gguf).expanduser())
    except LocalError as exc:
        return str(exc)
    missing = missing_modules(bundled=False)
    if missing:
        from providers.local import INSTALL_HINT

        return f"serving a GGUF needs {', '.join(missing)}; {INSTALL_HINT}"
    return None


def blind_conversation(
    models: list[str], show_timings: bool = False, live_replies: bool = False
) -> tuple[Conversation, list[str]]:
    """A new blind race of ``models`` in a shuffled pane order, and that order."""
    from tui.session.blind import BlindRace, shuffled
    from tui.session.conversation import Conversation

    race = BlindRace(shuffled(models), show_timings=show_timings, live_replies=live_replies)
    return Conversation(mode="compare", blind=race), list(race.models)


def run_tui(
    models: list[str],
    resume: bool = False,
    local_gguf: str | None = None,
    blind: dict[str, bool] | None = None,
) -> int:
    """Run the app; returns the exit status."""
    try:
        config = with_local(load_config(), local_gguf)
    except ConfigError as exc:
        print(f"tokenrace: config error: {exc}", file=sys.stderr)
        print("Fix the file (it was not changed) and start tokenrace again.", file=sys.stderr)
        return 2
    for m in models:
        if "/" not in m:
            print(f"tokenrace: expected ENDPOINT/MODEL, got {m!r}", file=sys.stderr)
            return 2
        if m.split("/", 1)[0] not in config.endpoints:
            print(
                f"tokenrace: unknown endpoint in {m!r}; known: "
                f"{', '.join(sorted(config.endpoints))}",
                file=sys.stderr,
            )
            return 2
    if local_gguf:
        problem = local_problem(local_gguf)
        if problem:
            print(f"tokenrace: --local {local_gguf}: {problem}", file=sys.stderr)
            return 2
        if not models:
            models = [f"local/{alias_for(local_gguf)}"]

    from tui.app import TokenraceApp
    from tui.session.state import UiState
    from tui.session.store import Store, StoreError

    state = UiState.load()
    app_holder: list[TokenraceApp] = []
    early: list[str] = []  # said before the app exists (a salvage at start-up, --resume)

    def on_store_error(message: str) -> None:
        if app_holder:
            app_holder[0].store_error(message)
        else:
            early.append(message)
            print(f"tokenrace: {message}", file=sys.stderr)

    store: Store | None
    store_problem = None
    try:
        store = Store(paths.data_dir() / "history.db", on_error=on_store_error)
    except StoreError as exc:
        store, store_problem = None, str(exc)
    if store is not None and store.recovered:
        from tui.session.metrics_log import log_recovered

        log_recovered(store.recovered, config)
    conversation = None
    if resume and store is not None:
        conversation = resume_conversation(store, state)
        if conversation is None:
            print("tokenrace: no conversation to resume; starting a new one", file=sys.stderr)
    if blind is not None and conversation is None:
        conversation, models = blind_conversation(models, **blind)
    app = TokenraceApp(
        config,
        store=store,
        state=state,
        models=models,
        conversation=conversation,
        load_config=lambda: with_local(load_config(), local_gguf),
    )
    app_holder.append(app)
    for message in early:
        app.call_later(app.notify, message, severity="error", timeout=30)
    if store_problem:
        app.call_later(
            app.notify,
            f"{store_problem}; history is off for this session",
            severity="error",
            timeout=15,
        )
    terminal = sys.__stderr__
    if terminal is not None:
        # typeshed declares sys.__stderr__ a Final TextIOWrapper; Textual's writer thread
        # writes to whatever it is, so it is replaced on purpose with a stream-like wrapper.
        sys.__stderr__ = TerminalOutput(terminal)  # type: ignore[misc,assignment]
    from tui import terminal_input

    terminal_input.install()  # keys and pastes as real terminals send them
    try:
        app.run()
    finally:
        sys.__stderr__ = terminal  # type: ignore[misc]
        if store is not None:
            # Waits for the writes still queued; what the database refuses is saved elsewhere.
            app_holder.clear()
            store.close()
    code = app.return_code or 0
    _exit_if_threads_linger(code)
    return code


def _exit_if_threads_linger(code: int, wait_s: float = 2.0) -> None:
    """Exit now if a thread would keep the process alive after the app has ended.

    Everything is saved by now. Textual's input thread, once its terminal is gone, can spin on
    a descriptor that always reads empty, and the interpreter would wait for it at exit for
    ever, at 40% of a core (seen after a closed tmux window).
    """
    import threading

    main = threading.main_thread()
    deadline = time.monotonic() + wait_s
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

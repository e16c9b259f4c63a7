"""Start the TUI: load config, open the store, build the app with its services, run it."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from providers import paths
from providers.config import ConfigError, load_config
from providers.local import LocalError, alias_for, check_gguf, missing_modules, with_local
from providers.model_ref import ModelRef

if TYPE_CHECKING:
    import subprocess

    from tui.session.conversation import Conversation
    from tui.session.state import UiState
    from tui.session.store import Store


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
    worker: subprocess.Popen[bytes] | None = None,
) -> int:
    """Run the app; returns the exit status. ``worker`` is an engine process started early
    (``providers.prespawn``): the app adopts it; the caller stops it if the app never ran."""
    try:
        config = with_local(load_config(), local_gguf)
    except ConfigError as exc:
        print(f"tokenrace: config error: {exc}", file=sys.stderr)
        print("Fix the file (it was not changed) and start tokenrace again.", file=sys.stderr)
        return 2
    for m in models:
        try:
            ref = ModelRef.parse(m)
        except ValueError as exc:
            print(f"tokenrace: {exc}", file=sys.stderr)
            return 2
        if ref.endpoint not in config.endpoints:
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
            models = [str(ModelRef("local", alias_for(local_gguf)))]

    # In a terminal the screen's size is the terminal's, read from it at start and at every
    # resize: an exported COLUMNS or LINES (a shell's ``checkwinsize``, a test runner's) would
    # fix it instead (``shutil.get_terminal_size`` reads them first), and resizes would be
    # ignored. In a browser (``tokenrace serve``: textual-serve names its driver in
    # TEXTUAL_DRIVER) COLUMNS is how the page's size reaches the app: kept.
    if "TEXTUAL_DRIVER" not in os.environ:
        for name in ("COLUMNS", "LINES"):
            os.environ.pop(name, None)

    from providers.remote import EngineProcess
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
        engine=EngineProcess(config, log_path=paths.data_dir() / "engine.log", early=worker),
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
    from tui import terminal_input
    from tui.textual_private import exit_if_threads_linger, terminal_output_guard

    terminal_input.install()  # keys and pastes as real terminals send them
    try:
        with terminal_output_guard():
            app.run()
    finally:
        if store is not None:
            # Waits for the writes still queued; what the database refuses is saved elsewhere.
            app_holder.clear()
            store.close()
    code = app.return_code or 0
    exit_if_threads_linger(code)
    return code

"""The tokenrace Textual app: screens, keys, themes, the engine process and the store."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.screen import Screen

from providers import paths
from providers.config import Config
from providers.discovery import find_default_model
from providers.inert import inert, inert_label
from providers.metrics import RunMetrics
from providers.model_ref import endpoint_of
from providers.remote import EngineProcess
from themes import DEFAULT_DARK, all_specs, semantic_variables, to_textual
from tui.actions import ACTIONS
from tui.browser import copy_problem
from tui.messages import EngineNewsArrived
from tui.session import blind
from tui.session.blind import BlindRace
from tui.session.catalog import (
    PICKER_REDISCOVER_S,
    ModelEntry,
    discover,
    merge,
    static_catalog,
)
from tui.session.conversation import Conversation, LiveRun
from tui.session.state import UiState
from tui.session.store import Store
from tui.textual_private import switchable_default_screen

if TYPE_CHECKING:
    from tui.screens.chat import ChatScreen
    from tui.screens.race_screen import RaceScreen

# The collector (see _after_first_frame): only young passes run by themselves (10,000
# objects, about 2 ms); the app collects the older generations when the last reply ends (just
# after its final frame); a one-second check freezes what long replies promote meanwhile.
GC_THRESHOLDS = (10_000, 1_000_000, 1_000_000)
GC_CHECK_S = 1.0
GC_AFTER_REPLY_S = 0.1
GC_MIDDLE_QUIET = 20  # young passes before the middle generation is collected, when quiet
GC_MIDDLE_ANYWAY = 300  # while streaming without a pause (~30 s of two fast panes): freeze
GC_FULL_QUIET = 10  # middle collections before a full one, when quiet
DISCOVERY_DELAY_S = 5.0
# Keys typed before the first screen has its prompt wait for it at most this long (on_event).
TYPEAHEAD_HOLD_S = 5.0
# Closing the terminal (SIGHUP) or `kill` (SIGTERM): replies end as interrupted and are saved,
# the terminal is restored, and the exit status is 128 + the signal, as if it had killed us.
# A stop by signal that has not finished in this long is forced (the database waits 10 s for a
# lock before it saves elsewhere, so this is longer).
STOP_GRACE_S = 15.0
STOP_SIGNALS = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s
)


def has_function_key(keys: str) -> bool:
    """``alt+g,shift+f5`` → True: one of the keys is an F-key (``f1``, ``shift+f12`` …)."""
    for key in keys.split(","):
        name = key.strip().rsplit("+", 1)[-1]
        if name[:1] == "f" and name[1:].isdigit():
            return True
    return False


def _bindings() -> list[BindingType]:
    return [
        Binding(
            a.keys,
            a.action.removeprefix("app."),
            a.label or a.description,
            show=a.footer,
            tooltip=a.description,
            # F-keys act from the prompt too: TextArea binds F6/F7 for selection.
            priority=a.priority or has_function_key(a.keys),
            id=a.id,
        )
        for a in ACTIONS
    ]


def _preload() -> None:
    """What sending a prompt needs and start-up does not import: the markdown renderer, the
    slash commands and ``@file`` references (read at every submit)."""
    from tui.session import commands, file_refs  # noqa: F401
    from tui.widgets.streaming_markdown import preload

    preload()


class TokenraceApp(App[None]):
    """Chat with any OpenAI-compatible endpoint and race models on honest numbers."""

    CSS_PATH = "app.tcss"
    TITLE = "tokenrace"
    BINDINGS = _bindings()
    ENABLE_COMMAND_PALETTE = True

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """A toast. Never markup, whatever the caller says: messages quote model ids, server
        errors and what the user typed (``/model [/bogus]`` crashed as markup), and they are
        made inert, so a server's text cannot steer the terminal from a toast either."""
        race = self.blind_race()
        super().notify(
            inert(blind.scrub(race, message)),
            title=inert_label(blind.scrub(race, title)),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    def blind_race(self) -> BlindRace | None:
        """The unrevealed blind race on screen (under any dialog), whose names stay hidden."""
        for screen in reversed(self.screen_stack):
            race = getattr(getattr(screen, "conv", None), "blind", None)
            if isinstance(race, BlindRace) and race.hiding:
                return race
        return None

    def blind_locked(self) -> bool:
        """Whether an unrevealed blind race forbids what would show its models (says so)."""
        if self.blind_race() is None:
            return False
        self.notify(blind.LOCKED, severity="warning")
        return True

    def __init__(
        self,
        config: Config,
        *,
        engine: EngineProcess | None = None,
        store: Store | None = None,
        state: UiState | None = None,
        models: list[str] | None = None,
        conversation: Conversation | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
        probe_loopback: bool = True,
        save_state: bool = True,
        start_engine: bool = True,
        discover_models: bool = True,
        load_config: Callable[[], Config] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        # How to read config.toml again (F5 on the welcome page, the palette, a picker
        # opening); the command line passes its own (it knows --local).
        self.load_config = load_config
        self.engine = engine or EngineProcess(
            config, log_path=paths.data_dir() / "engine.log", on_died=self._engine_died
        )
        if self.engine.on_died is None:
            self.engine.on_died = self._engine_died
        self.engine.on_status = self._engine_status
        self.store = store
        self.state = state or UiState()
        self.initial_models = models or []
        self.initial_conversation = conversation
        self.clock = clock
        self.probe_loopback = probe_loopback
        self.save_state = save_state
        self.start_engine = start_engine
        self.discover_models = discover_models
        self._discovery_waits = False  # the first discovery waits for the replies to end
        self.catalog: list[ModelEntry] = static_catalog(config)
        self._prompts: list[str] | None = None
        self._last_log_error: str | None = None
        self._discovery_running = False
        self._discovered_at: float | None = None
        self._gc_screens: set[int] = set()
        self._gc_full_wanted = False
        self._gc_frozen = False
        self._theme_errors: list[str] = []
        self._preloaded = False  # the markdown renderer built ahead (preload_renderer)
        # Keys and pastes that come before the first screen has its prompt (``on_event``).
        self._typeahead: list[events.Event] | None = []
        self.summary_workload: tuple[str, str] | None = None  # F6's monthly tokens, as typed
        self._register_themes()
        # Set before the first compose: switching later restyles every widget once more.
        wanted = config.theme or self.state.theme or DEFAULT_DARK
        self.theme = wanted if wanted in self.available_themes else DEFAULT_DARK

    # --- start-up ------------------------------------------------------------------------

    def _register_themes(self) -> None:
        specs, self._theme_errors = all_specs(paths.config_path().parent / "themes")
        for spec in specs:
            self.register_theme(to_textual(spec))

    def get_theme_variable_defaults(self) -> dict[str, str]:
        # Our semantic colours for every theme, Textual's built-in ones included.
        dark = True
        try:
            dark = self.current_theme.dark
        except Exception:
            pass
        return semantic_variables(dark)

    def get_default_screen(self) -> Screen[Any]:
        # The first screen is the stack's bottom, built with the app. Pushed from ``on_mount``
        # over Textual's empty default screen, it was styled a second time when it became
        # current, after the empty one had been composed and laid out: 180 ms from
        # ``App.run`` to the first frame against 90 ms this way (tmux, 120×40; bench/README.md).
        from tui.screens.chat import ChatScreen

        if len(self.initial_models) > 1:
            screen = self._compare_screen(self.initial_models)
        elif self.initial_models:
            screen = ChatScreen(self.initial_models[0], self.initial_conversation)
        elif self.initial_conversation is not None:
            screen = self.screen_for(self.initial_conversation)
        else:
            screen = ChatScreen(self.state.last_model)
        return switchable_default_screen(self, screen)

    async def on_event(self, event: events.Event) -> None:
        # Textual mounts the first screen after the app, and the keys typed meanwhile (a user
        # typing the moment the command is entered, a paste) found no prompt and were lost.
        # They wait for the prompt (``prompt_ready``), in order.
        held = self._typeahead
        typed = isinstance(event, events.Key | events.Paste) and not event.is_forwarded
        if held is not None and typed:
            held.append(event)
            return
        await super().on_event(event)

    def prompt_ready(self) -> None:
        """The first screen's prompt has the focus: keys typed before it go to it now."""
        held, self._typeahead = self._typeahead, None
        for event in held or ():
            self.post_message(event)

    def on_mount(self) -> None:
        self._handle_stop_signals()
        if self.config.keys:
            self.set_keymap(dict(self.config.keys))
            self._report_remap_conflicts()
        for err in self._theme_errors:
            self.notify(f"theme file ignored: {err}", severity="warning", timeout=8)
        # The engine starts, and models are discovered, once the first frame is out.
        self.call_after_refresh(self._after_first_frame)
        # Should the first screen never give its prompt the focus, keys are not held for good.
        self.set_timer(TYPEAHEAD_HOLD_S, self.prompt_ready)
        if not (self.initial_models or self.initial_conversation or self.state.last_model):
            # After the first frame: read keys and probe local servers (never before).
            self.call_after_refresh(self._choose_default_model)

    def _after_first_frame(self) -> None:
        # Streaming allocates ~100 tracked objects a token (Textual strips and their caches),
        # and many live on as rendered lines. Any collection of older generations then walks
        # tens of thousands of them: with thresholds (50000, 20, 100) a reply of 10,000 tokens
        # saw young passes of 27 ms and middle passes of 140-160 ms, the long tail of render
        # lag. So: young passes only (10,000 objects, about 2 ms), and the older generations
        # collected by ``_collect``, between replies where it can. Start-up's objects are
        # frozen: they live as long as the app.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        gc.enable()  # the command line switched it off for start-up (tui/cli.py)
        self._gc_screens = {id(s) for s in self.screen_stack}
        self.set_interval(GC_CHECK_S, self._collect)
        self.engine.on_idle = self._replies_ended
        if self.start_engine:
            self.run_worker(self._start_engine(), group="engine", exit_on_error=False)
        if self.discover_models:
            # `tokenrace models` imports the openai SDK in its own process: 2.3-2.5 s of CPU
            # here, kept away from start-up (the picker starts it at once if opened sooner),
            # and from replies streaming then (``_discover_when_quiet``).
            self.set_timer(DISCOVERY_DELAY_S, self._discover_when_quiet)

    def _discover_when_quiet(self) -> None:
        """Start the first discovery now, or when the replies streaming now have ended: on two
        cores it ran in the middle of a race, a third of a core beside the UI's half at
        4 × 500 tok/s (render lag p95 211 / 146 / 162 ms with it, 138 / 140 / 129 without)."""
        if self.engine.active:
            self._discovery_waits = True
            return
        self.start_discovery()

    def preload_renderer(self) -> None:
        """Build the markdown renderer in a thread (once), once the engine is up or when a
        prompt is being typed or sent, whichever comes first: its imports are kept out of
        start-up (started after the first refresh, they cost the first frame 1.18× in two
        same-run A/Bs), and without this the first reply's first code block paid them
        mid-stream."""
        if self._preloaded:
            return
        self._preloaded = True
        threading.Thread(target=_preload, name="tokenrace-preload", daemon=True).start()

    def _replies_ended(self) -> None:
        """No reply streams any more: collect a little later, once its objects are garbage
        (and discover models, if that waited for this)."""
        self.set_timer(GC_AFTER_REPLY_S, self._collect_after_reply)
        if self._discovery_waits:
            self._discovery_waits = False
            self.set_timer(GC_AFTER_REPLY_S, self._discover_when_quiet)

    def _collect_after_reply(self) -> None:
        # Quiet as far as the collector is concerned, even when the next request has just
        # left: its first token is at least a round trip away. But not while a reply's last
        # text still waits for its frame: the engine is idle once it has read every stream's
        # end, and a race's last frames come after that (a 90-ms collection there held three
        # panes' last tokens off the screen: final-token lag 145-390 ms at 4 × 2,000 tok/s).
        if self._replies_drawing():
            self.set_timer(GC_AFTER_REPLY_S, self._collect_after_reply)
            return
        self._collect(quiet=True)

    def _replies_drawing(self) -> bool:
        """Whether a reply on the current screen is not yet finished there (its last text
        drawn, its turn kept), whatever the engine says."""
        stack = self.screen_stack  # (empty while the app closes: ``self.screen`` raises)
        return bool(stack) and bool(getattr(stack[-1], "streaming", False))

    def _collect(self, quiet: bool = False) -> None:
        """Collect the older generations, when nothing streams if that comes soon enough.

        A full collection also follows a screen leaving the stack (a conversation closed or
        cleared, a dialog shut): its widgets reference each other and wait for one.
        """
        screens = {id(s) for s in self.screen_stack}
        self._gc_full_wanted |= bool(self._gc_screens - screens)
        self._gc_screens = screens
        quiet = quiet or not (self.engine.active or self._replies_drawing())
        _, young, middle = gc.get_count()
        if quiet:
            if self._gc_frozen or self._gc_full_wanted or middle >= GC_FULL_QUIET:
                gc.unfreeze()  # what a long reply froze (below) is looked at again
                gc.collect()
                gc.freeze()  # start-up's objects, and everything alive now
                self._gc_frozen = self._gc_full_wanted = False
            elif young >= GC_MIDDLE_QUIET:
                gc.collect(1)
        elif young >= GC_MIDDLE_ANYWAY:
            # A long reply, or streams that never pause: a middle collection here walked
            # everything promoted since the last one (500 ms in a 10,000-token reply). Freeze
            # it instead (no walk at all); the next quiet moment collects it in full.
            gc.freeze()
            gc.collect(1)  # the generations are empty now: this only resets the counts
            self._gc_frozen = True

    def start_discovery(self, again_after_s: float | None = None) -> None:
        """Ask every endpoint for its models in the background: once, and again when a
        picker opens and the last answer is older than ``again_after_s`` (a local server
        started since, a key added), so the picker fills in while it is open."""
        if not self.discover_models or self._discovery_running:
            return
        done = self._discovered_at
        if done is not None and (again_after_s is None or time.monotonic() - done < again_after_s):
            return
        self._discovery_running = True
        self.run_worker(self._discover_models(), group="discover", exit_on_error=False)

    def _compare_screen(self, models: list[str]) -> Screen[None]:
        from tui.screens.compare import CompareScreen

        return CompareScreen(models, self.initial_conversation)

    @staticmethod
    def _model_of(conv: Conversation) -> str | None:
        for turns in conv.panes.values():
            for t in reversed(turns):
                if t.role == "assistant" and t.model:
                    return t.model
        return None

    async def _start_engine(self) -> None:
        try:
            await self.engine.start()
        except Exception as exc:
            self.notify(f"the engine process could not start: {exc}", severity="error", timeout=15)
            return
        # The screen is usable now: the renderer is built before the first prompt, not when
        # its first key is typed. A prompt sent at once (recalled, pasted, or typed by a
        # script: `go` Enter) waited 49 ms in process for the thread's imports, and in tmux
        # its replies' first frames came 130 ms late (issue 21).
        self.preload_renderer()

    def _engine_status(self, text: str, level: str) -> None:
        """News from the engine: the local model's server starting, ready, or failing."""
        if level == "error":
            self.notify(text, severity="error", timeout=20)
            return
        self.notify(text, timeout=4)
        self.screen.post_message(EngineNewsArrived(text))

    def _engine_died(self, reason: str) -> None:
        self.notify(f"{reason}; restarting it", severity="error", timeout=10)
        self.run_worker(self._start_engine(), group="engine", exit_on_error=False)

    def _choose_default_model(self) -> None:
        self.run_worker(self._find_default_model(), group="startup", exit_on_error=False)

    async def _find_default_model(self) -> None:
        model = await find_default_model(self.config, self.probe_loopback)
        from tui.screens.chat import ChatScreen

        screen = self.screen
        local = self.config.endpoints.get("local")
        bundled = local is not None and local.managed and not self.config.default_model
        if model is not None and bundled and model.startswith("local/"):
            # Nothing else works: say what the bundled model is before the first prompt, and
            # start its server meanwhile.
            from tui.screens.welcome import WelcomeScreen

            self.warm(model)
            self.switch_screen(WelcomeScreen(self.config, local_model=model))
        elif model is not None and isinstance(screen, ChatScreen):
            screen.set_model(model)
            self.notify(f"Using {model}. F2 picks another model.")
        elif model is None:
            from tui.screens.welcome import WelcomeScreen

            self.switch_screen(WelcomeScreen(self.config))

    async def _discover_models(self) -> None:
        try:
            found, _err = await discover(self.config)
        finally:
            self._discovery_running = False
            self._discovered_at = time.monotonic()
        if found:
            self.catalog = merge(self.catalog, found)
            from tui.screens.model_picker import ModelPicker

            if isinstance(self.screen, ModelPicker):
                self.screen.set_entries(self.catalog)

    def reload_config(self, announce: bool = True) -> bool:
        """Read config.toml again and use it from now on, keeping conversations, screens and
        theme. A file that does not parse keeps the config in use and says where it is wrong.
        Returns whether the config changed."""
        if self.load_config is None:
            return False
        from providers.config import ConfigError

        try:
            new = self.load_config()
        except ConfigError as exc:
            self.notify(
                f"config not reloaded: {exc}. The previous config stays in use.",
                severity="error",
                timeout=15,
                markup=False,
            )
            return False
        old = self.config
        if new == old:
            if announce:
                self.notify("The config is unchanged.")
            return False
        self.config = new
        self.engine.reconfigure(new)
        if new.keys != old.keys:
            self.set_keymap(dict(new.keys))
            self._report_remap_conflicts()
        kept = [e for e in self.catalog if e.endpoint in new.endpoints and e.source == "live"]
        self.catalog = merge(static_catalog(new), kept)
        self._discovered_at = None  # the next picker asks the endpoints again
        added = sorted(set(new.endpoints) - set(old.endpoints))
        removed = sorted(set(old.endpoints) - set(new.endpoints))
        news = [f"added {', '.join(added)}"] if added else []
        news += [f"removed {', '.join(removed)}"] if removed else []
        self.notify(
            "Config reloaded" + (f": endpoints {'; '.join(news)}." if news else "."),
            markup=False,
        )
        return True

    def _report_remap_conflicts(self) -> None:
        """Say which ``[keys]`` remaps land on a key already bound (it keeps its old job)."""
        from tui.actions import remap_conflicts
        from tui.screens.chat import ChatScreen
        from tui.screens.compare import CompareScreen
        from tui.widgets.prompt_box import PromptBox

        others: list[tuple[str, str, str]] = []
        for where, classes in (
            ("the prompt", PromptBox.__mro__),
            ("the chat screen", (ChatScreen,)),
            ("the compare screen", (CompareScreen,)),
        ):
            for cls in classes:
                for b in getattr(cls, "BINDINGS", []):
                    if isinstance(b, Binding):
                        what = b.tooltip or b.description or b.action
                        others += [(k.strip(), what, where) for k in b.key.split(",")]
        for problem in remap_conflicts(self.config.keys, others):
            self.notify(problem, severity="warning", timeout=15, markup=False)

    def action_reload_config(self) -> None:
        self.reload_config()

    async def action_look_again(self) -> None:
        self.reload_config(announce=False)
        model = await find_default_model(self.config, self.probe_loopback)
        if model is None:
            self.notify("Still no key and no local server. See the list above.", severity="warning")
            return
        from tui.screens.chat import ChatScreen

        self.switch_screen(ChatScreen(model))

    # --- shared services -----------------------------------------------------------------

    def warm(self, model: str) -> None:
        """Connect to the model's endpoint (start the local server) before the first prompt."""
        try:
            self.engine.warm(model)
        except ConnectionError:
            pass

    def remember_model(self, model: str) -> None:
        self.state.last_model = model
        self._save_state()

    def remember_conversation(self, conv_id: int) -> None:
        if self.state.last_conversation != conv_id:
            self.state.last_conversation = conv_id
            self._save_state()

    def _save_state(self) -> None:
        if not self.save_state:
            return
        err = self.state.save()
        if err:
            self.notify(err, severity="warning")

    def watch_theme(self, theme: str) -> None:
        # ``App.is_mounted`` is a method taking a widget, so ``not self.is_mounted`` was
        # always False: before the app runs there is nothing to tell.
        if not self.is_running:
            return
        # After the new theme's styles are applied: drawn now, replies kept the old colours.
        self.call_after_refresh(self._redraw_replies)
        if self.state.theme != theme:
            self.state.theme = theme
            self._save_state()

    def _redraw_replies(self) -> None:
        from tui.widgets.streaming_markdown import StreamingMarkdown

        for screen in self.screen_stack:
            for view in screen.query(StreamingMarkdown):
                view.theme_changed()

    def prompt_history(self) -> list[str]:
        """Past prompts, newest first (store, then this session's)."""
        if self._prompts is None:
            self._prompts = self.store.prompts() if self.store is not None else []
        return self._prompts

    def history_added(self, text: str) -> None:
        prompts = self.prompt_history()
        if text in prompts:
            prompts.remove(text)
        prompts.insert(0, text)

    def run_completed(self, run: LiveRun, metrics: RunMetrics) -> None:
        """A reply finished: log it for dashboards (the metrics log)."""
        self.run_completed_metrics(run.model, metrics)

    def run_completed_metrics(self, model: str, metrics: RunMetrics) -> None:
        from tui.session.metrics_log import append_record, run_record

        if self.config.metrics.log or self.config.metrics.prometheus_file:
            err = append_record(run_record(model, endpoint_of(model), metrics), self.config)
            if err and err != self._last_log_error:
                self.notify(err, severity="warning")
            self._last_log_error = err

    def open_suite(self, path: str = "", runs: int = 1) -> None:
        """Run a replay suite on the current screen's model(s)."""
        from tui.screens.suite import SuiteScreen

        if self.blind_locked():
            return
        race = self._race_screen()
        models = [m for m in race.pane_models() if m] if race is not None else []
        if not models:
            self.notify("Pick a model first (F2).", severity="warning")
            return
        self.push_screen(SuiteScreen(models, path, runs))

    def action_suite(self) -> None:
        self.open_suite()

    def action_load_sweep(self) -> None:
        """A load sweep on the current screen's model(s) (``tokenrace load`` in the app)."""
        from tui.screens.load import LoadScreen

        race = self._race_screen()
        models = [m for m in race.pane_models() if m] if race is not None else []
        if not models:
            self.notify("Pick a model first (F2).", severity="warning")
            return
        if self.blind_locked():
            return
        self.push_screen(LoadScreen(models))

    def store_error(self, message: str) -> None:
        """Called from the store's writer thread, or from a read here that found damage. The
        writer never waits for the UI: with ``call_from_thread`` it did, so a frame held up
        the saves, and a ``Store.flush`` on the UI's thread waited out its whole timeout for
        a writer that was waiting for the UI (``test_locked_database`` under load)."""
        loop = self._loop
        if loop is None or self._thread_id == threading.get_ident():
            self.notify(message, severity="error", timeout=15)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: the app has ended
            loop.call_soon_threadsafe(partial(self.notify, message, severity="error", timeout=15))

    # --- actions -------------------------------------------------------------------------

    def _chat(self) -> ChatScreen | None:
        from tui.screens.chat import ChatScreen

        screen = self.screen
        return screen if isinstance(screen, ChatScreen) else None

    def _race_screen(self) -> RaceScreen | None:
        """The chat or compare screen when it is the one shown."""
        from tui.screens.race_screen import RaceScreen

        screen = self.screen
        return screen if isinstance(screen, RaceScreen) else None

    def action_show_help(self) -> None:
        from tui.screens.help_screen import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
            return
        bound = {}
        for a in ACTIONS:
            bound[a.id] = self.config.keys.get(a.id, a.keys)
        screen = self.screen
        name = type(screen).__name__.removesuffix("Screen").lower()
        self.push_screen(HelpScreen(bound, screen_keys(screen, self.config.keys), name))

    def action_pick_model(self, query: str = "") -> None:
        from tui.screens.model_picker import ModelPicker

        if isinstance(self.screen, ModelPicker):
            return
        self.reload_config(announce=False)  # an endpoint added since shows, and works
        from tui.screens.compare import CompareScreen

        if isinstance(self.screen, CompareScreen):
            self.screen.pick_model()  # the pane first, then its model
            return
        chat = self._chat()
        current = chat.model if chat is not None else None

        def picked(ref: str | None) -> None:
            if not ref:
                return
            target = self._chat()
            if target is not None:
                target.set_model(ref)
                self.notify(f"Model: {ref}. The conversation continues with it.")
            else:
                from tui.screens.chat import ChatScreen

                self.switch_screen(ChatScreen(ref))

        self.start_discovery(again_after_s=PICKER_REDISCOVER_S)
        self.push_screen(ModelPicker(self.catalog, current, query=query), picked)

    def action_cancel(self) -> None:
        race = self._race_screen()
        if race is not None:
            race.cancel_all()

    def action_cancel_or_quit(self) -> None:
        race = self._race_screen()
        if race is not None and race.cancel_all():
            return
        self.exit()

    def action_retry(self) -> None:
        from tui.screens.welcome import WelcomeScreen

        race = self._race_screen()
        if race is not None:
            race.retry()
        elif isinstance(self.screen, WelcomeScreen):
            self.screen.retry()  # F5 there: read the config again and look

    def action_new_chat(self) -> None:
        from tui.screens.chat import ChatScreen

        chat = self._chat()
        if chat is not None and chat.streaming:
            self.notify("A reply is still streaming: Esc cancels it.", severity="warning")
            return
        model = chat.model if chat is not None else self.state.last_model
        self.switch_screen(ChatScreen(model))

    def action_follow(self) -> None:
        chat = self._chat()
        if chat is not None:
            chat.action_follow()

    def action_toggle_reasoning(self) -> None:
        from tui.widgets.assistant_message import ReasoningBlock

        blocks = list(self.screen.query(ReasoningBlock))
        if not blocks:
            self.notify("No reasoning in this conversation.")
            return
        collapse = not all(b.collapsed for b in blocks)
        for b in blocks:
            b.collapsed = collapse

    def _last_reply_text(self) -> str | None:
        race = self._race_screen()
        return race.last_reply_text() if race is not None else None

    def action_copy_reply(self) -> None:
        text = self._last_reply_text()
        if not text:
            self.notify("No reply to copy yet.")
            return
        self._copy(text, "the last reply")

    def action_copy_code(self) -> None:
        text = self._last_reply_text()
        block = last_code_block(text or "")
        if block is None:
            self.notify("The last reply has no code block.")
            return
        self._copy(block, "the last code block")

    def _copy(self, text: str, what: str) -> None:
        if (problem := copy_problem(self.is_web)) is not None:  # tokenrace serve, plain http
            self.notify(problem, severity="warning")
            return
        self.copy_to_clipboard(text)  # OSC 52, through the terminal (the page's clipboard)
        # And the platform's clipboard command, when there is one and it is the user's machine.
        via = None if self.is_web else copy_with_command(text)
        where = f" (and {via})" if via else ""
        self.notify(f"Copied {what}: {len(text):,} characters{where}.")

    # Issue-4/5 actions are provided by their screens when open; elsewhere they say so.
    def action_open_compare(self) -> None:
        """F3: race the current model against another (or go back from the compare screen)."""
        from tui.screens.compare import CompareScreen
        from tui.screens.model_picker import ModelPicker

        if isinstance(self.screen, CompareScreen):
            if self.blind_locked():
                return
            if len(self.screen_stack) > 1:  # over the chat it was opened from
                self.pop_screen()
            else:
                from tui.screens.chat import ChatScreen

                self.switch_screen(ChatScreen(self.screen.models[0]))
            return
        chat = self._chat()
        first = chat.model if chat is not None else self.state.last_model
        if first is None:
            self.notify("Pick a model first (F2).", severity="warning")
            return
        if chat is not None and chat.streaming:
            self.notify("A reply is still streaming: Esc cancels it.", severity="warning")
            return
        self.reload_config(announce=False)

        def picked(ref: str | None) -> None:
            if ref and first is not None:
                self.push_screen(CompareScreen([first, ref]))

        self.start_discovery(again_after_s=PICKER_REDISCOVER_S)
        self.push_screen(ModelPicker(self.catalog, first, title=f"Race {first} against…"), picked)

    async def action_edit_prompt(self) -> None:
        """Alt+E: the last prompt back in the prompt box; sending it is a new branch."""
        await self.fork_from(-1)

    def action_fork(self) -> None:
        """Alt+R: choose an earlier prompt to start a new branch from."""
        from tui.screens.fork_chooser import ForkChooser

        race = self._race_screen()
        if race is None or not race.conv.user_prompts():
            self.notify("No prompt to fork from yet.")
            return

        async def chosen(index: int | None) -> None:
            if index is not None:
                await self.fork_from(index)

        self.push_screen(ForkChooser(race.conv.user_prompts()), chosen)

    async def fork_from(self, index: int) -> None:
        """Start a new branch at the ``index``-th prompt of the conversation on screen."""
        from tui.screens.chat import ChatScreen
        from tui.screens.compare import CompareScreen

        screen = self._race_screen()
        if screen is None or screen.streaming:
            self.notify("Wait for the reply to end (Esc cancels it) before editing.")
            return
        conv = screen.conv
        text = conv.fork_at(index, self.store)
        if text is None:
            self.notify("No prompt to edit yet.")
            return
        new: ChatScreen | CompareScreen = (
            CompareScreen(list(screen.models), conv)
            if isinstance(screen, CompareScreen)
            else ChatScreen(screen.pane_models()[0], conv)
        )
        await self.switch_screen(new)
        new.fill_prompt(text)
        self.notify("Edit the prompt; Enter races it again as a new branch (the old is kept).")

    def action_conversations(self) -> None:
        from tui.screens.conversations import ConversationsScreen

        if self.store is None:
            self.notify("History is off: the database could not be opened.", severity="error")
            return
        self.push_screen(ConversationsScreen())

    def open_conversation(self, conv_id: int) -> None:
        """Resume a stored conversation in the screen its mode needs."""
        if self.store is None:
            return
        conv = Conversation.load(self.store, conv_id)
        if conv is None:
            self.notify("That conversation no longer exists.", severity="warning")
            return
        self.remember_conversation(conv.id)
        screen = self.screen_for(conv)
        while len(self.screen_stack) > 1:  # dialogs and screens over the main one
            self.pop_screen()
        self.switch_screen(screen)

    def screen_for(self, conv: Conversation) -> Screen[None]:
        """The screen a stored conversation reopens in: compare (its panes) or chat."""
        from tui.screens.chat import ChatScreen
        from tui.screens.compare import CompareScreen

        if conv.mode == "compare":
            fallback = self.state.last_model
            models = [m or fallback for m in conv.pane_models()]
            if len(models) > 1 and all(models):
                return CompareScreen([m for m in models if m], conv)
        return ChatScreen(self._model_of(conv) or self.state.last_model, conv)

    def action_history_search(self) -> None:
        from tui.screens.history_search import HistorySearch

        self.push_screen(HistorySearch(self.prompt_history()), self._history_picked)

    def _history_picked(self, result: tuple[str, bool] | None) -> None:
        if result is None:
            return
        text, send_now = result
        race = self._race_screen()
        if race is not None:
            race.fill_prompt(text, send_now)

    def action_replay(self) -> None:
        race = self._race_screen()
        if race is not None:
            race.replay_last(1)

    def action_replay_n(self) -> None:
        from tui.screens.replay_n import ReplayCount

        def chosen(n: int | None) -> None:
            race = self._race_screen()
            if n and race is not None:
                race.replay_last(n)

        self.push_screen(ReplayCount(), chosen)

    def action_export(self) -> None:
        race = self._race_screen()
        if race is not None:
            race.export()

    def action_summary(self) -> None:
        from tui.screens.summary import SummaryScreen

        race = self._race_screen()
        conv_id = race.conv.id if race is not None else None
        models = [m for m in race.pane_models() if m] if race is not None else []
        self.push_screen(SummaryScreen(conv_id, models))

    def action_stats(self) -> None:
        from tui.screens.stats import StatsScreen

        if self.blind_locked():  # its per-model figures would tell the race's panes apart
            return

        self.push_screen(StatsScreen())

    # --- command palette -----------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for a in ACTIONS:
            name = a.action.removeprefix("app.")
            method = getattr(self, f"action_{name}", None)
            if method is None or a.id in ("quit", "theme", "help"):
                continue
            keys = self.config.keys.get(a.id, a.keys)
            yield SystemCommand(a.description, f"{a.id} · {keys}", method)
        yield SystemCommand("Help: every key", "help · f1", self.action_show_help)
        yield SystemCommand(
            "Reload the config file",
            f"config.toml: endpoints, prices, keys · {self.config.path or 'none'}",
            self.action_reload_config,
        )
        yield SystemCommand(
            "Leaderboard: verdicts, win rates, ratings", "tokenrace stats", self.action_stats
        )
        yield SystemCommand(
            "Load sweep: TTFT and throughput as streams grow", "tokenrace load",
            self.action_load_sweep,
        )  # fmt: skip
        for keys, description, action in screen_actions(screen, self.config.keys):
            yield SystemCommand(description, keys, lambda a=action, s=screen: s.run_action(a))

    # --- shutdown ------------------------------------------------------------------------

    async def stop_engine(self) -> None:
        """Cancel every stream and stop the engine process (called on every way out)."""
        try:
            self.engine.cancel_all()
        except ConnectionError:
            pass
        await self.engine.close()

    async def on_unmount(self) -> None:
        self._handle_stop_signals(False)
        await self.stop_engine()

    def _handle_stop_signals(self, on: bool = True) -> None:
        try:
            loop = asyncio.get_running_loop()
            for sig in STOP_SIGNALS:
                if on:
                    loop.add_signal_handler(sig, self.stop_on_signal, sig)
                else:
                    loop.remove_signal_handler(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # Windows, or not the main thread: the default action stays

    def stop_on_signal(self, sig: int) -> None:
        """SIGTERM or SIGHUP: end running replies as interrupted (saved, logged), then exit."""
        name = signal.Signals(sig).name
        message = (
            f"tokenrace was stopped ({name}) before the reply finished; the text received is kept"
        )
        from tui.screens.race_screen import RaceScreen

        for screen in self.screen_stack:
            if isinstance(screen, RaceScreen):
                try:
                    screen.interrupt_replies(message)
                except Exception:
                    pass  # one broken screen must not keep the app (and the terminal) alive
        # The terminal may already be gone (SIGHUP): Textual's shutdown can then block for ever
        # on its writer thread's full queue (seen: the main thread parked in
        # WriterThread.stop). The replies are saved above, so a stuck shutdown is cut short.
        threading.Thread(
            target=_exit_after, args=(STOP_GRACE_S, 128 + sig), daemon=True, name="stop-watchdog"
        ).start()
        self.exit(return_code=128 + sig)


def _exit_after(seconds: float, code: int) -> None:
    """End the process with ``code`` if it is still alive after ``seconds``."""
    time.sleep(seconds)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    os._exit(code)


# --- helpers (no UI) -------------------------------------------------------------------------


def screen_actions(
    screen: Screen[Any], keymap: Mapping[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """(keys, description, action) of a screen's own bindings (remaps in ``keymap`` applied),
    for help and the palette."""
    out = []
    for b in getattr(type(screen), "BINDINGS", []):
        if isinstance(b, Binding) and b.description:
            keys = (keymap or {}).get(b.id, b.key) if b.id else b.key
            out.append((keys, b.tooltip or b.description, b.action))
    return out


def screen_keys(
    screen: Screen[Any], keymap: Mapping[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """(keys, description, id to remap it by, or "") of a screen's own bindings, for help."""
    ids = {b.action: b.id or "" for b in getattr(type(screen), "BINDINGS", [])}
    return [(k, d, ids.get(a, "")) for k, d, a in screen_actions(screen, keymap)]


def last_code_block(markdown: str) -> str | None:
    """The content of the last fenced code block in ``markdown``."""
    from markdown_it import MarkdownIt

    fences = [t for t in MarkdownIt("gfm-like").parse(markdown) if t.type == "fence"]
    return fences[-1].content if fences else None


def copy_with_command(text: str) -> str | None:
    """Copy with pbcopy / wl-copy / xclip / xsel when present; the command's name, or None."""
    candidates = [
        ["pbcopy"],
        ["wl-copy"],
        ["xclip", "-selection", "clipboard"],
        ["xsel", "--clipboard", "--input"],
    ]
    for argv in candidates:
        if shutil.which(argv[0]) is None:
            continue
        if argv[0] in ("wl-copy",) and not os.environ.get("WAYLAND_DISPLAY"):
            continue
        if argv[0] in ("xclip", "xsel") and not os.environ.get("DISPLAY"):
            continue
        try:
            subprocess.run(
                argv,
                input=text.encode(),
                timeout=2,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            return argv[0]
        except (OSError, subprocess.SubprocessError):
            continue
    return None

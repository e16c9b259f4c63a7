"""Slash commands typed in the prompt: one table of name → handler (no textual).

A command is a pure function of (settings, argument, number of panes) that returns an
``Outcome``: new settings, a notice, and at most one ``Effect`` that only the screen can carry
out (switching a model, opening a screen). The screen applies the outcome; Tab completion and
the help screen read the same table. Adding a command is one ``@command`` function here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from providers.config import Role
from tui.session.conversation import Settings
from tui.session.race import PANE_LETTERS


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed slash command."""

    name: str
    arg: str


class CommandError(ValueError):
    """A slash command with a bad argument; the message says what is expected."""


@dataclass(frozen=True, slots=True)
class SwitchModel:
    """Continue with the model named ``query`` (resolved by the screen) in ``pane``."""

    query: str
    pane: int | None = None  # None: the screen's one pane (chat)


@dataclass(frozen=True, slots=True)
class SetPaneTemperature:
    """One pane's own temperature; ``pane`` None drops every pane's own."""

    pane: int | None
    temperature: float | None


@dataclass(frozen=True, slots=True)
class NewConversation:
    """Start a new conversation on the same model(s)."""


@dataclass(frozen=True, slots=True)
class ShowHelp:
    """Open the help screen."""


@dataclass(frozen=True, slots=True)
class RunSuite:
    """Run a replay suite on the screen's model(s)."""

    path: str
    runs: int


@dataclass(frozen=True, slots=True)
class AttachImage:
    """Attach the image at ``arg`` to the next message ("clear" drops them): the prompt box
    holds what is attached, so only the screen can do it."""

    arg: str


@dataclass(frozen=True, slots=True)
class UseRole:
    """Put on the ``[roles.NAME]`` called ``name`` (None: take the role off); the roles live in
    config, which the screen has."""

    name: str | None


@dataclass(frozen=True, slots=True)
class SetPaneThinking:
    """One pane's own thinking (``/thinking B on``); ``pane`` None drops every pane's own."""

    pane: int | None
    thinking: bool | None = None
    budget: int | None = None


Effect = (
    SwitchModel
    | SetPaneTemperature
    | SetPaneThinking
    | NewConversation
    | ShowHelp
    | RunSuite
    | AttachImage
    | UseRole
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command changed: new settings (the screen saves them), a notice, an effect."""

    settings: Settings | None = None
    notice: str = ""
    effect: Effect | None = None


Handler = Callable[[Settings, str, int], Outcome]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command: its name, the help line Tab completion and F1 show, its handler."""

    name: str
    help: str
    handler: Handler


COMMANDS: dict[str, CommandSpec] = {}


def command(name: str, help: str) -> Callable[[Handler], Handler]:
    """Register ``handler(settings, arg, panes) -> Outcome`` as the slash command ``name``."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name] = CommandSpec(name, help, handler)
        return handler

    return register


def parse(text: str) -> Command | None:
    """The command in ``text``, or None if it is an ordinary prompt."""
    stripped = text.strip()
    if not stripped.startswith("/") or stripped.startswith("//"):
        return None
    name, _, arg = stripped.partition(" ")
    if name not in COMMANDS:
        close = [c for c in COMMANDS if c.startswith(name)]
        hint = f" (did you mean {close[0]}?)" if len(close) == 1 else ""
        raise CommandError(f"unknown command {name}{hint}; /help lists them")
    return Command(name, arg.strip())


def run(settings: Settings, cmd: Command, panes: int = 1) -> Outcome:
    """What ``cmd`` does on a screen of ``panes`` panes; raises CommandError for a bad argument."""
    return COMMANDS[cmd.name].handler(settings, cmd.arg, panes)


def completions(prefix: str) -> list[str]:
    """Commands that start with what was typed."""
    if not prefix.startswith("/") or " " in prefix:
        return []
    return [c for c in COMMANDS if c.startswith(prefix)]


def pane_and_rest(arg: str, panes: int) -> tuple[int | None, str]:
    """``B rest`` → (1, "rest") when B names one of ``panes`` panes; else (None, arg)."""
    letter, _, rest = arg.partition(" ")
    if panes > 1 and len(letter) == 1 and letter.upper() in PANE_LETTERS[:panes]:
        return PANE_LETTERS.index(letter.upper()), rest.strip()
    return None, arg


def parse_temperature(arg: str) -> float | None:
    if not arg:
        return None
    try:
        value = float(arg)
    except ValueError:
        raise CommandError(f"/temperature expects a number, got {arg!r}") from None
    if not 0.0 <= value <= 2.0:
        raise CommandError("/temperature must be between 0 and 2")
    return value


def parse_positive(arg: str, command: str) -> int | None:
    """A whole number of at least 1, or None for an empty argument."""
    if not arg:
        return None
    try:
        value = int(arg)
    except ValueError:
        raise CommandError(f"{command} expects a whole number, got {arg!r}") from None
    if value < 1:
        raise CommandError(f"{command} must be at least 1")
    return value


def parse_max_tokens(arg: str) -> int | None:
    return parse_positive(arg, "/max-tokens")


def parse_on_off(arg: str) -> bool:
    low = arg.lower()
    if low in ("on", "true", "yes", "1"):
        return True
    if low in ("off", "false", "no", "0"):
        return False
    raise CommandError(f"/json expects on or off, got {arg!r}")


def _every_pane(panes: int) -> str:
    return " Every pane uses it from the next prompt." if panes > 1 else ""


@command("/model", "switch model: /model ENDPOINT/MODEL (or part of a name)")
def _model(settings: Settings, arg: str, panes: int) -> Outcome:
    if panes == 1:
        return Outcome(effect=SwitchModel(arg))
    pane, name = pane_and_rest(arg, panes)
    if pane is None or not name:
        raise CommandError(
            "In compare mode: /model PANE NAME, e.g. /model B openai/gpt-4o-mini "
            "(F2 picks with a list)"
        )
    return Outcome(effect=SwitchModel(name, pane))


@command("/system", "set the system prompt: /system TEXT (empty clears it)")
def _system(settings: Settings, arg: str, panes: int) -> Outcome:
    said = "System prompt set." if arg else "System prompt cleared."
    return Outcome(replace(settings, system=arg or None), said + _every_pane(panes))


@command(
    "/temperature",
    "set the temperature: /temperature X (empty resets); in compare, /temperature B X sets "
    "one pane's",
)
def _temperature(settings: Settings, arg: str, panes: int) -> Outcome:
    pane, value = pane_and_rest(arg, panes)
    if pane is not None:
        t = parse_temperature(value)
        shown = "the default" if t is None else f"{t:g}"
        return Outcome(
            notice=f"Pane {PANE_LETTERS[pane]}: temperature {shown} from the next prompt.",
            effect=SetPaneTemperature(pane, t),
        )
    t = parse_temperature(arg)
    return Outcome(
        replace(settings, temperature=t),
        f"Temperature: {t if t is not None else 'default'}" + _every_pane(panes),
        SetPaneTemperature(None, t) if panes > 1 else None,
    )


@command("/max-tokens", "cap the reply length: /max-tokens N (empty removes the cap)")
def _max_tokens(settings: Settings, arg: str, panes: int) -> Outcome:
    n = parse_max_tokens(arg)
    return Outcome(replace(settings, max_tokens=n), f"Max tokens: {n or 'no cap'}")


@command("/json", "JSON mode: /json on|off")
def _json(settings: Settings, arg: str, panes: int) -> Outcome:
    on = parse_on_off(arg)
    return Outcome(replace(settings, json_mode=on), f"JSON mode {'on' if on else 'off'}.")


@command(
    "/thinking",
    "stream the model's thinking: /thinking on|off|BUDGET (tokens; empty: the endpoint's "
    "default); in compare, /thinking B on sets one pane's",
)
def _thinking(settings: Settings, arg: str, panes: int) -> Outcome:
    from tui.session import request_settings

    pane, value = pane_and_rest(arg, panes)
    if pane is not None:
        on, budget = request_settings.parse_thinking(value)
        label = request_settings.thinking_label(on, budget) or "the endpoint's default"
        return Outcome(
            notice=f"Pane {PANE_LETTERS[pane]}: {label} from the next prompt.",
            effect=SetPaneThinking(pane, on, budget),
        )
    new = replace(settings)
    said = request_settings.set_thinking(new, arg)
    return Outcome(new, said + _every_pane(panes), SetPaneThinking(None) if panes > 1 else None)


@command(
    "/tools",
    "offer tools the model may call: /tools FILE.json (off clears); calls are shown, timed and "
    "checked, never run",
)
def _tools(settings: Settings, arg: str, panes: int) -> Outcome:
    from tui.session import request_settings

    new = replace(settings)
    return Outcome(new, request_settings.set_tools(new, arg) + _every_pane(panes))


@command(
    "/schema",
    "replies must follow a JSON Schema: /schema FILE.json (off clears); each reply says valid "
    "or invalid, with the first error's path",
)
def _schema(settings: Settings, arg: str, panes: int) -> Outcome:
    from pathlib import Path

    from tui.session.structured import SchemaError, load_schema

    if arg.strip().lower() in ("", "off", "none"):
        return Outcome(replace(settings, schema=None), "No schema from the next prompt.")
    try:
        schema = load_schema(Path(arg.strip()).expanduser())
    except SchemaError as exc:
        raise CommandError(str(exc)) from None
    said = "Schema set: replies are asked for in its form and checked against it."
    return Outcome(replace(settings, schema=schema), said + _every_pane(panes))


@command(
    "/role",
    "use a [roles.NAME] from config (system prompt and settings): /role NAME (Tab completes; "
    "/role off takes it off)",
)
def _role(settings: Settings, arg: str, panes: int) -> Outcome:
    name = arg.strip()
    if not name:
        raise CommandError("/role NAME (Tab completes the roles in config), or /role off")
    return Outcome(effect=UseRole(None if name.lower() in ("off", "none") else name))


def role_settings(settings: Settings, role: Role | None) -> Settings:
    """``settings`` with ``role``'s on (what it names replaces the conversation's), or with
    the role's name taken off (its settings stay until changed: they are visible in the top
    bar, and silently reverting them would change the next request behind the user's back)."""
    if role is None:
        return replace(settings, role=None)
    from providers.capabilities import ChatParams
    from tui.session.roles import apply_role

    applied = apply_role(role, settings.system, ChatParams(json_schema=settings.schema))
    p = applied.params
    return replace(
        settings,
        role=role.name,
        system=applied.system,
        temperature=role.temperature if role.temperature is not None else settings.temperature,
        max_tokens=role.max_tokens if role.max_tokens is not None else settings.max_tokens,
        json_mode=settings.json_mode or role.json_mode,
        schema=p.json_schema,
    )


@command("/suite", "run a replay suite on the current model(s): /suite PATH.jsonl [RUNS]")
def _suite(settings: Settings, arg: str, panes: int) -> Outcome:
    path, _, runs = arg.partition(" ")
    n = parse_positive(runs.strip(), "/suite RUNS")
    return Outcome(effect=RunSuite(path, n or 1))


@command(
    "/image",
    "attach an image to the next message: /image PATH (Tab completes; /image clear removes "
    "them); a dropped image file attaches too",
)
def _image(settings: Settings, arg: str, panes: int) -> Outcome:
    return Outcome(effect=AttachImage(arg))


@command("/clear", "start a new conversation")
def _clear(settings: Settings, arg: str, panes: int) -> Outcome:
    return Outcome(effect=NewConversation())


@command("/help", "show every key and command")
def _help(settings: Settings, arg: str, panes: int) -> Outcome:
    return Outcome(effect=ShowHelp())

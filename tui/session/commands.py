"""Slash commands typed in the prompt: parsing and completion (no textual)."""

from __future__ import annotations

from dataclasses import dataclass

COMMANDS: dict[str, str] = {
    "/model": "switch model: /model ENDPOINT/MODEL (or part of a name)",
    "/system": "set the system prompt: /system TEXT (empty clears it)",
    "/temperature": "set the temperature: /temperature X (empty resets); in compare, "
    "/temperature B X sets one pane's",
    "/max-tokens": "cap the reply length: /max-tokens N (empty removes the cap)",
    "/json": "JSON mode: /json on|off",
    "/thinking": "stream the model's thinking: /thinking on|off|BUDGET (tokens; empty: the "
    "endpoint's default); in compare, /thinking B on sets one pane's",
    "/tools": "offer tools the model may call: /tools FILE.json (off clears); calls are shown, "
    "timed and checked, never run",
    "/suite": "run a replay suite on the current model(s): /suite PATH.jsonl [RUNS]",
    "/clear": "start a new conversation",
    "/help": "show every key and command",
}


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed slash command."""

    name: str
    arg: str


class CommandError(ValueError):
    """A slash command with a bad argument; the message says what is expected."""


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


def completions(prefix: str) -> list[str]:
    """Commands that start with what was typed."""
    if not prefix.startswith("/") or " " in prefix:
        return []
    return [c for c in COMMANDS if c.startswith(prefix)]


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

"""``/thinking`` and ``/tools``: pure handlers that change a conversation's settings (no textual).

Each returns the message to show; a bad argument raises ``CommandError`` with what is expected.
"""

from __future__ import annotations

from pathlib import Path

from providers.config import Config
from providers.model_ref import endpoint_of
from tui.session.conversation import Settings

THINKING_USAGE = "/thinking on|off|BUDGET (tokens), or empty for the endpoint's default"


def parse_thinking(arg: str) -> tuple[bool | None, int | None]:
    """``on`` / ``off`` / a token budget (thinking on) / empty (the endpoint's default)."""
    from tui.session.commands import CommandError  # not at start-up: the commands' table

    low = arg.strip().lower()
    if not low or low == "default":
        return None, None
    if low in ("on", "true", "yes", "1"):
        return True, None
    if low in ("off", "false", "no", "0"):
        return False, None
    try:
        budget = int(low.replace(",", "").replace("_", ""))
    except ValueError:
        raise CommandError(f"{THINKING_USAGE}; got {arg!r}") from None
    if budget < 1:
        raise CommandError("/thinking BUDGET must be at least 1 token")
    return True, budget


def thinking_label(thinking: bool | None, budget: int | None, default: bool = False) -> str:
    """How the setting reads in the status bar: ``thinking on``, ``thinking 2,048``, or, when
    unset, the endpoint's ``default`` (config): ``thinking on (config)``; off says nothing."""
    if thinking is None:
        return "thinking on (config)" if default else ""
    if not thinking:
        return "thinking off"
    return f"thinking {budget:,}" if budget is not None else "thinking on"


def endpoint_thinks(config: Config, model: str | None) -> bool:
    """The ``thinking`` default of ``model``'s endpoint in config."""
    if not model:
        return False
    ep = config.endpoints.get(endpoint_of(model))
    return bool(ep is not None and ep.thinking)


def set_thinking(settings: Settings, arg: str) -> str:
    """Apply ``/thinking ARG`` to ``settings``."""
    settings.thinking, settings.thinking_budget = parse_thinking(arg)
    label = thinking_label(settings.thinking, settings.thinking_budget)
    if not label:
        return "Thinking: the endpoint's default (config) from the next prompt."
    return f"{label.capitalize()} from the next prompt."


def set_tools(settings: Settings, arg: str, cwd: Path | None = None) -> str:
    """Apply ``/tools FILE`` (``off`` or empty clears them) to ``settings``."""
    from providers.tools import ToolsError, load_tools
    from tui.session.commands import CommandError

    if arg.strip().lower() in ("", "off", "none"):
        settings.tools = ()
        return "No tools offered from the next prompt."
    path = Path(arg.strip()).expanduser()
    if not path.is_absolute() and cwd is not None:
        path = cwd / path
    try:
        settings.tools = load_tools(path)
    except ToolsError as exc:
        raise CommandError(str(exc)) from None
    names = ", ".join(t.name for t in settings.tools)
    return (
        f"{len(settings.tools)} tool{'s' if len(settings.tools) != 1 else ''} offered "
        f"({names}); calls are shown and checked, never executed."
    )


def apply(name: str, settings: Settings, arg: str) -> str:
    """Run ``/thinking`` or ``/tools`` on ``settings``; the message to show."""
    return set_thinking(settings, arg) if name == "/thinking" else set_tools(settings, arg)


def pane_of(arg: str, panes: int) -> tuple[int | None, str]:
    """``B 2048`` → (1, ``2048``) when B is one of ``panes`` panes; else (None, ``arg``)."""
    letter, _, rest = arg.strip().partition(" ")
    if len(letter) == 1 and letter.upper() in "ABCD"[:panes]:
        return "ABCD".index(letter.upper()), rest.strip()
    return None, arg


def settings_bits(settings: Settings) -> list[str]:
    """The top bar's words for these settings."""
    bits = []
    label = thinking_label(settings.thinking, settings.thinking_budget)
    if label:
        bits.append(label)
    if settings.tools:
        bits.append(f"tools {len(settings.tools)}")
    return bits

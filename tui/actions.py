"""Every user action in one table: bindings, help, the command palette and keymaps come from it.

An action id (``pick_model``, ``copy_code`` …) is what users remap in config.toml::

    [keys]
    pick_model = "ctrl+l"
    copy_code = "ctrl+f,shift+f12"

Every action has a key that reaches the app through tmux with its default configuration
(``tests/test_real_terminal.py`` types each one): Alt+key arrives as ESC then the key, which
tmux passes on (``tui/terminal_input.py`` makes it a key, not a character); each Alt key also
has an F-key form, for terminals where Option/Alt does not send ESC; Ctrl+B is tmux's prefix and
is left alone.

A remap onto a key that is already bound is reported when the config loads
(``remap_conflicts``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action: its id, default keys, the Textual action it runs, and where it shows."""

    id: str
    keys: str
    action: str
    description: str
    footer: bool = False
    priority: bool = False
    label: str = ""  # the short name the footer shows
    scope: str = "app"  # app | chat | compare | prompt


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec(
        "help", "f1,question_mark", "app.show_help", "Help: every key", footer=True, label="Help"
    ),
    ActionSpec(
        "pick_model", "f2", "app.pick_model", "Pick a model (fuzzy)", footer=True, label="Model"
    ),
    ActionSpec(
        "compare",
        "f3",
        "app.open_compare",
        "Compare models side by side",
        footer=True,
        label="Compare",
    ),
    ActionSpec(
        "conversations",
        "f4",
        "app.conversations",
        "Conversations: resume, rename",
        footer=True,
        label="History",
    ),
    ActionSpec("retry", "f5", "app.retry", "Retry the last request", footer=True, label="Retry"),
    ActionSpec(
        "edit_prompt",
        "alt+e,shift+f7",
        "app.edit_prompt",
        "Edit the last prompt; sending it races again as a new branch (the old one is kept)",
        priority=True,
    ),
    ActionSpec(
        "fork",
        "alt+r,shift+f8",
        "app.fork",
        "Fork: start a new branch from an earlier prompt",
        priority=True,
    ),
    ActionSpec("cancel", "escape", "app.cancel", "Cancel streaming (all panes)"),
    ActionSpec(
        "cancel_or_quit",
        "ctrl+c",
        "app.cancel_or_quit",
        "Cancel streaming, or quit when idle",
        priority=True,
    ),
    ActionSpec("quit", "ctrl+q", "app.quit", "Quit", footer=True, priority=True, label="Quit"),
    # Alt+N and Alt+T: a browser tab never gets Ctrl+N and Ctrl+T (BROWSER_RESERVED).
    ActionSpec("new_chat", "ctrl+n,alt+n", "app.new_chat", "New conversation"),
    ActionSpec("copy_reply", "alt+c,f12", "app.copy_reply", "Copy the last reply"),
    ActionSpec("copy_code", "alt+k,shift+f12", "app.copy_code", "Copy the last code block"),
    ActionSpec("theme", "ctrl+t,alt+t", "app.change_theme", "Change theme"),
    ActionSpec("history_search", "ctrl+r", "app.history_search", "Search past prompts"),
    ActionSpec("replay", "ctrl+g", "app.replay", "Replay the last prompt"),
    ActionSpec("replay_n", "alt+g,shift+f5", "app.replay_n", "Replay the last prompt N times"),
    ActionSpec(
        "suite", "alt+s,shift+f6", "app.suite", "Run a replay suite (JSONL) with a live table"
    ),
    ActionSpec("export", "ctrl+s", "app.export", "Export this conversation"),
    ActionSpec("follow", "ctrl+end", "app.follow", "Jump to the bottom and follow the stream"),
    ActionSpec("summary", "f6", "app.summary", "Session summary and monthly projection"),
    ActionSpec(
        "toggle_reasoning", "ctrl+o", "app.toggle_reasoning", "Show or hide reasoning blocks"
    ),
)

CHAT_ONLY: frozenset[str] = frozenset()

# Keys Chromium acts on before the page sees them (its reserved commands: new window, new tab,
# close tab or window, reopen a closed tab, next or previous tab, quit), so the app in a browser
# tab (`tokenrace serve`) never gets them; every action has another key. Other browser keys
# (F5, Ctrl+R, Ctrl+S …) reach the page first, and the terminal in the page keeps them.
BROWSER_RESERVED: frozenset[str] = frozenset(
    {
        "ctrl+n",
        "ctrl+shift+n",
        "ctrl+t",
        "ctrl+shift+t",
        "ctrl+w",
        "ctrl+shift+w",
        "ctrl+f4",
        "alt+f4",
        "ctrl+tab",
        "ctrl+shift+tab",
        "ctrl+pageup",
        "ctrl+pagedown",
        "ctrl+shift+q",
    }
)


def pretty_keys(keys: str) -> str:
    """``f1,question_mark`` → ``F1 / ?``."""
    names = {"question_mark": "?", "escape": "Esc", "enter": "Enter", "end": "End"}
    out = []
    for raw in keys.split(","):
        k = raw.strip()
        if k in names:
            out.append(names[k])
            continue
        parts = k.split("+")
        out.append("+".join(p.capitalize() if len(p) > 1 else p.upper() for p in parts))
    return " / ".join(out)


def remap_conflicts(
    remaps: Mapping[str, str], others: Iterable[tuple[str, str, str]] = ()
) -> list[str]:
    """Remaps in ``[keys]`` that land on a key something else already uses, said plainly.

    ``others`` are the keys screens and the prompt bind themselves: (key, what it does, where).
    """
    bound: list[tuple[str, str, str]] = []  # (key, who, action id or "")
    for a in ACTIONS:
        for key in remaps.get(a.id, a.keys).split(","):
            bound.append((key.strip(), f"{a.description} ({a.id})", a.id))
    for key, what, where in others:
        bound.append((key, f"{what} ({where})", ""))
    problems = []
    for action_id, keys in remaps.items():
        for key in (k.strip() for k in keys.split(",")):
            user = next((who for k, who, aid in bound if k == key and aid != action_id), None)
            if user is not None:
                problems.append(
                    f'[keys] {action_id} = "{keys}": {pretty_keys(key)} is already bound to '
                    f"{user}; one of the two will not work, so pick a free key"
                )
    return problems

"""Every key and every / command, generated from the action table."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from tui.actions import ACTIONS, pretty_keys
from tui.screens.dialog import Dialog
from tui.session.commands import COMMANDS

PROMPT_KEYS = (
    ("Enter", "send the prompt"),
    ("Ctrl+J / Shift+Enter", "new line in the prompt"),
    ("Up / Down", "walk earlier prompts (when the prompt is empty)"),
    ("Tab", "complete a / command, a role, or an @file path"),
)


class HelpScreen(Dialog[None]):
    """Keys (as currently bound, remaps included) and commands."""

    DEFAULT_CSS = """
    HelpScreen > VerticalScroll { width: 90; height: 85%; padding: 1 2; }
    """
    BINDINGS = [Binding("escape,f1,q,question_mark", "dismiss", "Close", show=False)]

    def __init__(
        self,
        bound: dict[str, str] | None = None,
        screen_keys: list[tuple[str, str, str]] | None = None,
        screen_name: str = "",
    ) -> None:
        super().__init__()
        self.bound = bound or {}
        self.screen_keys = screen_keys or []
        self.screen_name = screen_name

    def compose(self) -> ComposeResult:
        rows: list[Content | str] = [Content.styled("Keys", "bold"), ""]
        for a in ACTIONS:
            keys = pretty_keys(self.bound.get(a.id, a.keys))
            rows.append(
                Content.assemble(
                    (f"{keys:<24}", "bold"), f"{a.description}", (f"   [{a.id}]", "dim")
                )
            )
        if self.screen_keys:
            rows += ["", Content.styled(f"On the {self.screen_name} screen", "bold"), ""]
            for keys, what, binding_id in self.screen_keys:
                remap = (f"   [{binding_id}]", "dim") if binding_id else ""
                rows.append(Content.assemble((f"{pretty_keys(keys):<24}", "bold"), what, remap))
        rows += ["", Content.styled("In the prompt", "bold"), ""]
        for keys, what in PROMPT_KEYS:
            rows.append(Content.assemble((f"{keys:<24}", "bold"), what))
        rows += ["", Content.styled("Commands", "bold"), ""]
        for spec in COMMANDS.values():
            rows.append(Content.assemble((f"{spec.name:<24}", "bold"), spec.help))
        rows += [
            "",
            "Every action is also in the command palette (Ctrl+P). Remap keys in "
            'config.toml under [keys] by the id in brackets, e.g. copy_code = "ctrl+l". '
            "Esc closes.",
        ]
        with VerticalScroll():
            yield Static(Content("\n").join(Content(r) if isinstance(r, str) else r for r in rows))

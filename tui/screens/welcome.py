"""Shown when no model can be used yet: how to add a key or an endpoint."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

from providers import paths
from providers.config import Config


def welcome_text(config: Config) -> Content:
    """The welcome page: what tokenrace needs and the presets it knows."""
    rows: list[Content] = [
        Content.styled("Welcome to tokenrace", "bold"),
        Content(""),
        Content("No model is ready yet: no API key was found and no local server answers."),
        Content("Add one of these, then press F5 to look again (or restart tokenrace):"),
        Content(""),
        Content.styled(
            "Cloud endpoints (set the environment variable, or run `tokenrace keys set NAME`):",
            "bold",
        ),
    ]
    for ep in config.endpoints.values():
        if ep.preset and ep.key_required:
            rows.append(
                Content.assemble(
                    "  ",
                    (f"{ep.name:<11}", "bold"),
                    f" {ep.api_key_env or '':<20} {ep.description}",
                )
            )
    rows += [Content(""), Content.styled("Local servers (start one, no key needed):", "bold")]
    for ep in config.endpoints.values():
        if ep.preset and not ep.key_required:
            rows.append(
                Content.assemble(
                    "  ", (f"{ep.name:<11}", "bold"), f" {ep.base_url:<28} {ep.description}"
                )
            )
    rows += [
        Content(""),
        Content.styled("Any other OpenAI-compatible server:", "bold"),
        Content("  tokenrace endpoints add mylab --base-url http://127.0.0.1:8000/v1"),
        Content(f"  or edit {paths.config_path()}"),
        Content(""),
        Content("Then: tokenrace -m ENDPOINT/MODEL, e.g. tokenrace -m openai/gpt-4o-mini"),
    ]
    return Content("\n").join(rows)


class WelcomeScreen(Screen[None]):
    """First run with nothing configured."""

    DEFAULT_CSS = """
    WelcomeScreen VerticalScroll { padding: 1 2; }
    """
    BINDINGS = [
        Binding("f5", "app.look_again", "Look again", show=True),
        Binding("f2", "app.pick_model", "Pick a model", show=True),
        Binding("f1", "app.show_help", "Help", show=True),
        Binding("ctrl+q", "app.quit", "Quit", show=True),
    ]

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(welcome_text(self.config), id="welcome")
        yield Footer()

"""Shown when no model can be used yet: how to add a key or an endpoint."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

from providers import paths, secrets
from providers.config import Config
from providers.local import LOCAL, bundled_model, describe
from providers.model_ref import ModelRef


def _local_rows(alias: str, default: bool) -> list[Content]:
    """One bundled model: its name, what it is, its licence, what to expect."""
    m = bundled_model(alias)
    mark = "▶ " if default else "  "
    if m is None:
        return [Content.assemble(mark, (f"{LOCAL}/{alias}", "bold"), f"  {describe(alias)}")]
    return [
        Content.assemble(
            mark,
            (f"{LOCAL}/{alias}", "bold"),
            f"  {m.title}: {m.kind}, {m.params} parameters, {m.licence}",
        ),
        Content(f"    {m.expect}"),
    ]


def welcome_text(config: Config, local_model: str | None = None) -> Content:
    """The welcome page: what tokenrace needs and the presets it knows."""
    rows: list[Content] = [Content.styled("Welcome to tokenrace", "bold"), Content("")]
    if local_model:
        rows += [
            Content.assemble(
                "No API key was found and no local server answers, so tokenrace runs its own: ",
                (local_model, "bold"),
                ".",
            ),
            Content(
                "Bundled with tokenrace, served on this machine by llama.cpp, free and offline:"
            ),
        ]
        ep = config.endpoints.get(LOCAL)
        for alias in ep.models if ep is not None else (ModelRef.parse(local_model).model,):
            rows += _local_rows(alias, default=str(ModelRef(LOCAL, alias)) == local_model)
        rows += [
            Content(
                "The streaming, TTFT, tok/s and token counts are real; the answers are a tiny "
                "model's. F3 races two models."
            ),
            Content(""),
            Content.assemble(("Press Enter to chat with it.", "bold")),
            Content(""),
            Content("For real work, add a real endpoint (then F5 looks again):"),
            Content(""),
        ]
    else:
        rows += [
            Content("No model is ready yet: no API key was found and no local server answers."),
            Content("Add one of these, then press F5 to look again (or restart tokenrace):"),
            Content(""),
        ]
    rows += [
        Content.styled(
            "Cloud endpoints (set the environment variable, or run `tokenrace keys set NAME`):",
            "bold",
        ),
    ]
    # As wide as the longest preset name (anthropic-openai), so the columns line up.
    width = max((len(ep.name) for ep in config.endpoints.values() if ep.preset), default=11)
    for ep in config.endpoints.values():
        if ep.preset and ep.key_required:
            rows.append(
                Content.assemble(
                    "  ",
                    (f"{ep.name:<{width}}", "bold"),
                    f" {ep.api_key_env or '':<20} {ep.description}",
                )
            )
    rows += [Content(""), Content.styled("Local servers (start one, no key needed):", "bold")]
    for ep in config.endpoints.values():
        if ep.preset and not ep.key_required and not ep.managed:
            rows.append(
                Content.assemble(
                    "  ",
                    (f"{ep.name:<{width}}", "bold"),
                    f" {secrets.redact_url(ep.base_url):<28} {ep.description}",
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
    if not local_model:
        rows += [
            Content(""),
            Content.styled("Offline, with no key at all:", "bold"),
            Content(
                '  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" '
                "pip install 'tokenrace[local]'"
            ),
            Content(
                "  bundles two small local models (it compiles llama-cpp-python once: about "
                "10 minutes on 2 cores)"
            ),
        ]
    return Content("\n").join(rows)


class WelcomeScreen(Screen[None]):
    """First run with nothing configured."""

    DEFAULT_CSS = """
    WelcomeScreen VerticalScroll { padding: 1 2; }
    """
    BINDINGS = [
        Binding("enter", "chat_local", "Chat with the local model", show=True),
        Binding("f5", "app.look_again", "Look again", show=True),
        Binding("f2", "app.pick_model", "Pick a model", show=True),
        Binding("f1", "app.show_help", "Help", show=True),
        Binding("ctrl+q", "app.quit", "Quit", show=True),
    ]

    def __init__(self, config: Config, local_model: str | None = None) -> None:
        super().__init__()
        self.config = config
        self.local_model = local_model

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(welcome_text(self.config, self.local_model), id="welcome")
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "chat_local":
            return self.local_model is not None  # hidden without the bundled model
        return True

    def retry(self) -> None:
        """F5 (the app's retry key, which has priority): read the config again and look."""
        self.app.call_later(self.app.run_action, "look_again")

    def action_chat_local(self) -> None:
        if self.local_model is None:
            return
        from tui.screens.chat import ChatScreen

        self.app.switch_screen(ChatScreen(self.local_model))

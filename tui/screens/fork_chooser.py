"""Alt+R: choose one of the conversation's prompts to start a new branch from."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from providers.inert import inert_label

PREVIEW_CHARS = 90


class ForkChooser(ModalScreen[int | None]):
    """The prompts of the current branch, newest last; Enter picks one, Esc closes."""

    DEFAULT_CSS = """
    ForkChooser { align: center middle; }
    ForkChooser > Vertical {
        width: 100; max-width: 95%; height: auto; max-height: 80%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    ForkChooser OptionList { height: auto; max-height: 20; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Close", show=False)]

    def __init__(self, prompts: list[str]) -> None:
        super().__init__()
        self.prompts = prompts

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                Content.styled(
                    "Start a new branch from which prompt? It comes back to the prompt box to "
                    "edit; what followed it stays stored as an earlier branch (F4 shows the "
                    "tree). Enter picks · Esc closes",
                    "dim",
                )
            )
            options = []
            for i, text in enumerate(self.prompts):
                line = " ".join(text.split())
                if len(line) > PREVIEW_CHARS:
                    line = line[:PREVIEW_CHARS] + "…"
                options.append(Option(Content(f"{i + 1:>3}. {inert_label(line)}"), id=str(i)))
            yield OptionList(*options)

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = len(self.prompts) - 1
        options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id or 0))

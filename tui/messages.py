"""Messages that cross widgets (DESIGN/STYLE: small dataclasses named as past-tense events)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class PromptSubmitted(Message):
    """The user pressed Enter in the prompt; ``text`` has pastes expanded."""

    text: str


@dataclass
class ModelPicked(Message):
    """A model was chosen in the picker (``pane`` is None in plain chat)."""

    model: str
    pane: int | None = None


class EngineNewsArrived(Message, bubble=False):
    """The engine said something about a model's server (starting, ready) that an idle
    screen may show; ``text`` is ``"MODEL …: news"``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

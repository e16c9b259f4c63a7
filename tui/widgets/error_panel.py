"""A failed request, shown in the conversation with the engine's message and what to do."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from providers.inert import inert, inert_label
from providers.model_ref import endpoint_of

HINTS = {
    "auth": "F5 retry · set the key with `tokenrace keys set ENDPOINT` · F2 another model",
    "keyring": "F5 retry · set the key in an environment variable or api_key_cmd instead",
    "not_found": "F2 pick one of the endpoint's models · F5 retry",
    "quota": "check the account's billing · F2 another model",
    "connect": "F5 retry when the server is up · F2 another model",
    "internal": "F5 retry",
}


def hint_for(kind: str, model: str) -> str:
    """What to do about an error of ``kind``, naming the model's endpoint."""
    return HINTS.get(kind, "F5 retry · F2 another model").replace("ENDPOINT", endpoint_of(model))


class ErrorPanel(Static):
    """The error of one request; F5 retries it."""

    DEFAULT_CSS = """
    ErrorPanel {
        margin: 1 0 0 0;
        padding: 0 1;
        border: round $error;
        color: $text;
    }
    """

    def __init__(
        self, model: str, kind: str, message: str, *, hidden: tuple[str, str] | None = None
    ) -> None:
        """``model`` and ``message`` as shown; ``hidden``: in a blind race, the real model and
        message, shown once the verdict reveals the race (``reveal``)."""
        self.model = model
        self.kind = kind
        self.message = message
        self._hidden = hidden
        super().__init__(self._content(), markup=False)
        self.border_title = "error"

    def _content(self) -> Content:
        return Content.assemble(
            ("✗ ", "bold"),
            (inert_label(self.model), "bold"),
            f" · {self.kind}\n",
            inert(self.message),
            "\n",
            (hint_for(self.kind, self.model), "italic"),
        )

    def reveal(self) -> None:
        """The blind race's verdict is in: the real model and message replace the labels."""
        if self._hidden is None:
            return
        self.model, self.message = self._hidden
        self._hidden = None
        self.update(self._content())

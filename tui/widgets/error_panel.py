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

    def __init__(self, model: str, kind: str, message: str, *, retrying: bool = False) -> None:
        self.model = model
        self.kind = kind
        self.message = message
        hint = hint_for(kind, model)
        super().__init__(
            Content.assemble(
                ("✗ ", "bold"),
                (inert_label(model), "bold"),
                f" · {kind}\n",
                inert(message),
                "\n",
                (hint, "italic"),
            ),
            markup=False,
        )
        self.border_title = "error"

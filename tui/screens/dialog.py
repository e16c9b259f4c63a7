"""The base of every modal box: centred over the screen beneath, framed, with the app typed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from textual.binding import Binding, BindingType
from textual.content import Content
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import DataTable, OptionList, ProgressBar, Static

from providers.inert import inert_label

if TYPE_CHECKING:
    from tui.app import TokenraceApp

R = TypeVar("R")


class Dialog(ModalScreen[R]):
    """A modal box (its one ``Vertical`` or ``VerticalScroll``); each dialog sets its size."""

    DEFAULT_CSS = """
    Dialog { align: center middle; }
    Dialog > Vertical, Dialog > VerticalScroll {
        max-width: 95%; border: round $primary; background: $surface;
    }
    Dialog .hint { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Close", show=False)
    ]

    @property
    def tapp(self) -> TokenraceApp:
        from tui.app import TokenraceApp

        assert isinstance(self.app, TokenraceApp)
        return self.app

    def stored(self, conv_id: int | None = None) -> tuple[list[Any], list[Any]]:
        """The stored runs and verdicts (of one conversation, or all), after pending writes."""
        store = self.tapp.store
        if store is None:
            return [], []
        store.flush()
        return store.runs(conv_id), store.verdicts(conv_id)

    def action_move(self, step: int) -> None:
        """Up / Down typed in a dialog's search box move its list's highlight."""
        options = self.query_one(OptionList)
        if step > 0:
            options.action_cursor_down()
        else:
            options.action_cursor_up()


def run_table(columns: tuple[str, ...]) -> list[Widget]:
    """A run's progress bar, its live table (with ``columns``) and its status line: the body of
    the suite and load dialogs."""
    table: DataTable[Any] = DataTable(id="table", cursor_type="none", zebra_stripes=True)
    for label in columns:
        table.add_column(label, key=label)
    status = Static("", id="status", classes="hint", markup=False)
    return [ProgressBar(total=1, show_eta=False, id="progress"), table, status]


def models_hint(title: str, models: Sequence[str], rest: str) -> Static:
    """A run dialog's top line: its title, the models it runs on (shown as they are), its keys."""
    return hint(
        Content.assemble((title, "bold"), f" on {', '.join(map(inert_label, models))} · {rest}")
    )


def hint(text: str | Content) -> Static:
    """The muted line at the top of a dialog that says what its keys do."""
    return Static(text, classes="hint")


def note(text: str) -> Static:
    """A dim paragraph at the foot of a dialog: where its figures come from."""
    return Static(Content.styled(text, "dim"))

"""The prompt: multi-line, Enter sends, Ctrl+J (or Shift+Enter) inserts a newline.

Large pastes (a log file, a 1 MB document) are not put into the text area: they are kept aside
and shown as a one-line placeholder with their size, so the box stays responsive. On send, the
placeholders are replaced by what was pasted.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from textual import events
from textual.content import Content
from textual.message import Message
from textual.widgets import TextArea
from textual.widgets.text_area import EditResult, Location

from providers.attachments import Image
from providers.inert import inert
from tui.session.attachments import PendingImages, dropped_image_path, image_command
from tui.textual_private import private_override

PASTE_COLLAPSE_CHARS = 2000
PASTE_COLLAPSE_LINES = 20
_PLACEHOLDER = re.compile(r"\[paste #(\d+): [^\]]*\]")


def one_newline_style(text: str) -> str:
    """CRLF and CR line ends (tmux, xterm and VTE paste lines with CR) as LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def human_size(n_bytes: int) -> str:
    """``1.0 MB`` / ``12.3 KB`` / ``512 B``."""
    if n_bytes >= 1_000_000:
        return f"{n_bytes / 1_000_000:.1f} MB"
    if n_bytes >= 1000:
        return f"{n_bytes / 1000:.1f} KB"
    return f"{n_bytes} B"


class PromptBox(TextArea):
    """A TextArea that sends on Enter and folds big pastes."""

    DEFAULT_CSS = """
    PromptBox {
        height: auto;
        min-height: 3;
        max-height: 12;
        border: round $primary 50%;
        &:focus { border: round $primary; }
    }
    """

    @dataclass
    class Submitted(Message):
        """Enter was pressed; ``text`` has every paste expanded."""

        prompt: PromptBox
        text: str

    def at_word(self) -> tuple[str, tuple[int, int]]:
        """The ``@file`` word the cursor ends (``""`` when none) and where it starts."""
        row, col = self.cursor_location
        before = self.document.get_line(row)[:col]
        start = max(before.rfind(" "), before.rfind("\t")) + 1
        word = before[start:]
        return (word, (row, start)) if word.startswith("@") else ("", (row, col))

    @dataclass
    class CompletionRequested(Message):
        """Tab on a / command or an ``@file`` word: complete it."""

        prompt: PromptBox

    @dataclass
    class HistoryRequested(Message):
        """Up/Down on an empty (or recalled) prompt: walk the prompt history."""

        prompt: PromptBox
        direction: int  # -1 older, +1 newer

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            "",
            id=id,
            soft_wrap=True,
            show_line_numbers=False,
            tab_behavior="focus",
            compact=False,
            highlight_cursor_line=False,
            placeholder="Message…  Enter sends · Ctrl+J newline · / commands · F1 help",
        )
        self.pastes: dict[int, str] = {}
        self._next_paste = 1
        self.recalled: str | None = None  # the history entry shown, if any
        self.images = PendingImages()  # attached to the next message (/image, a dropped file)

    @property
    def full_text(self) -> str:
        """The prompt with every folded paste put back."""

        def expand(m: re.Match[str]) -> str:
            return self.pastes.get(int(m.group(1)), m.group(0))

        return _PLACEHOLDER.sub(expand, self.text)

    def show_images(self) -> None:
        """The pending images under the prompt's border (plain text: a file name is no markup)."""
        summary = self.images.summary()
        self.border_subtitle = Content(inert(f"▣ {summary}")) if summary else None

    def take_images(self) -> tuple[Image, ...]:
        """The pending images, handed to the message being sent."""
        images = self.images.take()
        self.show_images()
        return images

    def clear_prompt(self) -> None:
        self.text = ""
        self.pastes.clear()
        self.recalled = None

    def set_prompt(self, text: str, recalled: bool = False) -> None:
        """Replace the prompt's text (big texts fold like a paste)."""
        self.pastes.clear()
        self.text = ""
        if self._is_big(text):
            self.insert(self._fold(text))
        else:
            self.insert(text)
        self.recalled = self.text if recalled else None

    @staticmethod
    def _is_big(text: str) -> bool:
        return len(text) > PASTE_COLLAPSE_CHARS or text.count("\n") >= PASTE_COLLAPSE_LINES

    def _fold(self, text: str) -> str:
        number = self._next_paste
        self._next_paste += 1
        self.pastes[number] = text
        lines = text.count("\n") + 1
        return f"[paste #{number}: {human_size(len(text.encode('utf-8')))}, {lines:,} lines]"

    @private_override(TextArea)
    async def _on_paste(self, event: events.Paste) -> None:
        # Textual runs ``TextArea._on_paste`` itself after this handler (a message goes to the
        # handler of every class in the MRO unless the default is prevented): calling it here
        # as well inserted every paste twice.
        event.prevent_default()
        event.stop()
        if self.read_only:
            return
        if (path := dropped_image_path(event.text)) is not None:
            # A dropped (or pasted) image file attaches at once: see tui/session/attachments.py.
            message, ok = image_command(self.images, shlex.quote(str(path)))
            self.show_images()
            self.notify(message, severity="information" if ok else "warning", markup=False)
            return
        text = one_newline_style(event.text)
        if self._is_big(text):
            text = self._fold(text)
        if result := self._replace_via_keyboard(text, *self.selection):
            self.move_cursor(result.end_location)

    # A folded paste is one unit: every keyboard edit (Backspace, Delete, Ctrl+W, Ctrl+K, cut,
    # typing) that touches part of a placeholder takes all of it, or lands after it. Both
    # TextArea methods below are where its keyboard actions edit the document.

    @private_override(TextArea)
    def _delete_via_keyboard(self, start: Location, end: Location) -> EditResult | None:
        return super()._delete_via_keyboard(*self._whole_pastes(start, end))

    @private_override(TextArea)
    def _replace_via_keyboard(
        self, insert: str, start: Location, end: Location
    ) -> EditResult | None:
        return super()._replace_via_keyboard(insert, *self._whole_pastes(start, end))

    def _whole_pastes(self, start: Location, end: Location) -> tuple[Location, Location]:
        """``start``..``end`` widened to every placeholder it cuts into (or, for an insertion
        point inside one, moved to its end)."""
        start, end = sorted((start, end))
        for row in sorted({start[0], end[0]}):
            for m in _PLACEHOLDER.finditer(self.document[row]):
                if int(m.group(1)) not in self.pastes:
                    continue
                p0, p1 = (row, m.start()), (row, m.end())
                if start == end and p0 < start < p1:
                    start = end = p1
                elif start < p1 and end > p0:
                    start, end = min(start, p0), max(end, p1)
        return start, end

    @private_override(TextArea)
    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.prevent_default()
            event.stop()
            self.post_message(self.Submitted(self, self.full_text))
            return
        if event.key in ("ctrl+j", "shift+enter", "alt+enter"):
            event.prevent_default()
            event.stop()
            self.insert("\n")
            return
        if event.key == "tab" and (self.text.startswith("/") or self.at_word()[0]):
            event.prevent_default()
            event.stop()
            self.post_message(self.CompletionRequested(self))
            return
        if event.key in ("up", "down"):
            at_edge = (
                self.cursor_location[0] == 0
                if event.key == "up"
                else self.cursor_location[0] == self.document.line_count - 1
            )
            browsing = not self.text or (self.recalled is not None and self.text == self.recalled)
            if browsing and at_edge:
                event.prevent_default()
                event.stop()
                self.post_message(self.HistoryRequested(self, -1 if event.key == "up" else 1))
                return
        if self.recalled is not None and event.is_printable:
            self.recalled = None
        await super()._on_key(event)

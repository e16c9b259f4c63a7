"""Keys and pastes as real terminals send them, below the terminal: the prompt's paste handling
(through Textual's own message dispatch, not a direct call) and ``tui/terminal_input.py``'s
changes to Textual's parser and driver, compared with Textual's own behaviour.

``tests/test_real_terminal.py`` drives the same paths through tmux.
"""

from __future__ import annotations

import codecs
import inspect
import subprocess
import sys
import time

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.drivers import linux_driver

from tests.support.cli import REPO
from tui import terminal_input
from tui.widgets.prompt_box import PromptBox

LOG_30_LINES = "\r".join(f"2026-11-30 09:{i:02d}:00 worker-{i} finished job {i}" for i in range(30))


class PromptApp(App[None]):
    """Just the prompt, focused."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def compose(self) -> ComposeResult:
        yield PromptBox(id="prompt")

    def on_mount(self) -> None:
        self.query_one(PromptBox).focus()

    def on_prompt_box_submitted(self, event: PromptBox.Submitted) -> None:
        self.sent.append(event.text)


async def paste(app: PromptApp, text: str) -> None:
    """A paste as the driver delivers it: a message to the focused widget, dispatched by Textual."""
    app.query_one(PromptBox).post_message(events.Paste(text))


async def test_a_small_paste_is_inserted_once() -> None:
    app = PromptApp()
    async with app.run_test() as pilot:
        await paste(app, "small paste text")
        await pilot.pause(0.1)
        assert app.query_one(PromptBox).text == "small paste text"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.sent == ["small paste text"]


async def test_pasted_lines_with_cr_or_crlf_ends_arrive_with_lf() -> None:
    app = PromptApp()
    async with app.run_test() as pilot:
        prompt = app.query_one(PromptBox)
        await paste(app, "one\rtwo\r\nthree")
        await pilot.pause(0.1)
        assert prompt.text == "one\ntwo\nthree"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.sent == ["one\ntwo\nthree"]


async def test_a_30_line_paste_with_cr_ends_is_folded_and_sent_once_with_lf() -> None:
    app = PromptApp()
    async with app.run_test() as pilot:
        prompt = app.query_one(PromptBox)
        await paste(app, LOG_30_LINES)
        await pilot.pause(0.1)
        assert prompt.text.startswith("[paste #1: ") and prompt.text.endswith(", 30 lines]")
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.sent == [LOG_30_LINES.replace("\r", "\n")]


async def test_backspace_and_delete_take_a_folded_paste_whole() -> None:
    app = PromptApp()
    async with app.run_test() as pilot:
        prompt = app.query_one(PromptBox)
        await pilot.press("a", "space")
        await paste(app, LOG_30_LINES)
        await pilot.press("space", "b")
        await pilot.pause(0.1)
        folded = prompt.text
        assert folded.startswith("a [paste #1:") and folded.endswith("] b")
        # Backspace from just after the placeholder: all of it goes, the text around stays.
        await pilot.press("end", "left", "left", "backspace")
        assert prompt.text == "a  b"
        await pilot.press("ctrl+z")
        assert prompt.text == folded
        # Delete from just before it, and Ctrl+W from inside it, do the same.
        await pilot.press("home", "right", "right", "delete")
        assert prompt.text == "a  b"
        await pilot.press("ctrl+z", "home", "right", "right", "right", "right", "right")
        await pilot.press("ctrl+w")
        assert prompt.text == "a  b"


async def test_typing_inside_a_folded_paste_lands_after_it() -> None:
    app = PromptApp()
    async with app.run_test() as pilot:
        prompt = app.query_one(PromptBox)
        await paste(app, LOG_30_LINES)
        await pilot.press("home", "right", "right", "right", "x")
        assert prompt.text.endswith(" lines]x")
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.sent == [LOG_30_LINES.replace("\r", "\n") + "x"]


def _parse(data: str) -> list[tuple[str, str | None]]:
    """(key, character) of every event Textual's parser makes of ``data``, after its ESC wait."""
    from textual._xterm_parser import XTermParser

    parser = XTermParser()
    out = list(parser.feed(data))
    time.sleep(0.15)  # past ESCDELAY (100 ms): a lone ESC, or ESC + key, is complete
    out += list(parser.tick())
    return [(e.key, e.character) for e in out if isinstance(e, events.Key)]


def test_alt_keys_are_keys_in_both_byte_forms_and_alt_digits_are_not_macos_characters() -> None:
    # Textual's own reading (in a process without the change): ESC g types 'g', ESC 2 is '™'.
    own = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from {__name__} import _parse; print(_parse('\\x1bg'), _parse('\\x1b2'))",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout
    assert own.strip() == "[('alt+g', 'g')] [('trade_mark_sign', '™')]"
    terminal_input.install()
    for char in "gsck1234":
        esc_prefix = _parse("\x1b" + char)
        csi_u = _parse(f"\x1b[{ord(char)};3u")
        assert esc_prefix == csi_u == [(f"alt+{char}", None)], char
    # Alt+Enter inserts a newline in the prompt: ESC Enter must not lose its Alt and send.
    assert _parse("\x1b\r") == _parse("\x1b[13;3u") == [("alt+enter", None)]
    # Plain keys, escape and F-keys are as Textual reads them.
    assert _parse("g") == [("g", "g")]
    assert _parse("\x1b") == [("escape", "\x1b")]
    assert _parse("\x1bOP") == _parse("\x1b[11~") == [("f1", None)]


def test_undecodable_bytes_arrive_as_replacement_characters() -> None:
    # The driver decodes stdin with this call: the change replaces the decoder it builds.
    source = inspect.getsource(linux_driver.LinuxDriver.run_input_thread)
    assert 'getincrementaldecoder("utf-8")()' in source
    strict = codecs.getincrementaldecoder("utf-8")()
    try:
        strict.decode(b"ok \xff")
        raise AssertionError("Textual's decoder accepted invalid UTF-8")
    except UnicodeDecodeError:
        pass
    terminal_input.install()
    decoder = linux_driver.getincrementaldecoder("utf-8")()  # type: ignore[attr-defined]
    assert decoder.decode(b"ok \xff then \xe2\x84") == "ok \ufffd then "
    assert decoder.decode(b"\xa2") == "™"  # a character split across reads still decodes


def test_every_action_has_a_key_tmux_and_alt_less_terminals_pass_on() -> None:
    from tui.actions import ACTIONS
    from tui.screens.compare import CompareScreen

    # tmux keeps Ctrl+B (its prefix); Ctrl+H/I/M/[ are Backspace, Tab, Enter and Esc.
    taken = {"ctrl+b", "ctrl+h", "ctrl+i", "ctrl+m", "ctrl+left_square_bracket"}
    for a in ACTIONS:
        keys = [k.strip() for k in a.keys.split(",")]
        assert not taken & set(keys), a.id
        # Where Alt or Option sends no ESC, an Alt-only action would be out of reach.
        assert any(not k.startswith("alt+") for k in keys), a.id
    compare = {b.key: b.action for b in CompareScreen.BINDINGS if isinstance(b, Binding)}
    assert compare["f10"] == "cancel_one"  # per-pane cancel without Alt
    assert not taken & set(compare)

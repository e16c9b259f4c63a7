"""The installed app in a real terminal, typed into as a person types: every key in the README's
tables, pastes, resizes and signals, through tmux with its default configuration.

Pilot injects Textual events and skips the terminal's byte parsing; these tests do not. The
app runs in tmux on a private server with its defaults (``TERM=screen`` in the pane, the C-b
prefix, a 500 ms escape-time), and keys are the bytes a terminal emulator sends, written into an
attached tmux client's pseudo-terminal (``tests/support/terminal.py``): tmux parses them as it
parses a person's keys and passes them on. The screen is read with ``capture-pane``; what the
model received, from the mock server's request log.

Each key is typed in every form a real terminal sends it (Alt as ESC-prefix and as CSI-u,
F-keys as xterm and VT220 send them and as tmux's ``send-keys`` does), and each must do its
action: a binding that does not reach the app fails here.
"""

from __future__ import annotations

import re
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.cli import REPO
from tests.support.mock_server import MockServerProcess
from tests.support.terminal import (
    TMUX,
    RealTerminal,
    alt,
    bracketed,
    fkey,
    shift_fkey,
)

pytestmark = pytest.mark.skipif(TMUX is None, reason="needs tmux (apt-get install tmux)")

CODE_REPLY = "Here is code:\n\n```python\nprint('hi')\n```\n\nDone."
SLOW = {"ttft_ms": 50, "tps": 20, "n_tokens": 600}  # 30 s: long enough to cancel by hand
START_S = 40.0  # the app's first frame, on a loaded 2-core machine

# A key form is bytes typed into the tmux client, or ("send-keys", NAME) sent by tmux itself.
Form = bytes | tuple[str, str]


def send_keys(name: str) -> tuple[str, str]:
    return ("send-keys", name)


# Every key of the README's tables, in every form the suite types it.
KEY_FORMS: dict[str, list[Form]] = {
    "Enter": [b"\r"],
    "Esc": [b"\x1b"],
    "?": [b"?"],
    "Ctrl+C": [b"\x03"],
    "Ctrl+E": [b"\x05"],
    "Ctrl+G": [b"\x07"],
    "Ctrl+J": [b"\n"],
    "Ctrl+N": [b"\x0e"],
    "Ctrl+O": [b"\x0f"],
    "Ctrl+P": [b"\x10"],
    "Ctrl+Q": [b"\x11"],
    "Ctrl+R": [b"\x12"],
    "Ctrl+S": [b"\x13"],
    "Ctrl+T": [b"\x14"],
    "Ctrl+End": [b"\x1b[1;5F"],
    "PageUp": [b"\x1b[5~"],
    "PageDown": [b"\x1b[6~"],
    "Delete": [b"\x1b[3~"],
    # What kitty sends under its keyboard protocol. tmux 3.3 with its defaults does not pass
    # Shift+Enter on (it sends Enter), so this form goes straight to the pane: the README says
    # "where the terminal reports it", and Ctrl+J is the form that works everywhere.
    "Shift+Enter": [("send-keys-hex", "1b 5b 31 33 3b 32 75")],
    **{f"F{n}": [*fkey(n), send_keys(f"F{n}")] for n in range(1, 11)},
    "F12": [*fkey(12), send_keys("F12")],
    "Shift+F5": [*shift_fkey(5), send_keys("S-F5")],
    "Shift+F6": [*shift_fkey(6), send_keys("S-F6")],
    "Shift+F12": [*shift_fkey(12), send_keys("S-F12")],
    **{f"Shift+F{n}": [*shift_fkey(n), send_keys(f"S-F{n}")] for n in (7, 8, 9)},
    **{f"Alt+{c.upper()}": [*alt(c)] for c in "cegkhsr"},
    **{f"Alt+{n}": [*alt(str(n))] for n in range(1, 5)},
}


@dataclass
class Session:
    """One app in one terminal, and the mock server it talks to."""

    term: RealTerminal
    mock: MockServerProcess
    models: dict[str, str]  # short name → scenario name on the mock server
    typed: list[tuple[str, Form]] = field(default_factory=list)
    toasts: dict[str, list[float]] = field(default_factory=dict)  # pattern → when shown

    def press(self, key: str, form: Form | None = None, pause: float = 0.0) -> None:
        """Type ``key`` (its first form unless ``form`` is given)."""
        form = KEY_FORMS[key][0] if form is None else form
        self.typed.append((key, form))
        if isinstance(form, bytes):
            self.term.type(form)
        elif form[0] == "send-keys":
            self.term.send_keys(form[1])
        else:
            self.term.send_keys("-H", *form[1].split())
        if pause:
            time.sleep(pause)

    def text(self, text: str) -> None:
        self.term.type(text.encode())

    def requests(self, model: str) -> list[dict[str, Any]]:
        name = self.models[model]
        return [
            r
            for r in self.mock.log()
            if r["path"].endswith("/chat/completions") and r.get("model") == name
        ]

    def wait_requests(self, model: str, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reqs = self.requests(model)
            if len(reqs) >= n:
                return reqs
            time.sleep(0.1)
        raise TimeoutError(
            f"{n} requests to {model} expected, saw {len(self.requests(model))}:\n"
            + self.term.screen()
        )

    def last_prompt(self, model: str) -> str:
        content: str = self.requests(model)[-1]["body"]["messages"][-1]["content"]
        return content

    def idle(self, model: str) -> None:
        """Wait until the last reply from ``model`` has ended, on the server and on screen."""
        deadline = time.monotonic() + 15
        while not self.requests(model)[-1].get("closed_ns"):
            assert time.monotonic() < deadline, "the reply never ended"
            time.sleep(0.1)
        time.sleep(0.3)  # the engine's last event, and a frame
        self.term.wait_gone("streaming")

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.term.screen()))

    def wait_count(self, pattern: str, n: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count(pattern) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n}× {pattern!r} expected:\n{self.term.screen()}")
            time.sleep(0.1)

    def wait_one_more(self, pattern: str, before: int, timeout: float = 15.0) -> None:
        """Wait until one more ``pattern`` is on screen than the fewest seen since ``before``
        were: older notifications may expire meanwhile (on a loaded machine a key's own can
        come after they went, and ``before + 1`` is then never on screen at once)."""
        deadline = time.monotonic() + timeout
        fewest = before
        while (shown := self.count(pattern)) <= fewest:
            fewest = min(fewest, shown)
            if time.monotonic() > deadline:
                raise TimeoutError(f"one more {pattern!r} expected:\n{self.term.screen()}")
            time.sleep(0.1)


def start(
    mock: MockServerProcess, home: Path, *args: str, width: int = 100, height: int = 30
) -> Session:
    """The app on the mock server: ``code`` answers with a code block, ``slow`` for 30 s."""
    tag = uuid.uuid4().hex[:6]
    models = {"code": f"code-{tag}", "slow": f"slow-{tag}"}
    models |= {letter: f"slow-{letter}-{tag}" for letter in "ABCD"}  # one per compare pane
    mock.add_scenario(models["code"], {"text": CODE_REPLY, "ttft_ms": 20, "tps": 200})
    for name in models:
        if name != "code":
            mock.add_scenario(models[name], SLOW)
    (home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{mock.base_url}"\n'
        f"models = {list(models.values())!r}\n".replace("'", '"')
    )
    refs = [arg for a in args for arg in ("-m", f"mock/{models[a]}")]
    term = RealTerminal.app(home, *refs, width=width, height=height)
    term.wait_for("Message…", START_S)
    return Session(term, mock, models)


# --- what each key does, as a person sees it ------------------------------------------------


@dataclass
class Opens:
    """The key opens something that shows ``pattern``; ``close`` shuts it again."""

    pattern: str
    close: str = "Esc"


@dataclass
class Toast:
    """The key shows a notification matching ``pattern`` (counted: one more each press)."""

    pattern: str


Effect = Opens | Toast | Callable[[Session, Form], None]


def check(s: Session, key: str, effect: Effect) -> None:
    """Type ``key`` in each of its forms; each must have ``effect``."""
    for form in KEY_FORMS[key]:
        if isinstance(effect, Opens):
            assert not re.search(effect.pattern, s.term.screen())
            s.press(key, form)
            try:
                s.term.wait_for(effect.pattern, 10)
            except TimeoutError as exc:
                raise AssertionError(f"{key} as {form!r} did nothing") from exc
            s.press(effect.close)
            s.term.wait_gone(effect.pattern, 10)
        elif isinstance(effect, Toast):
            # A notification stays 5 s: counting "one more" is safe only while none of those
            # on screen can expire meanwhile, so older ones are let go first.
            shown = s.toasts.setdefault(effect.pattern, [])
            if shown and time.monotonic() - shown[0] > 2.5:
                s.term.wait_gone(effect.pattern, 10)
                shown.clear()
            before = s.count(effect.pattern)
            s.press(key, form)
            try:
                s.wait_one_more(effect.pattern, before, 10)
            except TimeoutError as exc:
                raise AssertionError(f"{key} as {form!r} did nothing") from exc
            shown.append(time.monotonic())
        else:
            effect(s, form)


def sends_again(model: str) -> Callable[[Session, Form], None]:
    """The key sends the last prompt again: one more request, with the same text."""

    def effect(s: Session, form: Form) -> None:
        n = len(s.requests(model))
        prompt = s.last_prompt(model)
        s.press(key_of(form), form)
        try:
            s.wait_requests(model, n + 1)
        except TimeoutError as exc:
            raise AssertionError(f"{key_of(form)} as {form!r} did nothing") from exc
        assert s.last_prompt(model) == prompt
        s.idle(model)

    return effect


def edits_and_sends(model: str) -> Callable[[Session, Form], None]:
    """The key takes the last prompt back into the prompt box; Enter races it again."""

    def effect(s: Session, form: Form) -> None:
        n = len(s.requests(model))
        prompt = s.last_prompt(model)
        before = s.count("Edit the prompt;")
        s.press(key_of(form), form)
        try:
            s.wait_one_more("Edit the prompt;", before, 10)
        except TimeoutError as exc:
            raise AssertionError(f"{key_of(form)} as {form!r} did nothing") from exc
        s.press("Enter")
        s.wait_requests(model, n + 1)
        assert s.last_prompt(model) == prompt
        s.idle(model)

    return effect


def key_of(form: Form) -> str:
    return next(k for k, forms in KEY_FORMS.items() if form in forms)


CHAT_DIALOGS: dict[str, Effect] = {
    "F1": Opens(r"\[pick_model\]"),
    "F2": Opens("Pick a model +type to filter"),
    "F3": Opens(r"Race mock/code-\w+ against"),
    "F4": Opens("Conversations · Enter resumes"),
    "F6": Opens("From the runs stored"),
    "Ctrl+R": Opens("Search past prompts"),
    "Alt+G": Opens("Replay the last prompt how many times"),
    "Shift+F5": Opens("Replay the last prompt how many times"),
    "Alt+S": Opens("Replay suite on"),
    "Shift+F6": Opens("Replay suite on"),
    "Ctrl+S": Opens("Export this conversation"),
    "Ctrl+T": Opens("Search for themes"),
    "Ctrl+P": Opens("Search for commands"),
    # Copies: each press one more notification (all within the 5 s a notification stays).
    "Alt+C": Toast("Copied the last reply"),
    "F12": Toast("Copied the last reply"),
    "Alt+K": Toast("Copied the last code block"),
    "Shift+F12": Toast("Copied the last code block"),
    "Ctrl+O": Toast("No reasoning in this conversation"),
    "F5": sends_again("code"),
    "Ctrl+G": sends_again("code"),
    "Alt+R": Opens("Start a new branch from which prompt"),
    "Shift+F8": Opens("Start a new branch from which prompt"),
    "Alt+E": edits_and_sends("code"),
    "Shift+F7": edits_and_sends("code"),
}


def test_every_chat_key_through_tmux(mock_server: MockServerProcess, isolated_home: Path) -> None:
    s = start(mock_server, isolated_home, "code")
    try:
        s.text("hello")
        s.press("Enter")
        s.term.wait_for("✓ complete")
        assert s.last_prompt("code") == "hello"
        s.idle("code")
        for key, effect in CHAT_DIALOGS.items():
            check(s, key, effect)

        # Ctrl+R, then Ctrl+S in the search: the prompt is sent at once.
        n = len(s.requests("code"))
        s.press("Ctrl+R")
        s.term.wait_for("Search past prompts")
        s.press("Ctrl+S")
        s.wait_requests("code", n + 1)
        assert s.last_prompt("code") == "hello"
        s.idle("code")

        # Ctrl+J inserts a newline; so does Shift+Enter where the terminal reports it.
        s.text("one")
        s.press("Ctrl+J")
        s.text("two")
        s.press("Shift+Enter")
        s.text("three")
        s.term.wait_for("three")
        s.press("Enter")
        s.wait_requests("code", n + 2)
        assert s.last_prompt("code") == "one\ntwo\nthree"
        s.idle("code")

        # PageUp / PageDown scroll the conversation; Ctrl+End follows it again.
        def left() -> list[str]:
            return [line[:40].rstrip() for line in s.term.screen().splitlines()[1:-6]]

        def scrolls(key: str, to_bottom: bool) -> None:
            s.press(key)
            deadline = time.monotonic() + 5  # scrolling is animated
            while (left() == bottom) != to_bottom:
                assert time.monotonic() < deadline, f"{key} did not scroll"
                time.sleep(0.1)
            seen: list[str] = []
            while seen != (seen := left()):  # until the animation ends
                time.sleep(0.2)

        time.sleep(0.5)
        bottom = left()
        scrolls("PageUp", to_bottom=False)
        scrolls("PageDown", to_bottom=True)
        scrolls("PageUp", to_bottom=False)
        scrolls("Ctrl+End", to_bottom=True)

        # Esc cancels a streaming reply, and so does Ctrl+C; resizing meanwhile is harmless.
        s.text(f"/model mock/{s.models['slow']}")
        s.press("Enter")
        s.term.wait_for(f"Model: mock/{s.models['slow']}")
        s.text("a long one")
        s.press("Enter")
        s.term.wait_for("streaming")
        for width, height in ((60, 20), (220, 60), (80, 24), (100, 30)):
            s.term.resize(width, height)
            time.sleep(0.4)
        s.term.wait_for("streaming")
        s.press("Esc")
        s.wait_count("⊘ cancelled ·", 1)
        s.text("another")
        s.press("Enter")
        s.term.wait_for("streaming")
        s.press("Ctrl+C")
        s.wait_count("⊘ cancelled ·", 2)
        s.idle("slow")
        assert s.term.alive()

        # Ctrl+N: a new conversation.
        s.press("Ctrl+N")
        s.term.wait_for("new conversation")

        # F4: Ctrl+E renames, Delete twice deletes.
        s.press("F4")
        s.term.wait_for("Conversations · Enter resumes")
        s.term.wait_for(r"▊ hello ")  # the list is filled
        s.press("Ctrl+E")
        s.term.wait_for(r"▊  hello +▎", 5)  # the title, in the rename box
        s.text("-renamed")
        s.press("Enter")
        s.term.wait_for("Renamed to")
        s.press("Delete")
        s.term.wait_for("Press Delete again")
        s.press("Delete")
        s.term.wait_for("Deleted '")
        s.press("Esc")
        s.term.wait_gone("Conversations · Enter resumes")

        # ? is help too, when the prompt does not have focus (there it is a character).
        # Tab moves focus off the prompt; given time, as the closed dialog hands focus back
        # to the prompt a moment after it goes.
        time.sleep(1.0)
        s.term.type(b"\t", pause=1.0)
        check(s, "?", Opens(r"\[pick_model\]", close="?"))

        # Ctrl+C when nothing streams quits.
        s.press("Ctrl+C")
        assert s.term.exit_status() == 0
    finally:
        s.term.close()
    assert_typed(s, CHAT_KEYS)


COMPARE_DIALOGS: dict[str, Effect] = {
    "F2": Opens("Change the model of which pane"),
    "F6": Opens("From the runs stored"),
    "F8": Opens("Diff: pane A"),
    "Alt+H": Opens("timings and cost:"),
    "Shift+F9": Opens("timings and cost:"),
}


def test_every_compare_key_through_tmux(
    mock_server: MockServerProcess, isolated_home: Path
) -> None:
    s = start(mock_server, isolated_home, *"ABCD", width=160, height=40)
    try:

        def cut(pane: int) -> bool:
            """The pane's latest request was cut off by the app (the server saw it close)."""
            reqs = s.requests("ABCD"[pane])
            return bool(reqs) and bool(reqs[-1].get("client_disconnected"))

        def race(tag: str) -> None:
            counts = [len(s.requests(p)) for p in "ABCD"]
            s.text(tag)
            s.press("Enter")
            for p, n in zip("ABCD", counts, strict=True):
                s.wait_requests(p, n + 1)
            s.wait_count("streaming", 4)

        def wait_cancelled(pane: int, how: str) -> None:
            deadline = time.monotonic() + 10
            while not cut(pane):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{how} did not cancel pane {'ABCD'[pane]}")
                time.sleep(0.1)

        # Alt+1 … Alt+4, each form in its own race: only that pane stops.
        for form_index in range(2):
            race(f"race {form_index}")
            for pane in range(4):
                form = KEY_FORMS[f"Alt+{pane + 1}"][form_index]
                s.press(f"Alt+{pane + 1}", form)
                wait_cancelled(pane, f"Alt+{pane + 1} as {form!r}")
                assert not any(cut(p) for p in range(pane + 1, 4)), s.term.screen()
            s.wait_count("⊘ cancelled ·", 4)
        # F10 then a pane's letter cancels that pane; Esc cancels the rest.
        race("race 2")
        s.press("F10")
        s.term.wait_for("Cancel which pane's reply")
        s.text("c")
        wait_cancelled(2, "F10 c")
        assert not cut(0) and not cut(1) and not cut(3)
        for form in KEY_FORMS["F10"][1:]:
            s.press("F10", form)
            s.term.wait_for("Cancel which pane's reply")
            s.press("Esc")
            s.term.wait_gone("Cancel which pane's reply")
        s.press("Esc")
        for pane in (0, 1, 3):
            wait_cancelled(pane, "Esc")

        for key, effect in COMPARE_DIALOGS.items():
            check(s, key, effect)

        check(s, "F7", Toast("Panes scroll on their own|Synced scrolling on"))

        def verdict(s: Session, form: Form) -> None:
            before = s.count("Verdict: tie")
            s.press("F9", form)
            s.term.wait_for("tie: no pane was better")
            s.text("t")
            s.term.wait_gone("tie: no pane was better")
            s.wait_one_more("Verdict: tie", before)

        check(s, "F9", verdict)

        s.press("Ctrl+Q")
        assert s.term.exit_status() == 0
    finally:
        s.term.close()
    assert_typed(s, COMPARE_KEYS)


# --- every key of the README, in every form ----------------------------------------------------

COMPARE_KEYS = {
    "F2",
    "F6",
    "F7",
    "F8",
    "F9",
    "F10",
    "Ctrl+Q",
    "Alt+H",
    "Shift+F9",
    *(f"Alt+{n}" for n in range(1, 5)),
}
CHAT_KEYS = set(KEY_FORMS) - COMPARE_KEYS | {"F2", "F6"}


def assert_typed(s: Session, keys: set[str]) -> None:
    """Every form of every key in ``keys`` was typed in this session."""
    missing = [(k, f) for k in sorted(keys) for f in KEY_FORMS[k] if (k, f) not in s.typed]
    assert not missing, f"never typed: {missing}"


MODIFIER = r"(?:(?:Ctrl|Alt|Shift)\+)"
NAMED = r"(?:F1[0-2]|F[1-9]|PageUp|PageDown|Enter|Esc|Delete|End)"
KEY_TOKEN = re.compile(rf"(?<![\w+])(?:{MODIFIER}+[A-Z0-9]|{MODIFIER}*{NAMED})(?!\w)")


def readme_keys() -> set[str]:
    """Every key named in the README's "| Key | Action |" tables (those two columns)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    keys: set[str] = set()
    # The tables' browser column (`tokenrace serve`) is typed in Chromium by tests/test_serve.py.
    tables = re.findall(r"^\| Key \| Action \|[^\n]*\n\|[-|]+\|\n((?:\|.*\|\n)+)", text, re.M)
    assert len(tables) >= 2, "the README's key tables are gone"
    for table in tables:
        for line in table.splitlines():
            key_cell, action_cell = line.strip("|").split("|")[:2]
            row = f"{key_cell}|{action_cell}"
            keys.update(KEY_TOKEN.findall(row))
            if re.search(r"(?<!\S)\?(?!\S)", key_cell):
                keys.add("?")
            for first, last in re.findall(r"Alt\+(\d) … Alt\+(\d)", row):
                keys.update(f"Alt+{n}" for n in range(int(first), int(last) + 1))
    return keys


def test_the_suite_types_every_key_in_the_readme_tables() -> None:
    keys = readme_keys()
    assert {"F1", "?", "Alt+G", "Alt+3", "Ctrl+J", "PageUp", "F10"} <= keys  # the parse works
    assert keys <= set(KEY_FORMS), f"keys with no test: {sorted(keys - set(KEY_FORMS))}"
    assert set(KEY_FORMS) <= CHAT_KEYS | COMPARE_KEYS
    assert set(KEY_FORMS) <= keys, f"tested but not in README: {sorted(set(KEY_FORMS) - keys)}"


# --- pastes -------------------------------------------------------------------------------------


def test_pastes_as_terminals_send_them(mock_server: MockServerProcess, isolated_home: Path) -> None:
    s = start(mock_server, isolated_home, "code")
    sent = 0

    def send_and_check(expected: str) -> None:
        nonlocal sent
        s.press("Enter")
        sent += 1
        s.wait_requests("code", sent)
        assert s.last_prompt("code") == expected
        s.idle("code")

    try:
        # A small paste, typed by the terminal into tmux: inserted and sent once (item 1).
        s.term.type(bracketed(b"small paste text"))
        screen = s.term.wait_for("small paste text")
        assert "small paste textsmall" not in screen
        send_and_check("small paste text")

        # tmux's own paste (LF sent as CR): 30 lines fold into one placeholder (item 2) and
        # reach the model once, with LF.
        log = "\n".join(f"2026-11-30 09:{i:02d}:00 worker-{i} finished job {i}" for i in range(30))
        s.term.paste(log.encode())
        s.term.wait_for(r"\[paste #1: [\d.]+ KB, 30 lines\]")
        send_and_check(log)

        # A terminal's CRLF paste folds the same way.
        crlf = "\r\n".join(f"row {i}" for i in range(25))
        s.term.type(bracketed(crlf.encode()))
        s.term.wait_for(r"\[paste #2: [\d.]+ B, 25 lines\]")
        send_and_check(crlf.replace("\r\n", "\n"))

        # Backspace into a folded paste removes all of it (item 3): nothing is left to send.
        s.term.paste(log.encode())
        s.term.wait_for(r"\[paste #3: ")
        s.term.type(b"\x7f")
        s.term.wait_for("Message…")
        s.text("tail")
        # Left ×4: back before "tail". A paste within milliseconds of arrow keys can be
        # applied before them (seen under load), so the paste follows at a person's pace.
        s.term.type(b"\x1b[D" * 4, pause=1.0)
        s.term.type(bracketed(log.replace("\n", "\r").encode()))
        s.term.wait_for(r"\[paste #4: .*\]tail")
        s.term.type(b"\x1b[D\x1b[D\x7f")  # two into the placeholder, then Backspace
        s.term.wait_for(r"│ tail ")
        send_and_check("tail")

        # A NUL in a paste is dropped, the rest arrives once (item 5).
        s.term.type(bracketed(b"nul\x00byte"))
        s.term.wait_for("nulbyte")
        send_and_check("nulbyte")

        # Invalid UTF-8 in tmux's paste (tmux passes the byte on): the app stays up and shows
        # U+FFFD (item 5). Typed by the terminal, tmux drops the byte itself.
        s.term.paste(b"bad \xff byte")
        s.term.wait_for("bad \ufffd byte")
        assert s.term.alive()
        send_and_check("bad \ufffd byte")
        s.term.type(bracketed(b"typed \xff byte"))
        s.term.wait_for("typed  ?byte")
        send_and_check("typed  byte")
    finally:
        s.term.close()


def test_what_is_typed_while_the_app_starts_reaches_the_prompt(
    mock_server: MockServerProcess, isolated_home: Path
) -> None:
    """Keys and a paste sent the moment the command starts, before the app has drawn
    anything, wait for the prompt and arrive in order: the first screen is mounted after
    the app (``TokenraceApp.get_default_screen``), and without the hold they were lost."""
    model = f"code-{uuid.uuid4().hex[:6]}"
    mock_server.add_scenario(model, {"text": CODE_REPLY, "ttft_ms": 20, "tps": 200})
    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\nmodels = ["{model}"]\n'
    )
    term = RealTerminal.app(isolated_home, "-m", f"mock/{model}")
    try:
        assert "Message…" not in term.screen()  # typed before the first frame
        term.send_keys("typed ahead,", literal=True)
        term.type(bracketed(b" and pasted"))
        term.wait_for(r"│ typed ahead, and pasted", START_S)
        term.type(b"\r")
        deadline = time.monotonic() + 15
        while not [r for r in mock_server.log() if r.get("model") == model]:
            assert time.monotonic() < deadline, "the typed-ahead prompt was never sent"
            time.sleep(0.1)
        sent = [r for r in mock_server.log() if r.get("model") == model][-1]
        assert sent["body"]["messages"][-1]["content"] == "typed ahead, and pasted"
    finally:
        term.close()


# --- signals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["window closed (SIGHUP)", "SIGTERM", "SIGKILL"])
def test_a_signal_mid_reply_ends_the_app_its_engine_and_the_stream(
    how: str, mock_server: MockServerProcess, isolated_home: Path
) -> None:
    s = start(mock_server, isolated_home, "slow")
    try:
        s.text("stream for a while")
        s.press("Enter")
        s.wait_requests("slow", 1)
        s.term.wait_for("streaming")
        app = psutil.Process(s.term.pane_pid())
        procs = [app, *app.children(recursive=True)]
        assert any("providers.worker" in " ".join(p.cmdline()) for p in procs), procs
        if how.startswith("window"):
            s.term.close_window()
        else:
            s.term.signal(getattr(signal, how))
        _, alive = psutil.wait_procs(procs, timeout=15)
        # A zombie has ended: its parent died first and the container's init may not reap it.
        running = [p for p in alive if _status(p) not in (psutil.STATUS_ZOMBIE, "gone")]
        assert not running, f"still running after {how}: {running}"
        deadline = time.monotonic() + 10
        while not s.requests("slow")[-1].get("closed_ns"):
            assert time.monotonic() < deadline, "the stream was left open"
            time.sleep(0.1)
    finally:
        s.term.close()


def _status(proc: psutil.Process) -> str:
    try:
        status: str = proc.status()
    except psutil.NoSuchProcess:
        return "gone"
    return status


# --- what tmux passes on ------------------------------------------------------------------------

BYTE_DUMP = """
import os, sys, tty
tty.setraw(0)
os.write(1, b"\\x1b[?2004hready\\r\\n")  # bracketed paste on, as the app asks
with open(sys.argv[1], "ab", buffering=0) as out:
    while data := os.read(0, 4096):
        out.write(data)
"""

# Bytes a terminal sends → bytes tmux 3.3 (default configuration, TERM=screen pane) passes on.
TMUX_PASSES: list[tuple[str, bytes | tuple[bytes, ...], bytes]] = [
    ("Alt+G, ESC-prefixed", b"\x1bg", b"\x1bg"),
    ("Alt+G, CSI-u (kitty)", b"\x1b[103;3u", b"\x1bg"),
    ("Alt+2, CSI-u (kitty)", b"\x1b[50;3u", b"\x1b2"),
    ("F1, xterm", b"\x1bOP", b"\x1bOP"),
    ("F1, VT220/rxvt", b"\x1b[11~", b"\x1b[11~"),
    ("Shift+F5, xterm", b"\x1b[15;2~", b"\x1b[15;2~"),
    ("Ctrl+End, xterm", b"\x1b[1;5F", b"\x1b[1;5F"),
    ("Shift+Enter, CSI-u (kitty)", b"\x1b[13;2u", b""),
    ("Ctrl+B twice (prefix, send-prefix)", (b"\x02", b"\x02"), b"\x02"),
    ("Esc (after escape-time)", b"\x1b", b"\x1b"),
    ("paste with NUL and 0xFF", bracketed(b"a\x00b\xffc"), bracketed(b"a\x00bc")),
    ("paste with CRLF", bracketed(b"a\r\nb"), bracketed(b"a\r\nb")),
]


def test_what_tmux_passes_on_to_the_app(tmp_path: Path) -> None:
    """The table behind the suite's key forms: what tmux with its defaults does to each."""
    import sys

    out = tmp_path / "bytes"
    out.touch()
    with RealTerminal([sys.executable, "-c", BYTE_DUMP, str(out)], {}, 80, 24) as term:
        term.wait_for("ready")
        got: dict[str, bytes] = {}
        for what, typed, _ in TMUX_PASSES:
            start_at = len(out.read_bytes())
            for key in (typed,) if isinstance(typed, bytes) else typed:
                term.type(key, pause=0.7)  # past escape-time, so the next key is not Alt+key
            term.type(b".")
            deadline = time.monotonic() + 5
            while not (len(out.read_bytes()) > start_at and out.read_bytes().endswith(b".")):
                assert time.monotonic() < deadline, what
                time.sleep(0.05)
            got[what] = out.read_bytes()[start_at:-1]
    assert got == {what: passed for what, _, passed in TMUX_PASSES}


def test_the_app_takes_the_terminals_size_not_columns_and_lines(
    mock_server: MockServerProcess, isolated_home: Path
) -> None:
    """COLUMNS and LINES exported in the app's environment (a shell's, a test runner's) do not
    fix its size: it fills the terminal, and follows it when the terminal is resized."""

    def prompt_width(term: RealTerminal) -> int:
        tops = [
            line.rstrip() for line in term.screen().splitlines() if line.lstrip().startswith("╭")
        ]
        return max((len(line) for line in tops), default=0)

    (isolated_home / "config.toml").write_text(
        f'[endpoints.mock]\nbase_url = "{mock_server.base_url}"\nmodels = ["mock-fast"]\n'
    )
    term = RealTerminal.app(
        isolated_home, "-m", "mock/mock-fast", width=100, height=30, COLUMNS="60", LINES="15"
    )
    try:
        term.wait_for("Message…", START_S)
        assert prompt_width(term) == 100, term.screen()
        term.resize(130, 36)
        deadline = time.monotonic() + 10
        while prompt_width(term) != 130 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert prompt_width(term) == 130, term.screen()
    finally:
        term.close()

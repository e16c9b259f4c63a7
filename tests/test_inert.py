"""Issue 15.1 and 14.6: text from servers never acts on the terminal and is never markup.

Every test here talks to ``tests/support/hostile_server.py`` over a real socket: escape
sequences in the reply, the reasoning, error bodies and model ids. The TUI checks read the
segments the compositor hands to the driver; the headless checks read the bytes written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.segment import Segment
from textual.strip import Strip

from providers.config import parse_config
from providers.inert import inert, inert_label, is_inert, json_inert
from tests.support.cli import REPO
from tests.support.hostile_server import (
    HOSTILE,
    HOSTILE_MODEL_IDS,
    PAYLOADS,
    SURROGATE_JSON,
    Answer,
    HostileServer,
    absurd_usage_stream,
    chunk,
    endless_stream,
    error_answer,
    sse,
)
from tests.support.tui import make_app, wait_until

# What may never reach a terminal from a server: C0 but tab/newline, ESC, DEL, C1, CR.
FORBIDDEN = {*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0)}


def bad_chars(text: str) -> list[str]:
    return [c for c in text if ord(c) in FORBIDDEN or 0xD800 <= ord(c) < 0xE000]


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


# --- the sanitiser itself ---------------------------------------------------------------


def test_every_payload_is_made_inert() -> None:
    for name, payload in PAYLOADS.items():
        shown = inert(payload)
        assert not bad_chars(shown), name
    assert inert("line\n\tindented\r\n") == "line\n\tindented\n"  # CR is a line ending
    assert inert("\x1b]52;c;Zm9v\x07") == "␛]52;c;Zm9v␇"  # visible, not removed
    assert inert("\x9b2J") == "\ufffd2J"


def test_labels_show_invisible_characters() -> None:
    assert inert_label("gpt\u202e4o") == "gpt<U+202E>4o"
    assert inert_label("gpt\u200b-4o") == "gpt<U+200B>-4o"
    assert inert_label("a\nb\tc") == "a␊b␉c"
    assert inert_label("gpt-4o-mini") == "gpt-4o-mini"  # ordinary names are untouched


def test_json_keeps_the_value_and_escapes_c1_del_surrogates() -> None:
    value = {"text": "a\x85b\x7fc\x9bd\ud800e\x1bf"}
    doc = json_inert(json.dumps(value, ensure_ascii=False))
    assert json.loads(doc) == value
    assert not bad_chars(doc)
    doc.encode("utf-8")  # a lone surrogate would make this raise


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec=None, exclude_categories=())))
def test_property_inert_leaves_nothing_a_terminal_obeys(text: str) -> None:
    """Any string: no control but newline and tab; labels also none of those."""
    assert not bad_chars(inert(text))
    assert is_inert(inert(text))
    label = inert_label(text)
    assert not bad_chars(label) and "\n" not in label and "\t" not in label
    assert json.loads(json_inert(json.dumps(text, ensure_ascii=False))) == text


# --- headless: ask, models, export --------------------------------------------------------


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        input=b"",
        capture_output=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        timeout=60,
        check=False,
    )


def _config(home: Path, srv: HostileServer, **extra: str) -> None:
    lines = [f'[endpoints.hostile]\nbase_url = "{srv.base_url}"']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    (home / "config.toml").write_text("\n".join(lines) + "\n")


def _assert_terminal_safe(raw: bytes, what: str) -> None:
    text = raw.decode("utf-8")  # must be valid UTF-8 too (no raw surrogates)
    assert not bad_chars(text), (what, bad_chars(text)[:5], text[:400])


def test_ask_text_and_errors_are_inert(isolated_home: Path, hostile: HostileServer) -> None:
    _config(isolated_home, hostile)
    r = _run("ask", "-m", "hostile/m", "hi")
    assert r.returncode == 0, r.stderr
    _assert_terminal_safe(r.stdout, "stdout")
    _assert_terminal_safe(r.stderr, "stderr")
    assert "␛]52;c;" in r.stdout.decode()  # shown, not dropped
    hostile.handler = lambda req: error_answer(400, f"bad request {HOSTILE}")
    r = _run("ask", "-m", "hostile/m", "hi")
    assert r.returncode == 1
    assert b"bad request" in r.stderr
    _assert_terminal_safe(r.stderr, "stderr of an error")


def test_ask_json_escapes_c1_del_and_surrogates(
    isolated_home: Path, hostile: HostileServer
) -> None:
    _config(isolated_home, hostile)
    text = "c1\x85\x9b del\x7f esc\x1b"
    hostile.handler = lambda req: Answer(
        headers={"Content-Type": "text/event-stream"},
        chunks=sse(
            chunk(content=text),
            '{"choices":[{"index":0,"delta":{"content":' + SURROGATE_JSON + "}}]}",
            chunk(finish="stop"),
        ),
    )
    r = _run("ask", "-m", "hostile/m", "--json", "hi")
    assert r.returncode == 0, r.stderr
    _assert_terminal_safe(r.stdout, "ask --json")
    (doc,) = json.loads(r.stdout)
    # C1 and DEL are the exact values, escaped on the wire; a lone surrogate is not text at all
    # and arrives as U+FFFD (issue 15 item 2: stored and sent well-formed).
    assert doc["text"] == text + "half \ufffd a pair"
    assert "\\u0085" in r.stdout.decode() and "\\u009b" in r.stdout.decode()
    r = _run("ask", "-m", "hostile/m", "hi")  # text mode: the surrogate must not crash it
    assert r.returncode == 0, r.stderr
    _assert_terminal_safe(r.stdout, "ask with a surrogate")


def test_models_lists_hostile_ids_inertly(isolated_home: Path, hostile: HostileServer) -> None:
    _config(isolated_home, hostile)
    r = _run("models", "hostile")
    assert r.returncode == 0, r.stderr
    _assert_terminal_safe(r.stdout, "models")
    out = r.stdout.decode()
    assert "gpt<U+202E>4o" in out and "gpt-4o[/preview]" in out
    r = _run("models", "hostile", "--json")
    _assert_terminal_safe(r.stdout, "models --json")


def test_markdown_export_is_inert_and_says_so(isolated_home: Path) -> None:
    from tui.session.export import export_json, export_markdown
    from tui.session.store import Store

    store = Store(isolated_home / "h.db")
    conv = 7
    store.create_conversation(conv, title="t\x1b]0;x\x07")
    store.save_message(1, conv, "user", "hi")
    store.save_message(2, conv, "assistant", HOSTILE, model="e/m\x9b", reasoning=HOSTILE)
    store.flush()
    md = export_markdown(store, conv)
    assert not bad_chars(md)
    assert "shown as symbols" in md
    doc = export_json(store, conv)
    assert not bad_chars(doc)
    assert json.loads(doc)["messages"][1]["content"] == HOSTILE  # the file keeps the value


# --- the TUI: what the compositor hands to the driver ---------------------------------------


def _segments(obj: Any) -> Iterator[Segment]:
    if isinstance(obj, Segment):
        yield obj
    elif isinstance(obj, Strip):
        yield from obj
    else:
        for item in obj:
            yield from _segments(item)


def driver_text(app: Any) -> list[str]:
    """The text of every segment of a full repaint of the current screen."""
    update = app.screen._compositor.render_update(full=True)
    out = []
    for seg in _segments(update.strips):
        assert seg.control is None  # a control segment would be written as a sequence
        out.append(seg.text)
    return out


def assert_screen_inert(app: Any, what: str) -> None:
    bad = [t for t in driver_text(app) if bad_chars(t)]
    assert not bad, (what, bad[:5])


async def test_tui_reply_reasoning_error_and_ids_are_inert(
    isolated_home: Path, hostile: HostileServer
) -> None:
    from tui.widgets.assistant_message import AssistantMessage
    from tui.widgets.error_panel import ErrorPanel
    from tui.widgets.prompt_box import PromptBox

    model = "hostile/" + HOSTILE_MODEL_IDS[1]  # OSC 52 in the model id itself
    config = parse_config(
        {"endpoints": {"hostile": {"base_url": hostile.base_url, "models": HOSTILE_MODEL_IDS}}}
    )
    app = make_app(config, isolated_home, models=[model])
    async with app.run_test(size=(120, 40)) as pilot:
        app.screen.query_one(PromptBox).set_prompt("hello")
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: (
                app.screen.query(AssistantMessage)
                and app.screen.query_one(AssistantMessage).status == "complete"
            ),
            what="the hostile reply",
        )
        await pilot.pause(0.2)
        msg = app.screen.query_one(AssistantMessage)
        assert "␛]52;c;" in msg.body.source  # shown as text, not obeyed
        texts = "".join(driver_text(app))
        assert "␛]52" in texts
        assert_screen_inert(app, "reply")
        hostile.handler = lambda req: error_answer(400, HOSTILE)
        app.screen.query_one(PromptBox).set_prompt("again")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.screen.query(ErrorPanel), what="the error panel")
        await pilot.pause(0.2)
        assert_screen_inert(app, "error panel")
        await pilot.press("f2")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "ModelPicker", what="F2")
        await pilot.pause(0.1)
        assert_screen_inert(app, "picker")
        await pilot.press("g", "p", "t", "[", "/")  # the fuzzy highlight of gpt-4o[/preview]
        await pilot.pause(0.2)
        assert_screen_inert(app, "picker, filtered")
        shown = "".join(driver_text(app))
        assert "gpt-4o[/preview]" in shown
        await pilot.press("escape")
        await pilot.pause(0.1)


async def test_markup_in_model_ids_and_commands_never_parsed(
    isolated_home: Path, hostile: HostileServer
) -> None:
    """Issue 14.6: ``gpt-4o[/preview]`` in F2 while typing, and ``/model [/bogus]``."""
    from textual.widgets import OptionList

    from tui.widgets.prompt_box import PromptBox

    config = parse_config(
        {"endpoints": {"hostile": {"base_url": hostile.base_url, "models": ["gpt-4o[/preview]"]}}}
    )
    app = make_app(config, isolated_home, models=["hostile/gpt-4o[/preview]"])
    async with app.run_test(size=(120, 30)) as pilot:
        app.screen.query_one(PromptBox).set_prompt("/model [/bogus]")
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.is_running
        toasts = [str(n.message) for n in app._notifications]
        assert any("[/bogus]" in t for t in toasts), toasts
        await pilot.press("f2")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "ModelPicker", what="F2")
        for key in ("g", "p", "t", "left_square_bracket", "slash"):
            await pilot.press(key)
            await pilot.pause(0.05)
        assert app.is_running
        options = app.screen.query_one(OptionList)
        assert options.option_count >= 1
        assert "gpt-4o[/preview]" in "".join(driver_text(app))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(list(PAYLOADS.values())),
            st.text(st.characters(codec=None, exclude_categories=()), max_size=20),
        ),
        min_size=1,
        max_size=6,
    ).map("".join)
)
def test_property_tui_segments_hold_no_control(isolated_home: Path, text: str) -> None:
    """Any string a server can send, through the widgets that show server text, reaches the
    driver with no control character in any segment."""
    import asyncio

    from textual.app import App, ComposeResult

    from tui.widgets.assistant_message import AssistantMessage
    from tui.widgets.error_panel import ErrorPanel
    from tui.widgets.status_bar import StatusBar

    class Probe(App[None]):
        def compose(self) -> ComposeResult:
            yield AssistantMessage(text, text=text, reasoning=text, finished=True)
            yield ErrorPanel(text, "server", text)
            yield StatusBar()

        def on_mount(self) -> None:
            self.query_one(StatusBar).show_idle(text, "")
            self.query_one(AssistantMessage).add_notice(text)
            self.notify(text)

    async def go() -> None:
        app = Probe()
        async with app.run_test(size=(100, 50)) as pilot:
            await pilot.pause(0.05)
            assert_screen_inert(app, repr(text))

    asyncio.run(go())


def test_property_headless_output_holds_no_control(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Headless ``ask``'s printer: no control in stdout or stderr but tokenrace's own dim."""
    from providers.config import parse_config as parse
    from providers.events import Finished, ReasoningDelta, StreamError, TextDelta
    from tui.headless.ask import Printer, Run

    @settings(max_examples=200, deadline=None)
    @given(st.text(st.characters(codec=None, exclude_categories=())))
    def check(text: str) -> None:
        run = Run("e/" + text)
        printer = Printer([run], False, parse({}), 0)
        printer.show_reasoning = True
        for ev in (
            ReasoningDelta(t_ns=1, text=text),
            TextDelta(t_ns=2, text=text),
            StreamError(t_ns=3, kind="server", message=text),
            Finished(t_ns=4, reason="stop"),
        ):
            run.events.append(ev)
            printer.on_event(run, ev)
        run.done = True
        printer.on_done(run)
        out, err = capsys.readouterr()
        err = err.replace("\x1b[2m", "").replace("\x1b[0m", "")  # our own styling only
        assert not bad_chars(out), out
        assert not bad_chars(err), err
        out.encode("utf-8")
        err.encode("utf-8")

    check()


async def test_two_pane_race_with_hostile_replies_is_inert(
    isolated_home: Path, hostile: HostileServer
) -> None:
    """Compare mode: both panes, their headers and the strip; and the metrics log file."""
    from tui.widgets.assistant_message import AssistantMessage
    from tui.widgets.prompt_box import PromptBox

    models = ["hostile/" + HOSTILE_MODEL_IDS[2], "hostile/" + HOSTILE_MODEL_IDS[4]]
    config = parse_config({"endpoints": {"hostile": {"base_url": hostile.base_url}}})
    app = make_app(config, isolated_home, models=models)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_until(pilot, lambda: app.screen.query(PromptBox), what="compare screen")
        app.screen.query_one(PromptBox).set_prompt("race")
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: (
                len(app.screen.query(AssistantMessage)) == 2
                and all(m.status == "complete" for m in app.screen.query(AssistantMessage))
            ),
            what="both hostile replies",
            timeout=20,
        )
        await pilot.pause(0.3)
        assert type(app.screen).__name__ == "CompareScreen"
        assert "gpt<U+202E>4o" in "".join(driver_text(app))
        assert_screen_inert(app, "compare screen")
    runs = (isolated_home / "data" / "runs.jsonl").read_text(encoding="utf-8")
    assert not bad_chars(runs)  # a file people `tail -f`
    assert {json.loads(line)["model"] for line in runs.splitlines()} == set(models)  # exact


def test_keys_set_shows_a_hostile_rejection_inertly(
    isolated_home: Path, hostile: HostileServer
) -> None:
    _config(isolated_home, hostile, api_key_env='"HOSTILE_KEY"')
    hostile.handler = lambda req: error_answer(401, "no " + HOSTILE)
    r = subprocess.run(
        [sys.executable, "-m", "tui.cli", "keys", "set", "hostile"],
        input=b"sk-some-key-1234567890\n",
        capture_output=True,
        env=dict(os.environ),
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert b"rejected this key" in r.stderr, r.stderr
    _assert_terminal_safe(r.stderr, "keys set")


def test_ask_with_absurd_usage_prints_sane_figures(
    isolated_home: Path, hostile: HostileServer
) -> None:
    _config(isolated_home, hostile)
    hostile.handler = lambda req: absurd_usage_stream()
    r = _run("ask", "-m", "hostile/m", "hi")
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "impossible usage figures" in err and len(err) < 1000, err
    r = _run("ask", "-m", "hostile/m", "--json", "hi")
    (doc,) = json.loads(r.stdout)
    assert doc["metrics"]["cost_usd"] is None or doc["metrics"]["cost_usd"] < 1e6
    assert (doc["metrics"]["output_tokens"] or 0) < 1e9


async def test_endless_hostile_stream_cancelled_in_the_app(
    isolated_home: Path, hostile: HostileServer
) -> None:
    """A stream that never ends, each event hostile: Esc cancels, what came stays, inert."""
    from tui.widgets.assistant_message import AssistantMessage
    from tui.widgets.prompt_box import PromptBox

    hostile.handler = lambda req: endless_stream(PAYLOADS["osc52_clipboard"] + " more ")
    config = parse_config({"endpoints": {"hostile": {"base_url": hostile.base_url}}})
    app = make_app(config, isolated_home, models=["hostile/m"])
    async with app.run_test(size=(100, 30)) as pilot:
        app.screen.query_one(PromptBox).set_prompt("go")
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: (
                app.screen.query(AssistantMessage)
                and app.screen.query_one(AssistantMessage).body.source.count("␛") > 20
            ),
            what="a stream of hostile events",
        )
        await pilot.press("escape")
        await wait_until(
            pilot,
            lambda: app.screen.query_one(AssistantMessage).status == "cancelled",
            what="cancelled",
        )
        await pilot.pause(0.2)
        assert_screen_inert(app, "endless stream, cancelled")


def test_replay_csv_cells_are_inert_and_never_formulas() -> None:
    from providers.metrics import compute_metrics
    from tui.session.replay import RunResult, to_csv

    hostile = '\x1b]52;c;aGk=\x07=HYPERLINK("http://x")'
    r = RunResult(
        prompt_index=0,
        prompt="@SUM(1+1)",
        model="m/\x1b[2Jx",
        run=1,
        status="complete",
        text=hostile,
        json_valid=None,
        metrics=compute_metrics([], t_submit_ns=0),
    )
    out = to_csv([r])
    assert is_inert(out.replace("\r\n", "\n"))
    import csv
    import io

    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["prompt"] == "'@SUM(1+1)"
    assert row["text"].startswith("␛]52") and "=HYPERLINK" in row["text"]
    assert row["model"].startswith("m/␛[2J")


@pytest.mark.parametrize("table", ["_TEXT", "_LABEL", "_JSON"])
def test_each_finder_finds_exactly_the_characters_its_table_replaces(table: str) -> None:
    # The finders are character classes written as ranges; a range one off either end would
    # let a control through, or stop on a harmless character.
    import providers.inert as inert_mod

    codes: dict[int, Any] = getattr(inert_mod, table)
    finder = getattr(inert_mod, f"{table}_FIND")
    for c in [*range(0x10000), *range(0x10000, 0x110000, 97)]:
        assert (finder.match(chr(c)) is not None) == (c in codes), hex(c)

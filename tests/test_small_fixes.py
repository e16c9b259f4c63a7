"""The smaller faults of #14 item 11, one test each."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.support.mock_server import MockServerProcess
from tests.support.raw_server import RawServer, Script
from tests.test_engine_failures import JSON_CT, error_of, run


async def test_a_429_whose_code_is_the_status_says_it_once(raw_server: RawServer) -> None:
    body = json.dumps({"error": {"message": "Rate limit reached", "code": 429}}).encode()
    raw_server.push(
        Script(status=429, headers={**JSON_CT, "Retry-After": "3600"}, chunked=False, chunks=[body])
    )
    err = error_of(await run(raw_server.base_url))
    assert "HTTP 429: Rate limit reached" in err.message, err.message
    assert "429 429" not in err.message


def test_the_auth_hint_names_the_endpoint() -> None:
    from tui.widgets.error_panel import ErrorPanel, hint_for

    hint = hint_for("auth", "deepseek/deepseek-chat")
    assert "tokenrace keys set deepseek" in hint and "ENDPOINT" not in hint
    panel = ErrorPanel("deepseek/deepseek-chat", "auth", "deepseek rejected the API key")
    assert "ENDPOINT" not in str(panel.visual)


def test_endpoints_add_leaves_a_blank_line_before_the_next_table(isolated_home: Path) -> None:
    from tests.support.cli import run_cli

    path = isolated_home / "config.toml"
    path.write_text('[endpoints.a]\nbase_url = "http://x/v1"\n[metrics]\nlog = true\n')
    r = run_cli("endpoints", "add", "b", "--base-url", "http://y/v1")
    assert r.returncode == 0, r.stderr
    text = path.read_text()
    assert 'base_url = "http://y/v1"\n\n[metrics]' in text, text
    assert text.endswith("log = true\n")


def test_endpoints_add_refuses_a_name_with_a_space(isolated_home: Path) -> None:
    from tests.support.cli import run_cli

    path = isolated_home / "config.toml"
    path.write_text("# mine\n")
    r = run_cli("endpoints", "add", "my lab", "--base-url", "http://y/v1")
    assert r.returncode == 2 and "invalid endpoint name 'my lab'" in r.stderr, r.stderr
    assert path.read_text() == "# mine\n"


def test_endpoints_add_reports_a_bad_url_as_the_option_not_a_line(isolated_home: Path) -> None:
    from tests.support.cli import run_cli

    path = isolated_home / "config.toml"
    path.write_text("# mine\n")
    r = run_cli("endpoints", "add", "c", "--base-url", "notaurl")
    assert r.returncode == 2
    assert "--base-url: expected an http(s) URL, got 'notaurl'" in r.stderr, r.stderr
    assert "config.toml:" not in r.stderr and "nothing was written" in r.stderr
    assert path.read_text() == "# mine\n"


def test_endpoints_list_is_the_bare_listing(isolated_home: Path) -> None:
    from tests.support.cli import run_cli

    bare, listed = run_cli("endpoints"), run_cli("endpoints", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == bare.stdout and "openai" in listed.stdout


def test_no_keyring_backend_names_the_variable_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring.core

    from providers.config import parse_config
    from providers.keys import KeyLookupError, Keyring, KeyringIndex, KeyStore

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    keyring.core._keyring_backend = None
    ep = parse_config({}).endpoints["deepseek"]
    store = KeyStore(Keyring(index=KeyringIndex()), environ={})
    with pytest.raises(KeyLookupError) as info:
        store.resolve(ep)
    message = str(info.value)
    assert "no OS keyring backend" in message and "set DEEPSEEK_API_KEY" in message, message


def test_a_request_that_never_left_costs_nothing_and_took_no_time() -> None:
    from providers.events import StreamError
    from providers.prices import Price
    from tui import format as fmt
    from tui.session.conversation import LiveRun

    run = LiveRun("openai/gpt-4o", 0, Price(input=2.5, output=10), prompt_estimate=4)
    run.feed([StreamError(t_ns=5, kind="auth", message="no API key for endpoint 'openai'")])
    m = run.final()
    assert (m.cost_usd, m.output_tokens, m.output_tokens_estimated) == (0.0, 0, False)
    line = fmt.metrics_text(m)
    assert "≈" not in line and "$0" in line and "0.0 ms" not in line, line
    f = run.live(10)
    assert f.elapsed_ms is None and f.cost_usd == 0 and not f.cost_estimated
    from tui.session.metrics_log import run_record

    assert run_record(run.model, "openai", m)["cost_usd"] == 0


@pytest.mark.parametrize("ending", ["hold", "abort", "clean"], ids=["silent", "dropped", "no-done"])
async def test_silent_dropped_and_unfinished_streams_all_end_interrupted(
    raw_server: RawServer, ending: str
) -> None:
    from providers.events import fold
    from providers.metrics import compute_metrics
    from tests.test_engine_failures import SSE, chunk

    raw_server.push(Script(headers=SSE, chunks=[chunk("so far")], ending=ending))  # type: ignore[arg-type]
    events = await run(raw_server.base_url, timeouts={"idle": 0.3})
    assert fold(events).text == "so far"
    assert compute_metrics(events).status == "interrupted", error_of(events)


def test_the_live_line_says_when_a_reply_is_waiting_and_against_which_timeout() -> None:
    from providers.config import Timeouts
    from providers.events import RequestSent, TextDelta
    from tui.session.conversation import LiveRun

    s = 1_000_000_000
    run = LiveRun("mock/m", 0, None, 4)
    run.feed([RequestSent(t_ns=0)])
    assert run.live_label(1 * s) == "● streaming · 1.00 s"
    assert run.live_label(12 * s, Timeouts(first_token=300)) == (
        "● waiting for the first token · 12 s of the 300 s first-token timeout"
    )
    run.feed([TextDelta(t_ns=2 * s, text="a"), TextDelta(t_ns=12 * s, text="b")])
    assert run.live_label(int(12.5 * s)) == "● streaming · 12.5 s"
    assert run.live_label(53 * s, Timeouts(idle=60)) == (
        "● streaming · 53.0 s · waiting: no token for 41 s of the 60 s idle timeout"
    )


async def test_a_stalled_reply_says_it_is_waiting_on_screen(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from tests.support.tui import make_app, mock_config, screen_of, wait_until
    from tui.screens.chat import ChatScreen
    from tui.widgets.assistant_message import AssistantMessage
    from tui.widgets.prompt_box import PromptBox

    name = f"stall-{uuid.uuid4().hex[:6]}"
    mock_server.add_scenario(name, {"n_tokens": 20, "tps": 100, "silent_after_tokens": 5})
    app = make_app(mock_config(mock_server), isolated_home, models=[f"mock/{name}"])
    async with app.run_test(size=(120, 30)) as pilot:
        prompt = app.screen.query_one(PromptBox)
        prompt.set_prompt("hi")
        await pilot.press("enter")

        def says_waiting() -> bool:
            return any(
                "waiting: no token for" in str(w.metrics_line.render())
                for w in app.screen.query(AssistantMessage)
            )

        await wait_until(pilot, says_waiting, timeout=15, what="the waiting line")
        screen_of(app, ChatScreen).cancel()


async def test_f6_takes_typed_digits_and_keeps_the_workload(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from textual.widgets import Input

    from tests.support.tui import make_app, mock_config, wait_until
    from tui.screens.summary import SummaryScreen

    app = make_app(mock_config(mock_server), isolated_home, models=["mock/mock-fast"])
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("f6")
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen), what="F6")
        await pilot.pause()
        assert app.screen.focused is app.screen.query_one("#in-per-month", Input)
        await pilot.press("2", "M")
        assert app.screen.query_one("#in-per-month", Input).value == "2M"
        assert "A month of 2,000,000 input" in str(app.screen.query_one("#projection").render())
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, SummaryScreen), what="closed")
        await pilot.press("f6")
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen), what="again")
        await pilot.pause()
        assert app.screen.query_one("#in-per-month", Input).value == "2M"


async def test_narrow_status_bars_show_whole_figures_before_the_sparkline(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    import re

    from tests.support.tui import make_app, mock_config, replies_over, scenario, send, wait_until
    from tests.test_compare_screen import screen

    models = [scenario(mock_server, n_tokens=60, ttft_ms=5, tps=150) for _ in range(4)]
    app = make_app(mock_config(mock_server), isolated_home, models=models)
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, "race")
        await wait_until(pilot, lambda: replies_over(app), timeout=30, what="race")
        await pilot.pause(0.2)
        for pane in screen(app).panes:
            bar = pane.status
            line = str(bar.figures.render())
            text = bar.figures_text
            assert re.search(r"TTFT [\d.]+ (ms|s)\b", text), text
            assert re.search(r"[\d.,]+ tok/s", text), text
            # Whole values only, then the sparkline in the rest of the one line, at its end.
            assert line.startswith(text), (line, text)
            assert len(text) <= bar.figures.size.width == bar.size.width, (text, bar.size)
            if bar.spark.width:  # (hidden when fewer than MIN_SPARK columns are left)
                assert len(text) + 1 + bar.spark.width <= bar.size.width, (text, bar.size)
                assert len(line) == bar.size.width, (line, bar.size)
                assert line.endswith(bar.spark.render()), (line, bar.spark.render())
            else:
                assert line == text, line


async def test_live_figures_and_their_sparkline_never_lay_the_screen_out(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    """The figures change at every frame, and their width with them (a count grows a digit,
    a figure is dropped to fit): a status line one row high is redrawn, never laid out. A
    layout is a reflow and repaint of every pane (30-80 ms with four: issue 21)."""
    from textual.widget import Widget

    from tests.support.tui import make_app, mock_config, replies_over, scenario, send, wait_until
    from tests.test_compare_screen import screen
    from tui.widgets.status_bar import StatusBar

    models = [scenario(mock_server, n_tokens=400, ttft_ms=5, tps=400) for _ in range(2)]
    app = make_app(mock_config(mock_server), isolated_home, models=models)
    layouts: list[str] = []
    refresh = Widget.refresh

    def spy(self: Widget, *regions: object, layout: bool = False, **kw: object) -> Widget:
        if layout and any(isinstance(n, StatusBar) for n in (self, *self.ancestors)):
            layouts.append(type(self).__name__)
        return refresh(self, *regions, layout=layout, **kw)  # type: ignore[arg-type]

    async with app.run_test(size=(120, 30)) as pilot:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Widget, "refresh", spy)
            await send(pilot, "race")
            panes = screen(app).panes
            await wait_until(pilot, lambda: all(p.status.spark.data for p in panes), what="rates")
            bars = [str(p.status.figures.render()) for p in panes]
            await wait_until(pilot, lambda: replies_over(app), timeout=30, what="race")
        assert layouts == [], layouts
        for pane, line in zip(panes, bars, strict=True):
            bar = pane.status
            assert "tok/s" in line, line
            spark = line[len(line.rstrip("▁▂▃▄▅▆▇█")) :]  # the bars at the line's end
            assert spark and len(line) == bar.size.width, (line, bar.size)


async def test_a_live_line_lays_out_only_when_its_rows_change() -> None:
    """A live line (a reply's figures as it streams) asks for a layout of the screen only
    when the rows its text takes change, counted from the rows it was laid out with: its
    first text, one row where its empty line took one, asks for none (each pane's did, at
    a race's first figures)."""
    from textual.app import App, ComposeResult
    from textual.widget import Widget

    from tui.widgets.live_line import LiveLine

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield LiveLine("", id="line")

    asked: list[bool] = []
    refresh = Widget.refresh

    def spy(self: Widget, *regions: object, layout: bool = False, **kw: object) -> Widget:
        if isinstance(self, LiveLine):
            asked.append(layout)
        return refresh(self, *regions, layout=layout, **kw)  # type: ignore[arg-type]

    app = One()
    async with app.run_test(size=(40, 8)) as pilot:
        line = app.query_one("#line", LiveLine)
        await pilot.pause()
        assert line.size.height == 1
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Widget, "refresh", spy)
            line.show("streaming · 1.2 s")
            assert asked and not any(asked), asked
            asked.clear()
            line.show("streaming · 1.3 s")
            assert asked and not any(asked), asked
            asked.clear()
            line.show("two\nrows")
            assert any(asked), asked
        await pilot.pause()
        assert line.size.height == 2


async def test_the_in_app_suite_table_shows_a_priced_models_whole_cost(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from textual.widgets import DataTable

    from tests.support.tui import make_app, mock_config, scenario, send, wait_until
    from tests.test_history_replay import write_suite
    from tui.screens.suite import COLUMNS, SuiteScreen
    from tui.session.model_summary import cost_text
    from tui.session.replay import summarize

    model = scenario(mock_server, text="a short reply", ttft_ms=3)
    config = mock_config(mock_server, prices={model: {"input": 0.15, "output": 0.6}})
    suite = write_suite(isolated_home / "suite.jsonl")
    app = make_app(config, isolated_home, models=[model])
    async with app.run_test(size=(160, 40)) as pilot:
        await send(pilot, f"/suite {suite}")
        await wait_until(pilot, lambda: isinstance(app.screen, SuiteScreen))
        screen = app.screen
        assert isinstance(screen, SuiteScreen)
        await wait_until(pilot, lambda: len(screen.results) == 4 and not screen.running)
        table = screen.query_one(DataTable)
        (stats,) = summarize(screen.results, [model])
        expected = cost_text(stats.cost_usd, stats.cost_known)  # what `tokenrace replay` prints
        assert expected.startswith("$0.0000"), expected
        assert table.get_row(model)[COLUMNS.index("cost")] == expected
        # Drawn whole: the column is as wide as the value.
        column = next(c for c in table.columns.values() if str(c.label) == "cost")
        assert column.content_width >= len(expected), (column.content_width, expected)


def _documented_remaps(help_file: Path, actions_doc: str) -> dict[str, dict[str, str]]:
    """The [keys] examples of the README, the help screen and tui/actions.py."""
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    after = readme.split("[keys]", 1)[1]
    return {
        "README": dict(re.findall(r'^(\w+) = "([^"]+)"', after, re.M)[:1]),
        "help": dict(re.findall(r'e\.g\. (\w+) = "([^"]+)"', help_file.read_text())),
        "actions": dict(re.findall(r'^    (\w+) = "([^"]+)"', actions_doc, re.M)),
    }


async def test_a_remap_onto_a_bound_key_is_reported_and_the_documented_ones_are_free(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from tests.support.tui import make_app, mock_config
    from tui.actions import __doc__ as actions_doc
    from tui.screens import help_screen

    documented = _documented_remaps(Path(help_screen.__file__), actions_doc or "")
    assert all(documented.values()), documented
    cases = [*documented.values(), {"pick_model": "f8"}, {"pick_model": "ctrl+o"}]
    for keys in cases:
        app = make_app(mock_config(mock_server, keys=keys), isolated_home, models=["mock/m"])
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            notes = [str(n.message) for n in app._notifications if "[keys]" in str(n.message)]
        if keys in documented.values():
            assert notes == [], (keys, notes)
        else:
            (note,) = notes
            assert "already bound" in note, note
    assert "Diff" in note or "reasoning" in note


async def test_switching_theme_redraws_earlier_replies_in_the_new_colours(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from tests.support.tui import make_app, mock_config, scenario, screen_of, send, wait_until
    from tui.screens.chat import ChatScreen
    from tui.widgets.streaming_markdown import StreamingMarkdown

    model = scenario(mock_server, text="Plain words of an earlier reply.", ttft_ms=3)
    app = make_app(mock_config(mock_server), isolated_home, models=[model], save_state=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, "hi")
        await wait_until(
            pilot, lambda: screen_of(app, ChatScreen).last_reply() is not None, what="reply"
        )
        await pilot.pause(0.2)
        view = app.screen.query_one(StreamingMarkdown)

        def text_colour() -> object:
            lines = view.render_lines(view.region.reset_offset)
            segment = next(s for line in lines for s in line if s.text.strip())
            return segment.style.color if segment.style else None

        for theme in ("ansi-light", "tokenrace-light", "ansi-dark"):
            app.theme = theme
            await pilot.pause(0.3)
            assert text_colour() == view.rich_style.color, theme


async def test_compare_panes_start_at_the_top_and_reply_headers_stay_one_line(
    isolated_home: Path, mock_server: MockServerProcess
) -> None:
    from tests.support.tui import make_app, mock_config, replies_over, scenario, send, wait_until
    from tests.test_compare_screen import screen
    from tui.widgets.assistant_message import AssistantMessage
    from tui.widgets.user_message import UserMessage

    models = [
        scenario(mock_server, text="Short.", ttft_ms=5, tps=200),
        scenario(mock_server, text="A medium answer, a few words longer.", ttft_ms=5, tps=200),
        scenario(mock_server, text="cut short " * 5, ttft_ms=5, tps=200, drop_after_tokens=3),
    ]
    app = make_app(mock_config(mock_server), isolated_home, models=models)
    async with app.run_test(size=(96, 40)) as pilot:
        await send(pilot, "race")
        await wait_until(pilot, lambda: replies_over(app), timeout=30, what="race")
        await pilot.pause(0.3)
        tops = []
        for pane in screen(app).panes:
            assert pane.messages.max_scroll_y == 0  # everything fits
            first = pane.messages.query(UserMessage).first()
            tops.append(first.region.y - pane.messages.region.y)
        assert len(set(tops)) == 1 and tops[0] <= 1, tops  # at the top (after its margin)
        cut = screen(app).pane(2).query_one(AssistantMessage)
        assert cut.status == "interrupted"
        assert cut.header.region.height == 1
        assert "interrupted" in str(cut.header.render())

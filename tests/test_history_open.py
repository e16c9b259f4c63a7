"""A long conversation opens at its end with only what is in sight drawn.

The older replies of the window (``HISTORY_WINDOW``) are sized from their sources and drawn as
the list scrolls to them (``StreamingMarkdown.defer``, ``reveal``): what the user scrolls
back to is exactly what a full render gives, and rows on screen do not move while it is drawn.
"""

from __future__ import annotations

from bisect import bisect_right
from pathlib import Path

import pytest

from providers.config import parse_config
from tests.support.tui import contiguous_in, make_app, wait_for_screen
from tui.screens.chat import ChatScreen
from tui.screens.race_screen import defer_unseen
from tui.session.conversation import Conversation, Turn
from tui.session.store import new_id
from tui.widgets.assistant_message import AssistantMessage
from tui.widgets.message_list import MessageList
from tui.widgets.streaming_markdown import StreamingMarkdown
from tui.widgets.user_message import UserMessage


def _reply(k: int) -> str:
    return (
        f"## Answer {k}\n\nSome prose for answer {k}, with **bold** and `code`, long enough "
        "to fold over two or three rows of a narrow pane when it is drawn.\n\n"
        f"- first point of {k}\n- second point, *emphasised*\n- third point\n\n"
        f"```python\ndef answer_{k}(x):\n    return x * {k}\n```\n\n"
        f"| key | value |\n|---|---|\n| k | {k} |\n| twice | {2 * k} |\n\n"
        f"The end of answer {k}.\n"
    )


def _conversation(pairs: int) -> Conversation:
    conv = Conversation()
    for k in range(pairs):
        conv.turns(0).append(Turn(new_id(), "user", f"question {k}"))
        conv.turns(0).append(Turn(new_id(), "assistant", _reply(k), model="mock/a"))
    return conv


def _reference(view: StreamingMarkdown) -> list[str]:
    """The view's rows as a full render draws them (every block, one by one)."""
    closed = view._closed_blocks
    return [s.text for src in closed.sources for s in view._render_block(src, view._width)]


def _rows_in_sight(lst: MessageList) -> dict[int, str]:
    """Screen row → text, for every reply row the list shows now (each one already drawn)."""
    viewport = lst.scrollable_content_region
    out: dict[int, str] = {}
    for view in lst.query(StreamingMarkdown):
        closed = view._closed_blocks
        top = viewport.y - view.region.y
        for y in range(max(0, top), min(closed.height, top + viewport.height)):
            i = bisect_right(closed.tops, y) - 1
            assert closed.lines[i] is not None
            out[view.region.y + y] = view.render_line(y).text
    return out


@pytest.fixture
def whole_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every turn of the window drawn, however long (``HISTORY_MIN``): these tests are of the
    replies deferred within it, and 15 replies of two screens each were a window of 5."""
    from tui.screens import race_screen

    monkeypatch.setattr(race_screen, "HISTORY_MIN", race_screen.HISTORY_WINDOW)


@pytest.mark.usefixtures("whole_window")
async def test_a_long_conversation_opens_drawing_what_is_in_sight(isolated_home: Path) -> None:
    app = make_app(
        parse_config({}), isolated_home, conversation=_conversation(15), start_engine=False
    )
    async with app.run_test(size=(90, 30)) as pilot:
        screen = await wait_for_screen(pilot, ChatScreen)
        await pilot.pause(0.2)
        views = [m.body for m in screen.query(AssistantMessage)]
        assert len(views) == 15
        deferred = [v for v in views if v.rendered_blocks == 0 and v.pending]
        # The newest replies are drawn; the older ones, two screens up and more, only sized.
        assert views[-1].pending == 0 and views[-1].rendered_blocks > 0
        assert len(deferred) >= 10 and views[0] in deferred
        drawn_at_open = sum(v.rendered_blocks for v in views)
        assert drawn_at_open < sum(len(v._closed_blocks.sources) for v in views) // 3
        lst = screen.query_one(MessageList)
        assert lst.scroll_y == lst.max_scroll_y  # opened at its end
        _rows_in_sight(lst)

        # One row up at a time near the first deferred reply: the rows on screen move down by
        # exactly one, as the blocks coming into reach are drawn.
        newest_deferred = deferred[-1]
        while lst.scroll_y > 0 and newest_deferred.rendered_blocks == 0:
            lst.scroll_page_up(animate=False)
            await pilot.pause()
        for _ in range(8):
            before = _rows_in_sight(lst)
            lst.scroll_up(animate=False)
            await pilot.pause()
            after = _rows_in_sight(lst)
            assert {y + 1: t for y, t in before.items() if y + 1 in after} == {
                y: t for y, t in after.items() if y - 1 in before
            }

        # Page by page to the top: every reply's rows shown are one run of a full render's.
        while lst.scroll_y > 0:
            lst.scroll_page_up(animate=False)
            await pilot.pause()
            shown = _rows_in_sight(lst)
            for view in lst.query(StreamingMarkdown):
                y0, y1 = view.region.y, view.region.y + view._closed_blocks.height
                rows = [text for y, text in sorted(shown.items()) if y0 <= y < y1]
                if rows:
                    assert contiguous_in(rows, _reference(view))
        assert [v.late_draws for v in views] == [0] * len(views)  # each drawn before it showed
        first = views[0]
        assert [s.text for s in first._closed_lines] == _reference(first)
        assert first.source == _reply(0)


def test_only_replies_with_screens_of_text_below_them_are_deferred() -> None:
    from textual.geometry import Size

    widgets: list[UserMessage | AssistantMessage] = []
    for k in range(12):
        widgets.append(UserMessage(f"question {k}"))
        widgets.append(AssistantMessage("mock/a", text="line\n" * 9, finished=True))
    defer_unseen(list(widgets), Size(80, 20), panes=1)
    deferred = [w.body._deferred for w in widgets if isinstance(w, AssistantMessage)]
    # Each turn is about 2 + 9 + 3 = 14 rows: the newest three (42 rows) are kept, the rest
    # have more than two screens (40 rows) below them.
    assert deferred == [True] * 9 + [False] * 3
    short = AssistantMessage("mock/a", text="short", finished=True)
    defer_unseen([UserMessage("q"), short], Size(80, 20), panes=1)
    assert not short.body._deferred


def test_a_conversation_of_long_replies_opens_fewer_turns() -> None:
    """Turns drawn when a conversation opens (``history_window``): the last
    ``HISTORY_WINDOW`` of short ones; of long ones, ``HISTORY_MIN`` once those come to
    ``HISTORY_SCREENS`` screens of text; and never more than there are."""
    from textual.geometry import Size

    from tui.screens.race_screen import (
        HISTORY_MIN,
        HISTORY_SCREENS,
        HISTORY_WINDOW,
        history_window,
    )

    screen = Size(80, 40)
    chatty = [Turn(new_id(), "user" if k % 2 else "assistant", "short") for k in range(100)]
    assert history_window(chatty, screen, 1) == HISTORY_WINDOW  # 30 turns: 105 rows
    long_turns = [
        Turn(new_id(), "user" if k % 2 else "assistant", "line\n" * 60) for k in range(100)
    ]
    assert history_window(long_turns, screen, 1) == HISTORY_MIN  # 10 turns: 625 rows
    sized = [Turn(new_id(), "user" if k % 2 else "assistant", "line\n" * 9) for k in range(100)]
    drawn = history_window(sized, screen, 1)  # past HISTORY_MIN until four screens (160 rows)
    rows = [12 if k % 2 == 0 else 11 for k in range(drawn)]  # assistant 9 + 3, user 9 + 2
    assert sum(rows[:-1]) < HISTORY_SCREENS * screen.height <= sum(rows) and drawn > HISTORY_MIN
    assert history_window(chatty[:4], screen, 1) == 4


async def test_long_replies_open_a_short_window_and_pageup_at_the_top_loads_more(
    isolated_home: Path,
) -> None:
    """A conversation of long replies opens with ``HISTORY_MIN`` turns, the line above them
    saying how many are not drawn; PageUp at the top draws ``HISTORY_WINDOW`` more, and so
    does Ctrl+Home from anywhere, until none is left."""
    from textual.widgets import Static

    from tui.screens.race_screen import HISTORY_MIN, HISTORY_WINDOW

    conv = Conversation()
    for k in range(40):
        conv.turns(0).append(Turn(new_id(), "user", f"question {k}"))
        conv.turns(0).append(Turn(new_id(), "assistant", f"answer {k}\n\n" + "a line\n\n" * 40))
    app = make_app(parse_config({}), isolated_home, conversation=conv, start_engine=False)
    async with app.run_test(size=(90, 30)) as pilot:
        screen = await wait_for_screen(pilot, ChatScreen)
        await pilot.pause(0.2)
        lst = screen.query_one(MessageList)
        drawn = len(lst.query(UserMessage)) + len(lst.query(AssistantMessage))
        assert drawn == HISTORY_MIN
        earlier = lst.query_one(".earlier", Static)
        assert f"{80 - HISTORY_MIN} earlier messages" in str(earlier.render())
        lst.scroll_home(animate=False)
        await pilot.pause(0.1)
        await pilot.press("pageup")
        await pilot.pause(0.2)
        assert len(lst.query(UserMessage)) + len(lst.query(AssistantMessage)) == (
            HISTORY_MIN + HISTORY_WINDOW
        )
        # Ctrl+Home, as that line says, wherever the list is (the prompt has the focus).
        lst.scroll_end(animate=False)
        await pilot.pause(0.1)
        for drawn in (HISTORY_MIN + 2 * HISTORY_WINDOW, 80):
            await pilot.press("ctrl+home")
            await pilot.pause(0.2)
            assert len(lst.query(UserMessage)) + len(lst.query(AssistantMessage)) == drawn
        assert not earlier.display
        await pilot.press("ctrl+home")
        await pilot.pause(0.1)
        assert any("start of the conversation" in str(n.message) for n in app._notifications)


@pytest.mark.usefixtures("whole_window")
@pytest.mark.parametrize(("before", "after"), [((90, 16), (90, 60)), ((60, 16), (120, 60))])
async def test_a_taller_window_draws_the_replies_it_brings_into_sight(
    isolated_home: Path, before: tuple[int, int], after: tuple[int, int]
) -> None:
    """Opened in a short window, then made taller (and wider) while at the end: the older
    replies that come into sight are drawn before a frame shows them, exactly."""
    app = make_app(
        parse_config({}), isolated_home, conversation=_conversation(15), start_engine=False
    )
    async with app.run_test(size=before) as pilot:
        screen = await wait_for_screen(pilot, ChatScreen)
        await pilot.pause(0.2)
        views = [m.body for m in screen.query(AssistantMessage)]
        deferred = [v for v in views if v.rendered_blocks == 0 and v.pending]
        assert len(deferred) >= 10
        await pilot.resize_terminal(*after)
        for _ in range(5):
            await pilot.pause(0.05)
        lst = screen.query_one(MessageList)
        assert lst.scroll_y == lst.max_scroll_y  # still at its end
        shown = _rows_in_sight(lst)
        assert len(shown) > 15
        for view in lst.query(StreamingMarkdown):
            y0, y1 = view.region.y, view.region.y + view._closed_blocks.height
            rows = [text for y, text in sorted(shown.items()) if y0 <= y < y1]
            if rows:
                assert contiguous_in(rows, _reference(view))
        assert [v.late_draws for v in views] == [0] * len(views)


async def test_copying_from_a_partly_drawn_reply_gives_the_rows_in_sight(
    isolated_home: Path,
) -> None:
    """Scrolled up until an older reply is drawn only near its end (its first blocks still
    sized, at estimated heights): a selection of rows in sight copies exactly those rows,
    and copying draws nothing into the layout."""
    from textual.geometry import Offset
    from textual.selection import Selection

    conv = Conversation()
    for k in range(15):
        # Blocks whose estimate is off first (a table's rules, a code block's padding), then
        # paragraphs, estimated exactly.
        reply = _reply(k).replace(f"## Answer {k}\n\n", "")
        reply = reply[reply.index("```") :] + "".join(f"Paragraph {i}.\n\n" for i in range(6))
        conv.turns(0).append(Turn(new_id(), "user", f"question {k}"))
        conv.turns(0).append(Turn(new_id(), "assistant", reply, model="mock/a"))
    app = make_app(parse_config({}), isolated_home, conversation=conv, start_engine=False)
    async with app.run_test(size=(60, 14)) as pilot:
        screen = await wait_for_screen(pilot, ChatScreen)
        await pilot.pause(0.2)
        lst = screen.query_one(MessageList)
        views = [m.body for m in screen.query(AssistantMessage)]
        partly = None
        while lst.scroll_y > 0 and partly is None:
            lst.scroll_up(animate=False)
            await pilot.pause()
            partly = next(
                (v for v in views if 0 < v.pending <= len(v._closed_blocks.sources) - 3),
                None,
            )
        assert partly is not None
        closed = partly._closed_blocks
        exact = closed.exact_from()
        pending = [i for i in closed.pending_indexes()]
        estimated = sum(closed.heights[i] for i in pending)
        drawn = sum(len(partly._render_block(closed.sources[i], partly._width)) for i in pending)
        assert estimated != drawn  # the estimate is off: rows below would read wrong
        # From the first row drawn up to the end of the reply's last line of text.
        rows = [partly.render_line(y).text.rstrip() for y in range(exact, closed.height)]
        while not rows[-1]:
            rows.pop()
        assert len(rows) >= 2
        heights = list(closed.heights)
        end = Offset(len(rows[-1]), exact + len(rows) - 1)
        picked = partly.get_selection(Selection(Offset(0, exact), end))
        assert picked is not None and picked[0] == "\n".join(rows)
        one = partly.get_selection(Selection(Offset(2, exact), Offset(8, exact)))
        assert one is not None and one[0] == rows[0][2:8]
        whole = partly.get_selection(Selection(None, None))
        assert closed.pending == len(pending) and closed.heights == heights  # nothing drawn
        everything = "\n".join(s.text.rstrip() for s in partly._closed_lines)  # (draws all)
        assert whole is not None and whole[0] == Selection(None, None).extract(everything)

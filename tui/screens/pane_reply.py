"""One reply's life in one pane: consume, checkpoint, finish, fail, tick, cancel, interrupt."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from providers.events import Cancelled, StreamError, ToolCallDelta
from providers.remote import StreamHandle
from tui.session import blind
from tui.session.conversation import LiveRun
from tui.textual_private import draw_now
from tui.widgets.assistant_message import AssistantMessage

if TYPE_CHECKING:
    from tui.screens.race_screen import RaceScreen

# The engine did not confirm a cancel within this (it may have died): the reply ends here,
# keeping its text.
CANCEL_GRACE_S = 1.0
# A reply's last text waits at most this for its frame before its figures and save.
FRAME_WAIT_S = 0.25
# A reply's figures and save wait at most this for the other panes of its race to end, and
# look whether they have every END_POLL_S.
END_TOGETHER_S = 0.5
END_POLL_S = 0.01


class PaneReply:
    """The reply streaming into pane ``pane`` of ``screen``; the screen draws the pane."""

    def __init__(
        self,
        screen: RaceScreen,
        pane: int,
        run: LiveRun,
        widget: AssistantMessage,
        settings: dict[str, Any],
        race_id: str | None = None,
    ) -> None:
        self.screen = screen
        self.pane = pane
        self.run = run
        self.widget = widget
        self.settings = settings  # stored with the run: the conversation's, and the pane's own
        self.race_id = race_id
        self.handle: StreamHandle | None = None

    @property
    def group(self) -> str:
        """The worker group of this pane's stream: cancelling it touches no other pane."""
        return f"pane-{self.pane}"

    def consume(self, handle: StreamHandle) -> None:
        """Read the engine's batches for this reply in the pane's own worker."""
        self.handle = handle
        self.screen.run_worker(self._consume(handle), group=self.group, exit_on_error=False)

    async def _consume(self, handle: StreamHandle) -> None:
        try:
            await self._read(handle)
        except Exception as error:
            # A fault on this side while drawing or keeping the reply: it ends here, in error,
            # with the text received so far. (Its worker dying without ``finish`` had left the
            # screen streaming for good: nothing more could be sent, and Esc had nothing to
            # cancel once the stream was over.)
            self._failed(error)
        self.finish()

    def _failed(self, error: Exception) -> None:
        """Say, on the reply, that tokenrace failed while showing it (the stream may be whole)."""
        message = f"tokenrace failed while showing this reply: {type(error).__name__}: {error}"
        if not self.run.done:
            self.run.feed(
                [StreamError(t_ns=time.perf_counter_ns(), kind="internal", message=message)]
            )
        else:
            self.widget.add_notice(message)

    async def _read(self, handle: StreamHandle) -> None:
        """Feed the engine's batches to the run and the widget, then draw the last text."""
        run, widget = self.run, self.widget
        messages = self.screen.messages_of(self.pane)
        race = self.screen.conv.blind
        # A blind race may hold every reply until all have finished (speed would tell).
        held = race is not None and race.holds_replies()
        while (batch := await handle.next_batch()) is not None:
            delta = run.feed(batch)
            if delta.reasoning and not held:
                widget.append_reasoning(delta.reasoning)
            if delta.text and not held:
                widget.append_text(delta.text)
            if delta.tool_calls and not held:
                widget.append_tool_calls(delta.tool_calls)
            for note in delta.notices:
                widget.add_notice(blind.scrub(race, note))
            if delta.text or delta.reasoning or delta.tool_calls:
                messages.content_grew()
            if run.done:
                break  # its last text first: ``finish`` saves it after, with its figures
            self.checkpoint_if_due()  # the first token, then every CHECKPOINT_S (DESIGN §6)
        if not held and not run.shown_final:
            # The last text first, in a frame of its own; the figures, the save and the log
            # after it. In one go, the bookkeeping of four long replies at the end of a race
            # kept their last tokens off the screen (a trace at 4 × 2,000 tok/s, one token an
            # event: four finishes of 40-45 ms each, one after another, before the frame).
            widget.finish_text()
            draw_now(self.screen, widget.text_views())
            waiting = self.screen.last_text_waiting
            waiting.add(self.pane)
            try:
                await self._frame_drawn()
            finally:
                waiting.discard(self.pane)
            # The panes of a race end together: while another pane streams, or its last text
            # waits for its frame, this reply's bookkeeping waits (at most END_TOGETHER_S).
            # It is 10-20 ms of figures and saving, and asks for a layout of the screen (the
            # reply leaves its tail; its header and figures line change): the last text of a
            # pane that ended 10 ms later then waited for both, 150 ms at 4 × 2,000 tok/s.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(END_TOGETHER_S):
                    # Polled: a run ends in another pane's worker, a frame in a callback.
                    while waiting or self._others_streaming():  # noqa: ASYNC110
                        await asyncio.sleep(END_POLL_S)

    def _others_streaming(self) -> bool:
        """Whether another pane's reply is still coming in."""
        return any(
            not reply.run.done for reply in self.screen.replies.values() if reply is not self
        )

    async def _frame_drawn(self) -> None:
        """Return once the screen has drawn what changed (at most ``FRAME_WAIT_S`` later);
        the pane leaves ``last_text_waiting`` when that frame is out, not when this resumes."""
        drawn = asyncio.Event()

        def done() -> None:
            self.screen.last_text_waiting.discard(self.pane)
            drawn.set()

        if self.screen.call_after_refresh(done):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FRAME_WAIT_S):
                    await drawn.wait()

    def checkpoint_if_due(self) -> None:
        self.run.maybe_checkpoint(
            self.screen.tapp.store, self.screen.conv, self.settings, race_id=self.race_id
        )

    def fail_locally(self, message: str) -> None:
        """A failure on this side of the engine (it could not start): the reply ends in error."""
        t = time.perf_counter_ns()
        self.run.feed([StreamError(t_ns=t, kind="internal", message=message)])
        self.finish()

    def finish(self) -> None:
        """Show the final figures, keep the turn, save it, log the run (once)."""
        run, screen = self.run, self.screen
        if run.shown_final:
            return
        run.shown_final = True
        if not run.done:
            run.feed([Cancelled(t_ns=time.perf_counter_ns())])
        m = run.final()
        race = screen.conv.blind
        if race is None or not race.holds_replies():
            self.widget.finish(blind.metrics(race, m))
            self.widget.check_tool_calls(screen.conv.settings.tools)
        schema = screen.conv.settings.schema
        if schema is not None and run.status in ("complete", "length"):
            from tui.session.structured import validate_reply

            self.widget.add_notice(validate_reply(run.text, schema).describe())
        turn = run.turn()
        screen.conv.turns(self.pane).append(turn)
        run.checkpoint(screen.tapp.store, screen.conv, self.settings, race_id=self.race_id)
        screen.tapp.run_completed(run, m)
        messages = screen.messages_of(self.pane)
        if turn.error and turn.status in ("error", "interrupted"):
            kind = next(
                (e.kind for e in reversed(run.events) if isinstance(e, StreamError)), "error"
            )
            messages.mount(screen.error_panel(run.model, self.pane, kind, turn.error))
        messages.content_grew()
        screen.status_of(self.pane).show(
            blind.figures(race, run.live(time.perf_counter_ns()), self.pane),
            blind.spark(race, run.spark_rates()),
        )
        self.handle = None
        screen.reply_finished(self)

    def frame(self, busy: bool = False) -> bool:
        """The frame clock: new text drawn; text that came before a pause saved. True when the
        reply grew a step of height (bigger steps while the UI is ``busy``)."""
        if self.run.shown_final:
            return False
        stepped = self.widget.sync(busy)
        if not self.run.done:  # a checkpoint of a reply over computes its final figures
            self.checkpoint_if_due()
        return stepped

    def step_along(self) -> None:
        """Another pane's reply grew a step in this frame: this one steps with it if near."""
        if not self.run.shown_final:
            self.widget.step_along()

    def show_figures(self, now_ns: int) -> None:
        """Live figures on the pane's status bar and the reply's live line."""
        run = self.run
        if run.done:
            return
        f = run.live(now_ns)
        race = self.screen.conv.blind
        self.screen.status_of(self.pane).show(
            blind.figures(race, f, self.pane), blind.spark(race, run.spark_rates())
        )
        if f.retry_until_ns is None:
            ep = self.screen.tapp.config.endpoints.get(run.endpoint)
            label = run.live_label(now_ns, ep.timeouts if ep else None)
            self.widget.show_live(blind.live_line(race, label))
        else:
            left = max(0.0, (f.retry_until_ns - now_ns) / 1e9)
            self.widget.show_live(f"⟳ retrying in {left:.1f} s — Esc cancels")

    def show_held(self) -> None:
        """A blind race that held the replies: this one appears now, with the others."""
        run, widget = self.run, self.widget
        if run.reasoning:
            widget.append_reasoning(run.reasoning)
        if run.text:
            widget.append_text(run.text)
        calls = [e for e in run.events if isinstance(e, ToolCallDelta)]
        if calls:
            widget.append_tool_calls(calls)
        widget.finish(blind.metrics(self.screen.conv.blind, run.final()))
        widget.check_tool_calls(self.screen.conv.settings.tools)
        self.screen.messages_of(self.pane).content_grew()

    def cancel(self) -> bool:
        """Ask the engine to cancel this stream; True if it was running."""
        run, screen = self.run, self.screen
        if run.done:
            return False
        if self.handle is not None:
            screen.tapp.engine.cancel(self.handle)

        def fallback() -> None:
            if not run.done and not run.shown_final:
                screen.workers.cancel_group(screen, self.group)
                self.finish()

        screen.set_timer(CANCEL_GRACE_S, fallback)
        return True

    def interrupt(self, message: str) -> None:
        """The app is being stopped (SIGTERM, SIGHUP): end the reply as interrupted, saved."""
        if self.run.shown_final:
            return
        self.run.interrupt(message)
        self.screen.workers.cancel_group(self.screen, self.group)
        self.finish()

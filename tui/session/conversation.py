"""The conversation model: settings, turns per pane, and a reply while it streams (no textual)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from providers.attachments import Image
from providers.capabilities import ChatParams
from providers.config import Timeouts
from providers.events import (
    TOKEN_EVENTS,
    Cancelled,
    Event,
    Finished,
    Notice,
    ReasoningDelta,
    RequestSent,
    Retrying,
    ServerTimings,
    StreamError,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    fold,
)
from providers.metrics import (
    EMPTY_METRICS,
    RunMetrics,
    TokenTally,
    compute_metrics,
    metrics_from_record,
    status_of,
)
from providers.model_ref import ModelRef
from providers.prices import Price
from providers.tools import (
    ToolDef,
    ToolsError,
    call_as_text,
    calls_from_json,
    calls_to_json,
    parse_tools,
)
from tui.session.blind import BlindRace
from tui.session.store import ROOT, Store, new_id

TITLE_CHARS = 60
SPARK_BUCKET_NS = 250_000_000  # the sparkline shows tok/s per quarter second
# A streaming reply is saved at its first token and then at least this often while new text
# comes (DESIGN §6: a kill loses at most the last second). Under a second because the frame
# clock that also calls it ticks every 50 ms and the writer thread needs a moment.
CHECKPOINT_S = 0.8
WAITING_AFTER_S = 2.0  # silence before the live line says the reply is waiting


@dataclass
class Settings:
    """Per-conversation request settings, changed with / commands."""

    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    json_mode: bool = False
    thinking: bool | None = None  # /thinking; None: the endpoint's default (config)
    thinking_budget: int | None = None  # /thinking BUDGET (tokens)
    tools: tuple[ToolDef, ...] = ()  # /tools FILE: tools the model may call (never executed)
    schema: dict[str, Any] | None = None  # /schema FILE: the JSON Schema replies must follow
    role: str | None = None  # /role NAME: the role whose settings these are (shown, stored)

    def params(self) -> ChatParams:
        return ChatParams(
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            json_mode=self.json_mode,
            thinking=self.thinking,
            thinking_budget=self.thinking_budget,
            tools=self.tools,
            json_schema=self.schema,
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "system": self.system,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "json_mode": self.json_mode,
        }
        # Only when set, so settings stored before these existed read the same.
        if self.thinking is not None:
            d["thinking"] = self.thinking
        if self.thinking_budget is not None:
            d["thinking_budget"] = self.thinking_budget
        if self.tools:
            d["tools"] = [
                {"name": t.name, "description": t.description, "parameters": dict(t.parameters)}
                for t in self.tools
            ]
        if self.schema is not None:
            d["schema"] = self.schema
        if self.role is not None:
            d["role"] = self.role
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Settings:
        thinking = d.get("thinking")
        budget = d.get("thinking_budget")
        return cls(
            system=d.get("system"),
            temperature=d.get("temperature"),
            max_tokens=d.get("max_tokens"),
            json_mode=bool(d.get("json_mode", False)),
            thinking=thinking if isinstance(thinking, bool) else None,
            thinking_budget=budget if isinstance(budget, int) else None,
            tools=_stored_tools(d.get("tools")),
            schema=d["schema"] if isinstance(d.get("schema"), dict) else None,
            role=d["role"] if isinstance(d.get("role"), str) else None,
        )


def _stored_tools(value: Any) -> tuple[ToolDef, ...]:
    """Tools stored with a conversation's settings; none when they no longer load."""
    if not value:
        return ()
    try:
        return parse_tools(value, "stored settings")
    except ToolsError:
        return ()


@dataclass
class Turn:
    """One message of one pane's history."""

    id: int
    role: str  # user | assistant
    content: str
    model: str | None = None
    reasoning: str = ""
    status: str = "complete"
    error: str | None = None
    metrics: RunMetrics | None = None
    race_id: str | None = None  # the race this reply ran in (compare mode)
    images: tuple[Image, ...] = ()  # attached to a user message; sent with every later request
    tool_calls: tuple[ToolCall, ...] = ()  # calls the reply made (shown, never executed)
    parent_id: int | None = None  # the message before it on its branch (None: the first)

    def counts_in_history(self) -> bool:
        """Whether this turn is sent back to the model with the next prompt."""
        if self.role == "user":
            return True
        return bool(self.content or self.tool_calls) and self.status != "error"

    def history_text(self) -> str:
        """What a later request carries for this turn: its text, then any tool calls as text
        (no protocol's tool-result plumbing, so any protocol can take the conversation on)."""
        if not self.tool_calls:
            return self.content
        calls = "\n".join(call_as_text(c) for c in self.tool_calls)
        return f"{self.content}\n\n{calls}" if self.content else calls


@dataclass
class Conversation:
    """A conversation: its settings, and the turns of each pane (pane 0 in plain chat)."""

    id: int = field(default_factory=new_id)
    title: str = ""
    mode: str = "chat"
    settings: Settings = field(default_factory=Settings)
    panes: dict[int, list[Turn]] = field(default_factory=dict)
    saved: bool = False
    run_models: dict[int, str] = field(default_factory=dict)  # each pane's latest run's model
    verdicts: list[tuple[str, str]] = field(default_factory=list)  # (race id, winner or "tie")
    blind: BlindRace | None = None  # a blind race (compare mode): names hidden until revealed
    # Per pane, the message the current branch starts from (set by an edit or a fork; the
    # branch then follows the newest message below it made since then: ``branch_since``).
    branch: dict[int, int | None] = field(default_factory=dict)
    branch_since: int | None = None

    def turns(self, pane: int = 0) -> list[Turn]:
        return self.panes.setdefault(pane, [])

    def request_messages(self, pane: int = 0) -> tuple[dict[str, Any], ...]:
        """System prompt, then the pane's history, as the next request will carry it."""
        out: list[dict[str, Any]] = []
        if self.settings.system:
            out.append({"role": "system", "content": self.settings.system})
        for t in self.turns(pane):
            if t.counts_in_history():
                msg: dict[str, Any] = {"role": t.role, "content": t.history_text()}
                if t.images:
                    msg["images"] = t.images
                out.append(msg)
        return tuple(out)

    def ensure_saved(self, store: Store | None) -> None:
        if not self.saved and store is not None:
            store.create_conversation(
                self.id,
                self.title,
                self.mode,
                self.settings.to_dict(),
                blind=self.blind.to_json() if self.blind is not None else None,
            )
            self.saved = True

    def reveal(self, store: Store | None) -> bool:
        """End a blind race's hiding (the verdict was given); True if it was hiding."""
        if self.blind is None or self.blind.revealed:
            return False
        self.blind.revealed = True
        if store is not None and self.saved:
            store.update_conversation(self.id, blind=self.blind.to_json())
        return True

    def add_user(
        self,
        text: str,
        store: Store | None,
        panes: tuple[int, ...] = (0,),
        images: tuple[Image, ...] = (),
        typed: str | None = None,
    ) -> Turn:
        """Append the user's prompt (and its images) to every pane and the store; names the
        conversation. ``typed`` is the prompt as the user wrote it when ``text`` is more (its
        ``@file`` words expanded): the title and the prompt history take the typed one."""
        typed = text if typed is None else typed
        if not self.title:
            line = " ".join(typed.split())
            self.title = line[:TITLE_CHARS] + ("…" if len(line) > TITLE_CHARS else "")
        self.ensure_saved(store)
        if store is not None:
            store.update_conversation(self.id, title=self.title)
            store.add_prompt(typed, self.id)
        turn = Turn(id=0, role="user", content=text)
        for pane in panes:
            turns = self.turns(pane)
            t = Turn(
                id=new_id(),
                role="user",
                content=text,
                images=images,
                parent_id=turns[-1].id if turns else None,
            )
            turns.append(t)
            if store is not None:
                parent = ROOT if t.parent_id is None else t.parent_id
                store.save_message(t.id, self.id, "user", text, pane=pane, parent_id=parent)
                store.save_attachments(t.id, images)
            turn = t
        return turn

    def user_prompts(self, pane: int = 0) -> list[str]:
        """The user's prompts on the current branch, oldest first."""
        return [t.content for t in self.turns(pane) if t.role == "user"]

    def fork_at(self, index: int, store: Store | None) -> str | None:
        """Start a new branch at the ``index``-th user prompt (negative counts from the end):
        every pane's turns from that prompt on leave the current branch (they stay stored, as
        an earlier branch); returns the prompt's text, for the user to edit and send."""
        prompts = self.user_prompts()
        if not prompts or not -len(prompts) <= index < len(prompts):
            return None
        index %= len(prompts)
        for pane, turns in self.panes.items():
            users = [i for i, t in enumerate(turns) if t.role == "user"]
            if index < len(users):
                del turns[users[index] :]
            self.branch[pane] = turns[-1].id if turns else None
        self.branch_since = new_id()
        if store is not None and self.saved:
            stored: dict[str, int | None] = {str(p): t for p, t in self.branch.items()}
            stored["since"] = self.branch_since
            store.update_conversation(self.id, branch=stored)
        return prompts[index]

    @classmethod
    def load(cls, store: Store, conv_id: int) -> Conversation | None:
        """A stored conversation with its turns and each reply's metrics."""
        row = store.conversation(conv_id)
        if row is None:
            return None
        conv = cls(
            id=row.id,
            title=row.title,
            mode=row.mode,
            settings=Settings.from_dict(row.settings),
            saved=True,
            blind=BlindRace.from_json(row.blind),
        )
        conv.branch = branch_tips(row.branch)
        conv.branch_since = branch_since(row.branch)
        images = store.images(conv_id)
        rows = store.messages(conv_id)
        for m in current_branch(rows, conv.branch, conv.branch_since):
            turn = Turn(
                id=m["id"],
                role=m["role"],
                content=m["content"],
                model=m["model"],
                reasoning=m["reasoning"],
                status=m["status"],
                error=m["error"],
                images=tuple(images.get(m["id"], ())),
                tool_calls=calls_from_json(m["tool_calls"]),
                parent_id=m["parent_id"],
            )
            if turn.role == "assistant":
                run = store.run_for_message(turn.id)
                if run is not None:
                    turn.metrics = metrics_from_record(run)
                    turn.race_id = run["race_id"]
            conv.turns(int(m["pane"])).append(turn)
        for run in store.runs(conv_id):  # oldest first: the last one of a pane wins
            conv.run_models[int(run["pane"])] = run["model"]
        conv.verdicts = [(v["race_id"], v["winner"]) for v in store.verdicts(conv_id)]
        if conv.blind is not None and not conv.blind.models:
            conv.blind.models = [m or "" for m in conv.pane_models()]
        return conv

    def pane_models(self) -> list[str | None]:
        """The model of each pane, as a compare screen reopens it: its latest reply's, else
        its latest request's (a race killed before the first token)."""
        out: list[str | None] = []
        for pane in sorted(set(self.panes) | set(self.run_models)):
            model = next(
                (t.model for t in reversed(self.turns(pane)) if t.role == "assistant" and t.model),
                None,
            )
            out.append(model or self.run_models.get(pane))
        return out


def branch_tips(stored: Mapping[str, Any] | None) -> dict[int, int | None]:
    """A stored ``branch`` (JSON: pane → message id) as pane numbers to ids."""
    out: dict[int, int | None] = {}
    for pane, tip in (stored or {}).items():
        if str(pane).isdigit() and (tip is None or isinstance(tip, int)):
            out[int(pane)] = tip
    return out


def branch_since(stored: Mapping[str, Any] | None) -> int | None:
    """When the stored branch was chosen (an id: messages made later have larger ones)."""
    since = (stored or {}).get("since")
    return since if isinstance(since, int) else None


def current_branch(
    rows: list[Any], tips: Mapping[int, int | None], since: int | None = None
) -> list[Any]:
    """The stored messages on each pane's current branch, in order (pane by pane).

    A pane's branch runs from its root to ``tips[pane]`` (the message a fork or an edit
    started from), then on down the newest message below each one made after ``since``
    (the moment that branch was chosen: the old branch below the tip is not followed, even
    before the new one has a message). A retried reply (F5) is a
    sibling of the reply it replaced: older retried replies that nothing follows stay on the
    branch, just before the reply that replaced them, as they did on screen.
    """
    out: list[Any] = []
    for pane in sorted({int(r["pane"]) for r in rows}):
        mine = [r for r in rows if int(r["pane"]) == pane]
        nodes = {int(r["id"]): r for r in mine}
        kids: dict[int | None, list[Any]] = {}
        for r in sorted(mine, key=lambda r: int(r["id"])):
            parent = r["parent_id"]
            kids.setdefault(parent if parent in nodes else None, []).append(r)
        spine: list[Any] = []
        tip = tips.get(pane)
        while tip is not None and tip in nodes and len(spine) <= len(nodes):
            spine.insert(0, nodes[tip])
            tip = nodes[tip]["parent_id"]
        cursor = int(spine[-1]["id"]) if spine else None
        floor = since if since is not None and pane in tips else None
        while len(spine) <= len(nodes):
            below = [k for k in kids.get(cursor, []) if floor is None or int(k["id"]) > floor]
            if not below:
                break
            spine.append(below[-1])
            cursor = int(spine[-1]["id"])
        on = {int(r["id"]) for r in spine}
        for r in spine:
            out.append(r)
            if r["role"] == "user":
                out += [
                    k
                    for k in kids.get(int(r["id"]), [])
                    if int(k["id"]) not in on and k["role"] == "assistant" and not kids.get(k["id"])
                ]
    return out


def message_tree(rows: list[Any], pane: int = 0) -> list[tuple[int, Any]]:
    """A pane's stored messages as a tree, depth first (oldest branch first): (depth, row)."""
    mine = sorted((r for r in rows if int(r["pane"]) == pane), key=lambda r: int(r["id"]))
    ids = {int(r["id"]) for r in mine}
    kids: dict[int | None, list[Any]] = {}
    for r in mine:
        kids.setdefault(r["parent_id"] if r["parent_id"] in ids else None, []).append(r)
    out: list[tuple[int, Any]] = []

    def walk(parent: int | None, depth: int) -> None:
        children = kids.get(parent, [])
        for child in children:
            out.append((depth, child))
            # A line of single children stays at one depth: only a branch point indents.
            walk(int(child["id"]), depth + (1 if len(children) > 1 else 0))

    walk(None, 0)
    return out


def branch_ends(rows: list[Any], pane: int = 0) -> list[int]:
    """The last message of each of a pane's branches, oldest branch first (the tree's order):
    every message nothing follows, except a reply a retry replaced (a later reply beside it)."""
    tree = [r for _, r in message_tree(rows, pane)]
    parents = {r["parent_id"] for r in tree}
    ends: list[int] = []
    for r in tree:
        rid = int(r["id"])
        if rid in parents:
            continue
        retried = r["role"] == "assistant" and any(
            o["parent_id"] == r["parent_id"] and o["role"] == "assistant" and int(o["id"]) > rid
            for o in tree
        )
        if not retried:
            ends.append(rid)
    return ends


def branch_tips_at(rows: list[Any], index: int) -> dict[int, int | None]:
    """Every pane's tip for the ``index``-th branch (oldest first): a race gives every pane the
    same edits and forks, so a pane's branches line up with pane A's (a pane with fewer keeps
    its last)."""
    tips: dict[int, int | None] = {}
    for pane in sorted({int(r["pane"]) for r in rows}):
        ends = branch_ends(rows, pane)
        if ends:
            tips[pane] = ends[min(index, len(ends) - 1)]
    return tips


@dataclass
class LiveFigures:
    """What the status bar shows while a reply streams; cheap to compute every frame."""

    model: str
    status: str
    ttft_ms: float | None
    decode_tps: float | None
    tokens: int
    tokens_estimated: bool
    elapsed_ms: float | None
    cost_usd: float | None
    cost_estimated: bool
    retry_until_ns: int | None = None
    retry_message: str = ""


@dataclass
class Delta:
    """What one batch of events changed, for the widgets to apply."""

    text: str = ""
    reasoning: str = ""
    notices: list[str] = field(default_factory=list)
    tool_calls: list[ToolCallDelta] = field(default_factory=list)  # choice 0's fragments
    retrying: Retrying | None = None
    error: StreamError | None = None
    finished: bool = False


class LiveRun:
    """One reply while it streams: its events, text, and running figures."""

    def __init__(
        self,
        model: str,
        t_submit_ns: int,
        price: Price | None,
        prompt_estimate: int,
        stall_s: float = 1.0,
        pane: int = 0,
    ):
        self.model = model
        self.endpoint = ModelRef.parse(model).endpoint
        self.t_submit_ns = t_submit_ns
        self.price = price
        self.prompt_estimate = prompt_estimate
        self.stall_s = stall_s
        self.pane = pane
        self.events: list[Event] = []
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self.text_len = 0
        self.t0: int | None = None
        self.t_first: int | None = None
        self.t_last: int | None = None
        self.token_events = 0
        self.tally = TokenTally()  # the estimator the final figures use too
        self.usage: Usage | None = None
        self.retry: Retrying | None = None
        self.done = False
        self.started_at = time.time()
        self.spark: list[int] = []  # token events per bucket since the first token
        self.message_id = new_id()
        self.parent_id: int | None = None  # the turn this reply answers, found when saved
        self.run_id = new_id()
        self._final: RunMetrics | None = None
        # Read at the end from what ``feed`` saw, not by scanning every event again (a reply
        # of 8,000 events was read seven times over as it finished, in the frame that showed
        # its last token).
        self._error: StreamError | None = None
        self._server_timings: ServerTimings | None = None
        self._has_tool_calls = False
        self.shown_final = False  # the UI has shown the final figures
        self._saved_at: float | None = None  # time.monotonic() of the last checkpoint
        self._saved_events = 0  # len(self.events) at the last checkpoint
        self._saved_tokens = 0  # token events at the last checkpoint
        self._created_at = time.monotonic()

    @property
    def text(self) -> str:
        if len(self._text) > 1:
            self._text = ["".join(self._text)]
        return self._text[0] if self._text else ""

    @property
    def reasoning(self) -> str:
        if len(self._reasoning) > 1:
            self._reasoning = ["".join(self._reasoning)]
        return self._reasoning[0] if self._reasoning else ""

    def feed(self, batch: list[Event]) -> Delta:
        """Take a batch of engine events; returns what changed."""
        delta = Delta()
        text: list[str] = []
        reasoning: list[str] = []
        for ev in batch:
            self.events.append(ev)
            if isinstance(ev, TOKEN_EVENTS):
                if self.t_first is None:
                    self.t_first = ev.t_ns
                self.t_last = ev.t_ns
                self.token_events += 1
                self.tally.add(ev)
                bucket = (ev.t_ns - self.t_first) // SPARK_BUCKET_NS
                while len(self.spark) <= bucket:
                    self.spark.append(0)
                self.spark[bucket] += 1
                if isinstance(ev, TextDelta) and ev.choice == 0:
                    text.append(f"\n\n> refusal: {ev.text}" if ev.refusal else ev.text)
                elif isinstance(ev, ReasoningDelta) and ev.choice == 0:
                    reasoning.append(ev.text)
                elif isinstance(ev, ToolCallDelta) and ev.choice == 0:
                    delta.tool_calls.append(ev)
                    self._has_tool_calls = True
            elif isinstance(ev, RequestSent):
                self.t0 = ev.t_ns
                self.retry = None
            elif isinstance(ev, Usage):
                self.usage = ev
            elif isinstance(ev, Retrying):
                self.retry = ev
                delta.retrying = ev
            elif isinstance(ev, Notice):
                delta.notices.append(ev.message)
            elif isinstance(ev, StreamError):
                delta.error = ev
                self._error = ev
                self.done = True
            elif isinstance(ev, ServerTimings):
                self._server_timings = ev
            elif isinstance(ev, (Finished, Cancelled)):
                self.done = True
        if text:
            delta.text = "".join(text)
            self._text.append(delta.text)
            self.text_len += len(delta.text)
        if reasoning:
            delta.reasoning = "".join(reasoning)
            self._reasoning.append(delta.reasoning)
        delta.finished = self.done
        return delta

    @property
    def status(self) -> str:
        """What became of the reply (from every event; read once it is over)."""
        if self._final is not None and self.done:
            return self._final.status
        return status_of(self.events)

    def interrupt(self, message: str) -> None:
        """End the reply as ``interrupted`` (the app is being stopped), keeping its text."""
        if not self.done:
            now = time.perf_counter_ns()
            self.feed([StreamError(t_ns=now, kind="interrupted", message=message)])

    def live(self, now_ns: int) -> LiveFigures:
        """Running figures in O(1): the final ones come from ``final`` once the reply is
        over and shown (its last text drawn: ``shown_final``), or computed already."""
        if self.done and (self.shown_final or self._final is not None):
            m = self.final()
            from tui.format import cost_is_estimated

            return LiveFigures(
                self.model,
                m.status,
                m.ttft_ms,
                m.decode_tps,
                m.output_tokens or 0,
                m.output_tokens_estimated,
                m.e2e_ms,  # None (—) for a request that never left, not "0.0 ms"
                m.cost_usd,
                cost_is_estimated(m),
            )
        ttft = (self.t_first - self.t0) / 1e6 if self.t_first and self.t0 else None
        # The same estimate of n and n₁ as the final figures (compute_metrics), counted as the
        # events arrive: live and final agree when the server sends no usage.
        tokens = self.tally.estimate()
        rate = None
        if self.t_first is not None and self.t_last is not None:
            rate = self.tally.decode_rate(tokens, self.t_last - self.t_first)
        cost = None
        if self.price is not None:
            cost = self.price.cost(self.prompt_estimate, tokens)
        start = self.t0 or self.t_submit_ns
        retry_until = None
        msg = ""
        if self.retry is not None:
            retry_until = self.retry.t_ns + int(self.retry.delay_s * 1e9)
            msg = self.retry.message
        return LiveFigures(
            self.model,
            "streaming",
            ttft,
            rate,
            tokens,
            True,
            (now_ns - start) / 1e6,
            cost,
            True,
            retry_until,
            msg,
        )

    def live_label(self, now_ns: int, timeouts: Timeouts | None = None) -> str:
        """The line under a streaming reply; says when it is waiting, for how long, and
        against which timeout (``● streaming · 53 s`` alone read as progress)."""
        from tui.format import ms

        t = timeouts or Timeouts()
        start = self.t0 or self.t_submit_ns
        elapsed = ms((now_ns - start) / 1e6)
        if self.t0 is not None and self.t_first is None:
            waited = (now_ns - self.t0) / 1e9
            if waited >= WAITING_AFTER_S:
                return (
                    f"● waiting for the first token · {waited:.0f} s of the "
                    f"{t.first_token:g} s first-token timeout"
                )
        elif self.t_last is not None:
            silent = (now_ns - self.t_last) / 1e9
            if silent >= max(WAITING_AFTER_S, self.stall_s):
                return (
                    f"● streaming · {elapsed} · waiting: no token for {silent:.0f} s of the "
                    f"{t.idle:g} s idle timeout"
                )
        return f"● streaming · {elapsed}"

    def spark_rates(self) -> list[float]:
        """Decode rate (tok/s) per bucket, for the sparkline.

        The last bucket is only partly over (still filling, or cut short by the reply's end):
        its rate is over the time it covers up to the last token, and it is left out while
        that is under a fifth of a bucket (it would show a dip that never happened).
        """
        scale = 1e9 / SPARK_BUCKET_NS
        rates = [c * scale for c in self.spark[:-1]]
        if self.spark and self.t_first is not None and self.t_last is not None:
            start = self.t_first + (len(self.spark) - 1) * SPARK_BUCKET_NS
            # n tokens span n - 1 gaps: add one mean gap, or a short bucket reads high.
            gap = (self.t_last - self.t_first) / max(1, self.token_events - 1)
            covered = self.t_last - start + gap
            if covered >= SPARK_BUCKET_NS // 5:
                rates.append(self.spark[-1] * 1e9 / covered)
        return rates

    def final(self) -> RunMetrics:
        """The metrics of DESIGN §4 from every event (computed once the reply is over)."""
        if self._final is not None and self.done:
            return self._final
        m = compute_metrics(
            self.events,
            t_submit_ns=self.t_submit_ns,
            price=self.price,
            stall_s=self.stall_s,
            prompt_estimate=self.prompt_estimate,
        )
        if self.done:
            self._final = m
        return m

    def _tool_calls(self) -> list[ToolCall]:
        return fold(self.events).tool_calls if self._has_tool_calls else []

    def turn(self) -> Turn:
        """The assistant turn this run produced (so far)."""
        err = self._error
        return Turn(
            id=self.message_id,
            role="assistant",
            content=self.text,
            model=self.model,
            reasoning=self.reasoning,
            status=self.status,
            error=err.message if err else None,
            metrics=self.final() if self.done else None,
            tool_calls=tuple(self._tool_calls()),
        )

    def checkpoint_due(self, now: float | None = None) -> bool:
        """Whether unsaved events should be saved now: the first token at once, then (and
        before it, for a slow first token) at least every ``CHECKPOINT_S``."""
        if len(self.events) == self._saved_events:
            return False
        if self.token_events and not self._saved_tokens:
            return True
        now = time.monotonic() if now is None else now
        return now - (self._saved_at or self._created_at) >= CHECKPOINT_S

    def maybe_checkpoint(
        self,
        store: Store | None,
        conv: Conversation,
        params: dict[str, Any],
        race_id: str | None = None,
    ) -> bool:
        """Checkpoint when due (see ``checkpoint_due``); True if it did."""
        if store is None or not self.checkpoint_due():
            return False
        self.checkpoint(store, conv, params, race_id)
        return True

    def partial_metrics(self, now_ns: int | None = None) -> RunMetrics:
        """The figures known so far, cheap (no pass over the events): saved with checkpoints,
        so a reply whose process died still has its TTFT and tokens."""
        f = self.live(time.perf_counter_ns() if now_ns is None else now_ns)
        return replace(
            EMPTY_METRICS,
            ttft_ms=f.ttft_ms,
            decode_tps=f.decode_tps,
            e2e_ms=(self.t_last - self.t0) / 1e6 if self.t_last and self.t0 else None,
            client_overhead_ms=(self.t0 - self.t_submit_ns) / 1e6 if self.t0 else None,
            output_tokens=f.tokens if self.token_events else None,
            cost_usd=f.cost_usd if self.token_events else None,
            token_events=self.token_events,
        )

    def checkpoint(
        self,
        store: Store | None,
        conv: Conversation,
        params: dict[str, Any],
        race_id: str | None = None,
    ) -> None:
        """Save the reply and its run as they are now (the message row once text exists)."""
        if store is None:
            return
        self._saved_at = time.monotonic()
        self._saved_events = len(self.events)
        self._saved_tokens = self.token_events
        conv.ensure_saved(store)
        status = self.status
        err = self._error
        calls = self._tool_calls() if self.done else []
        has_message = bool(self.text_len or self._reasoning or self.done)
        if has_message:
            if self.parent_id is None:
                # The turn before this reply on its branch (the reply itself may be there).
                self.parent_id = next(
                    (t.id for t in reversed(conv.turns(self.pane)) if t.id != self.message_id),
                    None,
                )
            store.save_message(
                self.message_id,
                conv.id,
                "assistant",
                self.text,
                model=self.model,
                reasoning=self.reasoning,
                status=status,
                error=err.message if err else None,
                pane=self.pane,
                **({"tool_calls": calls_to_json(calls)} if calls else {}),
                parent_id=self.parent_id,
            )
        m = self.final() if self.done else self.partial_metrics()
        timings = None
        st = self._server_timings
        if st is not None:
            timings = dict(st.values)
        store.save_run(
            self.run_id,
            message_id=self.message_id if has_message else None,
            conv_id=conv.id,
            model=self.model,
            endpoint=self.endpoint,
            params=params,
            metrics=m,
            status=status,
            started_at=self.started_at,
            finished_at=time.time() if self.done else None,
            error_kind=err.kind if err else None,
            race_id=race_id,
            pane=self.pane,
            server_timings=timings,
        )

"""The SQLite store: conversations, messages, runs, prompt history and verdicts (DESIGN §6).

One writer thread owns every write, so the UI never waits on the disk; reads use their own
connection (WAL mode lets them run beside the writer). A write that fails (full disk, a
database locked past ``busy_timeout``) is reported through ``on_error`` and retried, and the
conversation stays on screen: the UI holds its own copy. Ids are made by the caller (time-ordered
integers that carry the process id, see ``new_id``), so an insert never has to wait for the
database to answer and two processes sharing the database never make the same id.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from providers.attachments import Image
from providers.chunks import well_formed
from providers.metrics import METRIC_NAMES, RunMetrics
from tui.session.salvage import (
    TABLES,
    Salvaged,
    is_corruption,
    merge_unsaved,
    salvage,
    save_elsewhere,
)

_T = TypeVar("_T")

BUSY_TIMEOUT_MS = 3000
RETRY_DELAY_S = 1.0

ID_EPOCH_MS = 1_577_836_800_000  # 2020-01-01 UTC
PID_BITS = 22  # Linux pids are below 2**22 (PID_MAX_LIMIT); macOS's below 100,000
# Migration 2's mapping of an id of the first scheme (any id from 10**18 up) to the second.
_OLD_ID = (
    "(CASE WHEN {c} >= 1000000000000000000 THEN "
    f"(({{c}} / 1000000) - {ID_EPOCH_MS}) * {2**PID_BITS} + ({{c}} % 1000000) ELSE {{c}} END)"
)

# The figures RunMetrics gained after the first schema, so that a run keeps every one of them.
ADD_METRIC_COLUMNS = """
    ALTER TABLE runs ADD COLUMN cache_write_tokens INTEGER;
    ALTER TABLE runs ADD COLUMN prefill_tps REAL
    """

# Images attached to user messages (issue 17), and what the server said they cost. The bytes
# are kept, not a path: a file moved, edited or deleted after sending would make a resumed
# conversation send another image, or none, and an export lose it. Each distinct image is kept
# once (a race attaches it to every pane's copy of the prompt, and a suite to every run), under
# an id made from its SHA-256, so two processes that save the same image name it alike (the
# unsaved-writes merge and the salvage copy rows by id).
ADD_ATTACHMENTS = """
    CREATE TABLE images(
        id INTEGER PRIMARY KEY,
        sha256 TEXT NOT NULL,
        mime TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE attachments(
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        image_id INTEGER NOT NULL
    );
    CREATE INDEX attachments_by_message ON attachments(message_id, position);
    ALTER TABLE runs ADD COLUMN image_tokens INTEGER
"""

# A reply's tool calls (issue 17), as JSON [{id, name, arguments}]: shown again on resume and sent
# back as text in later turns. Empty for every reply before it.
TOOL_CALLS_MIGRATION = """
    ALTER TABLE messages ADD COLUMN tool_calls TEXT NOT NULL DEFAULT ''
"""

# The figures issue 17 adds to a run: time to first tool call, tool calls and the cost split
# (input / cached / cache write / output); the prompt-cache write and the prefill rate came
# with ADD_METRIC_COLUMNS.
RUN_FIGURES_MIGRATION = """
    ALTER TABLE runs ADD COLUMN ttft_tool_ms REAL;
    ALTER TABLE runs ADD COLUMN tool_calls INTEGER;
    ALTER TABLE runs ADD COLUMN cost_input_usd REAL;
    ALTER TABLE runs ADD COLUMN cost_cached_usd REAL;
    ALTER TABLE runs ADD COLUMN cost_cache_write_usd REAL;
    ALTER TABLE runs ADD COLUMN cost_output_usd REAL
"""

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE conversations(
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL DEFAULT '',
        mode TEXT NOT NULL DEFAULT 'chat',
        settings TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE messages(
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        pane INTEGER NOT NULL DEFAULT 0,
        role TEXT NOT NULL,
        model TEXT,
        content TEXT NOT NULL DEFAULT '',
        reasoning TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'complete',
        error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, pane, id);
    CREATE TABLE runs(
        id INTEGER PRIMARY KEY,
        message_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
        conversation_id INTEGER REFERENCES conversations(id) ON DELETE CASCADE,
        race_id TEXT,
        pane INTEGER NOT NULL DEFAULT 0,
        model TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL,
        error_kind TEXT,
        started_at REAL NOT NULL,
        finished_at REAL,
        ttft_ms REAL, ttfo_ms REAL, decode_tps REAL, e2e_ms REAL,
        client_overhead_ms REAL, connect_ms REAL,
        output_tokens INTEGER, output_tokens_estimated INTEGER,
        input_tokens INTEGER, cached_tokens INTEGER, reasoning_tokens INTEGER,
        itl_p50_ms REAL, itl_p95_ms REAL, itl_max_ms REAL,
        stalls INTEGER, retries INTEGER, retry_wait_ms REAL,
        cost_usd REAL, cost_reported INTEGER, overall_tps REAL,
        token_events INTEGER, finish_reason TEXT,
        server_timings TEXT
    );
    CREATE INDEX runs_by_model ON runs(model, started_at);
    CREATE TABLE prompt_history(
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER,
        text TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX prompt_history_by_time ON prompt_history(created_at);
    CREATE TABLE verdicts(
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER REFERENCES conversations(id) ON DELETE CASCADE,
        race_id TEXT NOT NULL,
        winner TEXT NOT NULL,
        models TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 2: the process that streams a run, so a reply left `streaming` by a process that is gone
    # (killed, the terminal closed) is known to be over: it is then marked `interrupted`.
    """
    ALTER TABLE runs ADD COLUMN pid INTEGER
    """,
    # 3: ids that cannot collide across processes (see new_id); old ids, microseconds × 1000 +
    # a per-process counter, become (milliseconds since ID_EPOCH) << 22 | their sub-millisecond
    # part: unique, in the same order, and below every id made from now on.
    "PRAGMA defer_foreign_keys = ON;"
    + "".join(
        f"UPDATE {table} SET {', '.join(f'{c} = {_OLD_ID.format(c=c)}' for c in cols)};"
        for table, cols in (
            ("conversations", ("id",)),
            ("messages", ("id", "conversation_id")),
            ("runs", ("id", "message_id", "conversation_id")),
            ("prompt_history", ("id", "conversation_id")),
            ("verdicts", ("id", "conversation_id")),
        )
    ),
    ADD_METRIC_COLUMNS,
    ADD_ATTACHMENTS,
    TOOL_CALLS_MIGRATION,
    RUN_FIGURES_MIGRATION,
)

# Verdicts given in a blind race are kept apart from sighted ones (the leaderboard shows them
# apart), and a conversation keeps its blind race's state (labels hidden or revealed, what the
# user chose to see), so an unrevealed blind race stays blind when it is resumed.
BLIND_RACES = """
    ALTER TABLE verdicts ADD COLUMN blind INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN blind TEXT
    """
MIGRATIONS = (*MIGRATIONS, BLIND_RACES)

# Conversations become trees: each message names its parent (the message before it in its
# pane), so an edited prompt or a fork is a new branch beside the old one and nothing is
# overwritten; ``branch`` holds, per pane, the message the branch last used starts from.
# Stored conversations were lines: each message's parent is the one before it in its pane.
CONVERSATION_TREES = """
    ALTER TABLE messages ADD COLUMN parent_id INTEGER;
    ALTER TABLE conversations ADD COLUMN branch TEXT;
    UPDATE messages SET parent_id = (
        SELECT MAX(p.id) FROM messages p
        WHERE p.conversation_id = messages.conversation_id AND p.pane = messages.pane
        AND p.id < messages.id
    );
    CREATE INDEX messages_by_parent ON messages(parent_id)
    """
MIGRATIONS = (*MIGRATIONS, CONVERSATION_TREES)
ROOT = 0  # save_message's parent_id for the first message of a branch (stored as NULL)

INTERRUPTED_MESSAGE = "tokenrace stopped before the reply finished; the text received is kept"

# The runs table holds every figure of RunMetrics, one column each (migration ADD_METRIC_COLUMNS
# added the ones that came after the first schema).
METRIC_COLUMNS = METRIC_NAMES

_id_lock = threading.Lock()
_last_ms = 0


def new_id() -> int:
    """A time-ordered id no other process can make: milliseconds since 2020 << 22 | the pid.

    Two processes alive at once have different pids, so their ids differ; within a process the
    millisecond part only goes up (a burst of ids runs ahead of the clock by a millisecond
    each, and the clock catches up).
    """
    global _last_ms
    with _id_lock:
        ms: int = max(time.time_ns() // 1_000_000 - ID_EPOCH_MS, _last_ms + 1)
        _last_ms = ms
        return ms << PID_BITS | (os.getpid() & ((1 << PID_BITS) - 1))


def image_id(sha256: str) -> int:
    """An image's row id: the first 60 bits of its SHA-256 (the same in every process)."""
    return int(sha256[:15], 16)


class StoreError(Exception):
    """The database cannot be opened or migrated."""


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the pragmas every connection here uses."""
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.row_factory = sqlite3.Row
    return conn


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> int:
    """Bring the schema up to date (or to version ``upto``) with the numbered migrations;
    returns the version."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise StoreError(f"the history database is from a newer tokenrace (schema {version})")
    last = len(MIGRATIONS) if upto is None else min(upto, len(MIGRATIONS))
    for number, script in enumerate(MIGRATIONS[version:last], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return max(version, last)


@dataclass(frozen=True, slots=True)
class ConversationRow:
    """A conversation as the list screen shows it."""

    id: int
    title: str
    mode: str
    settings: dict[str, Any]
    created_at: float
    updated_at: float
    messages: int = 0
    blind: dict[str, Any] | None = None  # a blind race's state (tui.session.blind)
    branch: dict[str, Any] | None = None  # per pane, where the branch last used starts


# A queued write; what it returns (a cursor, say) is dropped.
Op = Callable[[sqlite3.Connection], object]


class Store:
    """The history database behind a single writer thread."""

    def __init__(self, path: Path, on_error: Callable[[str], None] | None = None):
        self.path = path
        self.on_error = on_error
        self._queue: queue.Queue[Op | None] = queue.Queue()
        self._error_shown: str | None = None
        self.failed_writes = 0
        # Held by the writer while it runs a write, and by a salvage while it swaps files.
        self._lock = threading.RLock()
        self._current: Op | None = None  # the write being tried (kept if quitting stops it)
        self.salvaged: Salvaged | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._open()
            except sqlite3.DatabaseError as exc:
                if not is_corruption(exc):
                    raise
                self._salvage(exc)
            self._merge_unsaved()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the history database {path}: {exc}") from exc
        except OSError as exc:
            raise StoreError(
                f"cannot open the history database {path}: {exc.strerror or exc}"
            ) from exc
        try:
            self.recovered = recover_interrupted(self._read)
        except sqlite3.Error:
            self.recovered = []  # a locked database: the next start looks again
        self._thread = threading.Thread(target=self._run, name="tokenrace-store", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        self._read = connect(self.path)
        migrate(self._read)
        # A damaged page is often found only by a read: look at every table once, now.
        for table in TABLES:
            self._read.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        self._write = connect(self.path)

    # --- damage and refusal --------------------------------------------------------------

    def _salvage(self, cause: sqlite3.DatabaseError) -> None:
        """Replace a damaged file by a fresh one holding every readable row; say so."""
        with self._lock:
            for name in ("_read", "_write"):
                conn = getattr(self, name, None)
                if conn is not None:
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()
            self.salvaged = salvage(self.path, _at_version)
            self._open()
        self._report(self.salvaged.message(str(cause)))

    def _merge_unsaved(self) -> None:
        """Merge the writes an earlier session could not save (see ``close``)."""
        merged, problems = merge_unsaved(self._read, self.path)
        if merged:
            self._report(
                f"merged {len(merged)} file(s) of writes an earlier session could not save "
                f"into {self.path}"
            )
        for problem in problems:
            self._report(f"could not merge unsaved history {problem}; the file is kept")

    def _read_safely(self, read: Callable[[], _T]) -> _T:
        """Run a read; if it finds the file damaged, salvage it and read again."""
        try:
            return read()
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise
            self._salvage(exc)
            return read()

    # --- the writer ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            op = self._queue.get()
            if op is None:
                return
            self._current = op
            salvaged = False
            while True:
                try:
                    try:
                        with self._lock:
                            op(self._write)
                    except sqlite3.DatabaseError as exc:
                        if salvaged or not is_corruption(exc):
                            raise
                        # The file is damaged: salvage it; this write goes to the fresh one.
                        salvaged = True
                        with contextlib.suppress(sqlite3.Error):
                            self._write.execute("ROLLBACK")
                        self._salvage(exc)
                        continue
                    if self._error_shown is not None:
                        self._error_shown = None
                        self._report("saving works again; nothing was lost")
                    break
                except sqlite3.OperationalError as exc:
                    # Full disk, I/O error, locked past busy_timeout: keep the op and retry.
                    self.failed_writes += 1
                    self._report_once(_explain(exc, self.path))
                    try:
                        self._write.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                    if self._stop_requested():
                        return  # ``close`` saves this write (``_current``) elsewhere
                    time.sleep(RETRY_DELAY_S)
                except Exception as exc:
                    # Any other failure (a constraint, a value SQLite cannot hold, a bug of
                    # ours) skips this one write: the thread must live on, or nothing more
                    # is saved this session.
                    self.failed_writes += 1
                    self._report(
                        "a write to the history database failed and was skipped "
                        f"({type(exc).__name__}: {exc}); later writes continue"
                    )
                    if self._write.in_transaction:
                        try:
                            self._write.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass
                    break
            self._current = None
            self._queue.task_done()

    def _stop_requested(self) -> bool:
        return getattr(self, "_closing", False)

    def _report(self, message: str) -> None:
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:
                pass

    def _report_once(self, message: str) -> None:
        if message != self._error_shown:
            self._error_shown = message
            self._report(message)

    def submit(self, op: Op) -> None:
        """Queue a write."""
        self._queue.put(op)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued write is done (or failed for good); False on timeout."""
        done = threading.Event()
        self._queue.put(lambda _conn: done.set())
        return done.wait(timeout)

    def close(self, wait_s: float = 10.0) -> str | None:
        """Finish queued writes and close. Writes the database still refuses after ``wait_s``
        (another program holds its lock) are saved to a file beside it, merged back at the
        next start; returns what the user must be told about that, or None."""
        drained = self.flush(min(0.5, wait_s))
        if not drained:
            # The terminal is back to the shell by now: say why quitting takes a while.
            self._report(
                f"saving the last {self._queue.qsize()} writes to {self.path} "
                f"({self._error_shown or 'the database is busy'}); waiting up to {wait_s:g} s"
            )
            drained = self.flush(wait_s)
        self._closing = True
        self._queue.put(None)
        self._thread.join(3.0 + BUSY_TIMEOUT_MS / 1000)
        unsaved: list[Op] = []
        if not drained:
            if self._current is not None:
                unsaved.append(self._current)
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    unsaved.append(item)
        for conn in (self._read, self._write):
            try:
                conn.close()
            except sqlite3.Error:
                pass
        if not unsaved:
            return None
        why = self._error_shown or "the history database did not answer"
        try:
            target, failures = save_elsewhere(self.path, unsaved, lambda c: _at_version(c, None))
        except (sqlite3.Error, OSError) as exc:
            message = f"{len(unsaved)} writes could not be saved ({why}), nor elsewhere: {exc}"
        else:
            lost = f" ({failures} of them failed there too)" if failures else ""
            message = (
                f"{len(unsaved)} writes could not be saved to {self.path} ({why}); they were "
                f"saved to {target}{lost} and are merged into the history the next time "
                "tokenrace starts"
            )
        self._report(message)
        return message

    # --- writes --------------------------------------------------------------------------

    def create_conversation(
        self,
        conv_id: int,
        title: str = "",
        mode: str = "chat",
        settings: Mapping[str, Any] | None = None,
        blind: Mapping[str, Any] | None = None,
    ) -> None:
        now = time.time()
        data = json.dumps(dict(settings or {}))
        race = json.dumps(dict(blind)) if blind is not None else None

        def op(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT OR IGNORE INTO conversations(id, title, mode, settings, created_at, "
                "updated_at, blind) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conv_id, title, mode, data, now, now, race),
            )

        self.submit(op)

    def update_conversation(
        self,
        conv_id: int,
        *,
        title: str | None = None,
        settings: Mapping[str, Any] | None = None,
        blind: Mapping[str, Any] | None = None,
        branch: Mapping[str, Any] | None = None,
    ) -> None:
        now = time.time()
        data = json.dumps(dict(settings)) if settings is not None else None
        race = json.dumps(dict(blind)) if blind is not None else None
        tips = json.dumps(dict(branch)) if branch is not None else None

        def op(c: sqlite3.Connection) -> None:
            if tips is not None:
                c.execute(
                    "UPDATE conversations SET branch = ?, updated_at = ? WHERE id = ?",
                    (tips, now, conv_id),
                )
            if race is not None:
                c.execute("UPDATE conversations SET blind = ? WHERE id = ?", (race, conv_id))
            if title is not None:
                c.execute(
                    "UPDATE conversations SET title = ?, updated_at = ? WHERE id = ?",
                    (title, now, conv_id),
                )
            if data is not None:
                c.execute(
                    "UPDATE conversations SET settings = ?, updated_at = ? WHERE id = ?",
                    (data, now, conv_id),
                )

        self.submit(op)

    def delete_conversation(self, conv_id: int) -> None:
        def op(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM conversations WHERE id = ?", (conv_id,))
            c.execute("DELETE FROM images WHERE id NOT IN (SELECT image_id FROM attachments)")

        self.submit(op)

    def save_message(
        self,
        msg_id: int,
        conv_id: int,
        role: str,
        content: str,
        *,
        model: str | None = None,
        reasoning: str = "",
        status: str = "complete",
        error: str | None = None,
        pane: int = 0,
        tool_calls: str | None = None,
        parent_id: int | None = None,
    ) -> None:
        """Insert or update a message with its full current text (a checkpoint); ``tool_calls``
        (JSON, see providers.tools.calls_to_json) is written only when given.

        Its parent (the message before it on its branch) is set when it is inserted:
        ``parent_id``, or ``ROOT`` for the first message of a branch; left out, the pane's
        latest message (a line, as every message was before conversations became trees)."""
        now = time.time()

        def op(c: sqlite3.Connection) -> None:
            # Text with a lone surrogate is stored with U+FFFD in its place (UTF-8 cannot
            # hold it); done here, in the writer thread, off the UI's loop.
            text, thought = well_formed(content), well_formed(reasoning)
            why = well_formed(error) if error is not None else None
            parent: int | None = parent_id or None
            if parent_id is None:
                # A caller that does not name the parent continues its pane's line.
                last = c.execute(
                    "SELECT id FROM messages WHERE conversation_id = ? AND pane = ? AND id != ? "
                    "ORDER BY created_at DESC, id DESC LIMIT 1",
                    (conv_id, pane, msg_id),
                ).fetchone()
                parent = last[0] if last else None
            c.execute("BEGIN IMMEDIATE")
            c.execute(
                "INSERT INTO messages(id, conversation_id, pane, role, model, content, reasoning, "
                "status, error, created_at, updated_at, parent_id) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET content = excluded.content, "
                "reasoning = excluded.reasoning, status = excluded.status, "
                "error = excluded.error, model = excluded.model, updated_at = excluded.updated_at",
                (msg_id, conv_id, pane, role, model, text, thought, status, why, now, now, parent),
            )
            if tool_calls is not None:
                c.execute(
                    "UPDATE messages SET tool_calls = ? WHERE id = ?",
                    (well_formed(tool_calls), msg_id),
                )
            c.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conv_id))
            c.execute("COMMIT")

        self.submit(op)

    def save_attachments(self, msg_id: int, images: Sequence[Image]) -> None:
        """Attach ``images`` to message ``msg_id`` (each distinct image's bytes kept once)."""
        if not images:
            return
        rows = [(image_id(img.sha256), img) for img in images]

        def op(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")
            for position, (iid, img) in enumerate(rows):
                c.execute(
                    "INSERT OR IGNORE INTO images(id, sha256, mime, width, height, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (iid, img.sha256, img.mime, img.width, img.height, img.data),
                )
                c.execute(
                    "INSERT OR REPLACE INTO attachments(id, message_id, position, name, image_id) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (new_id(), msg_id, position, well_formed(img.name), iid),
                )
            c.execute("COMMIT")

        self.submit(op)

    def save_run(
        self,
        run_id: int,
        *,
        message_id: int | None,
        conv_id: int | None,
        model: str,
        endpoint: str,
        params: Mapping[str, Any],
        metrics: RunMetrics | None,
        status: str,
        started_at: float,
        finished_at: float | None = None,
        error_kind: str | None = None,
        race_id: str | None = None,
        pane: int = 0,
        server_timings: Mapping[str, float] | None = None,
    ) -> None:
        """Insert or update a run with every metric of DESIGN §4."""
        values: dict[str, Any] = dict.fromkeys(METRIC_COLUMNS)
        if metrics is not None:
            for col in METRIC_COLUMNS:
                v = getattr(metrics, col)
                values[col] = int(v) if isinstance(v, bool) else v
        row = {
            "id": run_id,
            "message_id": message_id,
            "conversation_id": conv_id,
            "race_id": race_id,
            "pane": pane,
            "model": model,
            "endpoint": endpoint,
            "params": json.dumps(dict(params)),
            "status": status,
            "error_kind": error_kind,
            "started_at": started_at,
            "finished_at": finished_at,
            "server_timings": json.dumps(dict(server_timings)) if server_timings else None,
            "pid": os.getpid(),
            **values,
        }
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        updates = ", ".join(f"{k} = excluded.{k}" for k in row if k != "id")
        sql = f"INSERT INTO runs({cols}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET {updates}"
        args = tuple(row.values())

        def op(c: sqlite3.Connection) -> None:
            c.execute(sql, args)

        self.submit(op)

    def add_prompt(self, text: str, conv_id: int | None) -> None:
        now = time.time()

        def op(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO prompt_history(id, conversation_id, text, created_at) "
                "VALUES (?, ?, ?, ?)",
                (new_id(), conv_id, well_formed(text), now),
            )

        self.submit(op)

    def save_verdict(
        self,
        conv_id: int | None,
        race_id: str,
        winner: str,
        models: Iterable[str],
        *,
        blind: bool = False,
    ) -> None:
        now = time.time()
        data = json.dumps(list(models))

        def op(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO verdicts(id, conversation_id, race_id, winner, models, "
                "created_at, blind) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (new_id(), conv_id, race_id, winner, data, now, int(blind)),
            )

        self.submit(op)

    # --- reads ---------------------------------------------------------------------------

    def conversations(self, search: str | None = None, limit: int = 500) -> list[ConversationRow]:
        """Conversations, newest first; ``search`` matches titles and message text."""
        return self._read_safely(lambda: self._conversations(search, limit))

    def _conversations(self, search: str | None, limit: int) -> list[ConversationRow]:
        """Conversations, newest first; ``search`` matches titles and message text."""
        sql = (
            "SELECT c.*, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) "
            "AS n FROM conversations c"
        )
        args: list[Any] = []
        if search:
            sql += (
                " WHERE c.title LIKE ? OR EXISTS (SELECT 1 FROM messages m WHERE "
                "m.conversation_id = c.id AND m.content LIKE ?)"
            )
            like = f"%{search}%"
            args += [like, like]
        sql += " ORDER BY c.updated_at DESC LIMIT ?"
        args.append(limit)
        return [
            ConversationRow(
                r["id"],
                r["title"],
                r["mode"],
                _json(r["settings"]),
                r["created_at"],
                r["updated_at"],
                r["n"],
                _json_or_none(r["blind"]),
                _json_or_none(r["branch"]),
            )
            for r in self._read.execute(sql, args)
        ]

    def conversation(self, conv_id: int) -> ConversationRow | None:
        return self._read_safely(lambda: self._conversation(conv_id))

    def _conversation(self, conv_id: int) -> ConversationRow | None:
        r = self._read.execute("SELECT * FROM conversations WHERE id = ?", (conv_id,)).fetchone()
        if r is None:
            return None
        return ConversationRow(
            r["id"],
            r["title"],
            r["mode"],
            _json(r["settings"]),
            r["created_at"],
            r["updated_at"],
            blind=_json_or_none(r["blind"]),
            branch=_json_or_none(r["branch"]),
        )

    def latest_conversation(self) -> int | None:
        r = self._read_safely(
            lambda: self._read.execute(
                "SELECT id FROM conversations ORDER BY updated_at DESC LIMIT 1"
            ).fetchone()
        )
        return int(r["id"]) if r else None

    def messages(self, conv_id: int) -> list[sqlite3.Row]:
        return self._read_safely(
            lambda: list(
                self._read.execute(
                    "SELECT * FROM messages WHERE conversation_id = ? ORDER BY pane, id",
                    (conv_id,),
                )
            )
        )

    def images(self, conv_id: int) -> dict[int, list[Image]]:
        """The images attached to each message of a conversation, by message id, in order."""
        return self._read_safely(lambda: self._images(conv_id))

    def _images(self, conv_id: int) -> dict[int, list[Image]]:
        out: dict[int, list[Image]] = {}
        for r in self._read.execute(
            "SELECT a.message_id, a.name, i.mime, i.width, i.height, i.data FROM attachments a "
            "JOIN messages m ON m.id = a.message_id JOIN images i ON i.id = a.image_id "
            "WHERE m.conversation_id = ? ORDER BY a.message_id, a.position",
            (conv_id,),
        ):
            img = Image(r["name"], r["mime"], bytes(r["data"]), r["width"], r["height"])
            out.setdefault(int(r["message_id"]), []).append(img)
        return out

    def runs(self, conv_id: int | None = None, model: str | None = None) -> list[sqlite3.Row]:
        return self._read_safely(lambda: self._runs(conv_id, model))

    def _runs(self, conv_id: int | None, model: str | None) -> list[sqlite3.Row]:
        sql = "SELECT * FROM runs"
        clauses: list[str] = []
        args: list[Any] = []
        if conv_id is not None:
            clauses.append("conversation_id = ?")
            args.append(conv_id)
        if model is not None:
            clauses.append("model = ?")
            args.append(model)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return list(self._read.execute(sql + " ORDER BY started_at", args))

    def run_for_message(self, message_id: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._read_safely(
            lambda: self._read.execute(
                "SELECT * FROM runs WHERE message_id = ? ORDER BY started_at DESC LIMIT 1",
                (message_id,),
            ).fetchone()
        )
        return row

    def prompts(self, limit: int = 5000) -> list[str]:
        """Past prompts across conversations, newest first, without repeats."""
        return self._read_safely(
            lambda: [
                r["text"]
                for r in self._read.execute(
                    "SELECT text, MAX(created_at) AS t FROM prompt_history GROUP BY text "
                    "ORDER BY t DESC LIMIT ?",
                    (limit,),
                )
            ]
        )

    def verdicts(self, conv_id: int | None = None) -> list[sqlite3.Row]:
        return self._read_safely(lambda: self._verdicts(conv_id))

    def _verdicts(self, conv_id: int | None) -> list[sqlite3.Row]:
        if conv_id is None:
            return list(self._read.execute("SELECT * FROM verdicts ORDER BY created_at"))
        return list(
            self._read.execute(
                "SELECT * FROM verdicts WHERE conversation_id = ? ORDER BY created_at", (conv_id,)
            )
        )


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (this one included)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge, so alive
    except OSError:
        return False
    return True


def recover_interrupted(
    conn: sqlite3.Connection, alive: Callable[[int], bool] = process_alive
) -> list[sqlite3.Row]:
    """Mark replies left ``streaming`` by a process that is gone as ``interrupted``.

    Their text is what the last checkpoint saved. Returns their runs (as rows, already
    updated), so the caller can log them to the metrics log like any other finished run.
    """
    runs = conn.execute(
        "SELECT id, message_id, pid FROM runs WHERE status = 'streaming'"
    ).fetchall()
    dead = [r for r in runs if r["pid"] is None or not alive(int(r["pid"]))]
    live_messages = {r["message_id"] for r in runs if r not in dead and r["message_id"]}
    orphans = [
        r["id"]
        for r in conn.execute("SELECT id FROM messages WHERE status = 'streaming'")
        if r["id"] not in live_messages
    ]
    if not dead and not orphans:
        return []
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        for r in dead:
            conn.execute(
                "UPDATE runs SET status = 'interrupted', error_kind = 'interrupted', "
                "finished_at = COALESCE(finished_at, ?) WHERE id = ? AND status = 'streaming'",
                (now, r["id"]),
            )
        for msg_id in orphans:
            conn.execute(
                "UPDATE messages SET status = 'interrupted', error = COALESCE(error, ?) "
                "WHERE id = ? AND status = 'streaming'",
                (INTERRUPTED_MESSAGE, msg_id),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    ids = [r["id"] for r in dead]
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    return list(conn.execute(f"SELECT * FROM runs WHERE id IN ({marks})", ids))


def _at_version(conn: sqlite3.Connection, version: int | None) -> None:
    """The schema as it was at ``version`` (all of it for None), on a fresh file."""
    migrate(conn, upto=version)


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _json_or_none(text: str | None) -> dict[str, Any] | None:
    return _json(text) if text else None


def _explain(exc: sqlite3.OperationalError, path: Path) -> str:
    text = str(exc)
    low = text.lower()
    if "full" in low:
        return (
            f"cannot save history: the disk is full ({path.parent}); the conversation "
            "stays on screen and saving resumes when space is freed"
        )
    if "locked" in low or "busy" in low:
        return (
            f"cannot save history: the database is locked by another program ({path}); "
            "retrying every second, nothing on screen is lost"
        )
    if "readonly" in low or "read-only" in low:
        return f"cannot save history: {path} is read-only; the conversation stays on screen"
    return f"cannot save history ({text}); retrying, nothing on screen is lost"

"""When the history database breaks: salvage what can be read, keep what could not be written.

A damaged file (``database disk image is malformed``) is read row by row, every id found in the
table or its index tried on its own, into a fresh database; the damaged file is kept beside it
as ``history.db.corrupt-<time>``. Writes that could not reach the database when the app quit
(another program held its lock) go to ``history-unsaved-<time>.db`` and are merged back into the
history at the next start.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

TABLES = (
    "conversations",
    "messages",
    "runs",
    "prompt_history",
    "verdicts",
    "images",
    "attachments",
)
_INDEXES = {
    "messages": "messages_by_conversation",
    "runs": "runs_by_model",
    "prompt_history": "prompt_history_by_time",
}
_CORRUPT, _NOTADB = 11, 26  # SQLite's primary result codes
UNSAVED_GLOB = "history-unsaved-*.db"

# A queued write, as tui.session.store has it; what it returns is dropped.
Op = Callable[[sqlite3.Connection], object]


def is_corruption(exc: BaseException) -> bool:
    """Whether ``exc`` says the database file itself is damaged (not busy, not full)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in (_CORRUPT, _NOTADB):
        return True
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


@dataclass
class Salvaged:
    """What a salvage did: rows saved per table, rows that could not be read, where things are."""

    path: Path
    damaged: Path
    rows: dict[str, int] = field(default_factory=dict)
    lost: int = 0

    def message(self, cause: str) -> str:
        """What the user is told: what happened, both paths, and what to do."""
        saved = sum(self.rows.get(t, 0) for t in ("conversations", "messages", "runs"))
        lost = f"; {self.lost} damaged rows could not be read" if self.lost else ""
        return (
            f"the history database was damaged ({cause}): {saved} readable rows "
            f"({self.rows.get('conversations', 0)} conversations, "
            f"{self.rows.get('messages', 0)} messages) were saved into a fresh {self.path}{lost}. "
            f"The damaged file is kept as {self.damaged}: nothing else to do; to try for more, "
            f"run `sqlite3 {self.damaged} .recover | sqlite3 recovered.db`"
        )


def _ids(old: sqlite3.Connection, table: str) -> set[int]:
    """Every id that can still be read for ``table``: from the table, and from its index."""
    found: set[int] = set()
    queries = [f"SELECT id FROM {table} NOT INDEXED"]
    if table in _INDEXES:
        queries.append(f"SELECT id FROM {table} INDEXED BY {_INDEXES[table]}")
    if table == "conversations":
        queries.append(
            "SELECT DISTINCT conversation_id FROM messages INDEXED BY messages_by_conversation"
        )
    for sql in queries:
        try:
            for (i,) in old.execute(sql):  # a damaged page stops the scan: keep what came first
                if isinstance(i, int):
                    found.add(i)
        except sqlite3.DatabaseError:
            pass
    return found


def salvage(path: Path, schema: Callable[[sqlite3.Connection, int], None]) -> Salvaged:
    """Copy the readable rows of the damaged ``path`` into a fresh file that takes its place.

    ``schema(conn, version)`` creates the tables as they were at the damaged file's version,
    so the store's migrations then run on the salvaged rows as on any other database.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    damaged = path.with_name(f"{path.name}.corrupt-{stamp}")
    fresh = path.with_name(f"{path.name}.salvage-{stamp}-{os.getpid()}")
    result = Salvaged(path=path, damaged=damaged)
    old = sqlite3.connect(path, timeout=3.0, isolation_level=None)
    new = sqlite3.connect(fresh, isolation_level=None)
    try:
        try:
            version = int(old.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError:
            version = 0
        schema(new, version)
        new.execute("PRAGMA foreign_keys = OFF")
        new.execute("BEGIN")
        for table in TABLES:
            result.rows[table] = 0
            try:
                cols = [r[1] for r in new.execute(f"PRAGMA table_info({table})")]
                have = {r[1] for r in old.execute(f"PRAGMA table_info({table})")}
            except sqlite3.DatabaseError:
                continue
            cols = [c for c in cols if c in have]
            if "id" not in cols:
                continue
            names = ", ".join(cols)
            marks = ", ".join("?" for _ in cols)
            for i in sorted(_ids(old, table)):
                try:
                    row = old.execute(f"SELECT {names} FROM {table} WHERE id = ?", (i,)).fetchone()
                except sqlite3.DatabaseError:
                    result.lost += 1
                    continue
                if row is None:
                    continue
                new.execute(f"INSERT OR IGNORE INTO {table}({names}) VALUES ({marks})", row)
                result.rows[table] += 1
        # Rows whose conversation or message row was lost keep a place to belong to.
        for table in ("messages", "runs", "prompt_history", "verdicts"):
            new.execute(
                "INSERT OR IGNORE INTO conversations(id, title, created_at, updated_at) "
                f"SELECT conversation_id, '(recovered)', MIN(created_at), MAX(created_at) "
                f"FROM {table} WHERE conversation_id IS NOT NULL AND conversation_id NOT IN "
                "(SELECT id FROM conversations) GROUP BY conversation_id"
                if table != "runs"
                else "INSERT OR IGNORE INTO conversations(id, title, created_at, updated_at) "
                "SELECT conversation_id, '(recovered)', MIN(started_at), MAX(started_at) "
                "FROM runs WHERE conversation_id IS NOT NULL AND conversation_id NOT IN "
                "(SELECT id FROM conversations) GROUP BY conversation_id"
            )
        new.execute(
            "UPDATE runs SET message_id = NULL WHERE message_id IS NOT NULL AND message_id NOT IN "
            "(SELECT id FROM messages)"
        )
        new.execute("COMMIT")
    finally:
        old.close()
        new.close()
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.replace(Path(f"{damaged}{suffix}"))
    fresh.replace(path)
    return result


def save_elsewhere(
    path: Path, ops: Iterable[Op], schema: Callable[[sqlite3.Connection], None]
) -> tuple[Path, int]:
    """Run writes the history database refused into a new file beside it; (file, failures)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"history-unsaved-{stamp}-{os.getpid()}.db")
    conn = sqlite3.connect(target, isolation_level=None)
    failures = 0
    try:
        schema(conn)
        conn.execute("PRAGMA foreign_keys = OFF")  # the conversation rows are in the main file
        for op in ops:
            try:
                op(conn)
            except Exception:
                failures += 1
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
    finally:
        conn.close()
    return target, failures


def merge_unsaved(conn: sqlite3.Connection, path: Path) -> tuple[list[Path], list[str]]:
    """Merge every ``history-unsaved-*.db`` beside ``path`` into ``conn``; (merged, problems).

    A later write of a row wins over the stored one (replies were saved as checkpoints)."""
    merged: list[Path] = []
    problems: list[str] = []
    for unsaved in sorted(path.parent.glob(UNSAVED_GLOB)):
        try:
            conn.execute("ATTACH DATABASE ? AS unsaved", (str(unsaved),))
        except sqlite3.Error as exc:
            problems.append(f"{unsaved}: {exc}")
            continue
        try:
            conn.execute("BEGIN IMMEDIATE")
            for table in TABLES:
                cols = [r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")]
                names = ", ".join(cols)
                updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "id")
                conn.execute(
                    f"INSERT INTO main.{table}({names}) SELECT {names} FROM unsaved.{table} "
                    f"WHERE true ON CONFLICT(id) DO UPDATE SET {updates}"
                )
            conn.execute("COMMIT")
            merged.append(unsaved)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            problems.append(f"{unsaved}: {exc}")
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("DETACH DATABASE unsaved")
    for done in merged:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(f"{done}{suffix}").unlink()
    return merged, problems

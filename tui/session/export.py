"""Export a stored conversation to Markdown or JSON, with each reply's model and metrics.

Exports are built from the store only (never from the config or the engine), and every string
goes through ``secrets.redact`` on the way out: an export never contains a key. The store keeps
replies as they arrived; an export is read on terminals (``cat``, a pager), so the Markdown
shows control characters as symbols (``providers.inert``, and says so when it did), and the
JSON escapes C1 controls and DEL as ``\\u`` (the same values, parsed).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from providers import paths, secrets
from providers.inert import inert, inert_label, json_inert
from tui.format import metrics_text
from tui.session.conversation import metrics_from_row
from tui.session.store import METRIC_COLUMNS, Store

SCHEMA_VERSION = 1


class ExportError(Exception):
    """The conversation cannot be exported (unknown id, unwritable file)."""


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def export_data(store: Store, conv_id: int) -> dict[str, Any]:
    """The conversation as plain data: settings, messages, and each reply's run."""
    conv = store.conversation(conv_id)
    if conv is None:
        raise ExportError(f"no conversation with id {conv_id}")
    messages = []
    for m in store.messages(conv_id):
        item: dict[str, Any] = {
            "id": m["id"],
            "pane": m["pane"],
            "role": m["role"],
            "model": m["model"],
            "status": m["status"],
            "content": m["content"],
            "reasoning": m["reasoning"] or None,
            "error": m["error"],
            "created_at": _when(m["created_at"]),
        }
        if m["role"] == "assistant":
            run = store.run_for_message(m["id"])
            if run is not None:
                item["endpoint"] = run["endpoint"]
                item["params"] = json.loads(run["params"] or "{}")
                item["metrics"] = {k: run[k] for k in METRIC_COLUMNS}
                item["metrics"]["output_tokens_estimated"] = bool(run["output_tokens_estimated"])
                item["metrics"]["cost_reported"] = bool(run["cost_reported"])
        messages.append(item)
    verdicts = [
        {"race_id": v["race_id"], "winner": v["winner"], "models": json.loads(v["models"])}
        for v in store.verdicts(conv_id)
    ]
    data = {
        "schema_version": SCHEMA_VERSION,
        "id": conv.id,
        "title": conv.title,
        "mode": conv.mode,
        "settings": conv.settings,
        "created_at": _when(conv.created_at),
        "updated_at": _when(conv.updated_at),
        "messages": messages,
        "verdicts": verdicts,
    }
    redacted: dict[str, Any] = json.loads(secrets.redact(json.dumps(data, ensure_ascii=False)))
    return redacted


def export_json(store: Store, conv_id: int) -> str:
    return json_inert(json.dumps(export_data(store, conv_id), indent=2, ensure_ascii=False)) + "\n"


def export_markdown(store: Store, conv_id: int) -> str:
    """A readable Markdown transcript; each reply says who wrote it and its figures."""
    data = export_data(store, conv_id)
    out = [
        f"# {inert_label(data['title'] or 'Conversation')}",
        "",
        f"*Exported from tokenrace · {data['mode']} · started {data['created_at']}*",
        "",
    ]
    s = data["settings"]
    settings = [f"{k} = {v}" for k, v in s.items() if v not in (None, False, "")]
    if settings:
        out += ["Settings: " + ", ".join(settings), ""]
    panes = sorted({m["pane"] for m in data["messages"]})
    for pane in panes:
        if len(panes) > 1:
            out += [f"## Pane {'ABCD'[pane]}", ""]
        for m in (x for x in data["messages"] if x["pane"] == pane):
            if m["role"] == "user":
                out += ["### You", "", m["content"], ""]
                continue
            out += [f"### {inert_label(m['model'] or '')}", ""]
            if m.get("reasoning"):
                quoted = "\n".join(f"> {line}" for line in m["reasoning"].splitlines())
                out += ["<details><summary>Reasoning</summary>", "", quoted, "", "</details>", ""]
            out += [m["content"] or "*(no text)*", ""]
            if m.get("error"):
                out += [f"**Error:** {m['error']}", ""]
            if "metrics" in m:
                row = dict(m["metrics"], status=m["status"])
                mm = metrics_from_row(row)
                out += [f"*{metrics_text(mm)}*", ""]
            else:
                out += [f"*{m['status']}*", ""]
    if data["verdicts"]:
        out += ["## Verdicts", ""]
        for v in data["verdicts"]:
            out.append(f"- race {v['race_id'][:8]}: {v['winner']} ({', '.join(v['models'])})")
        out.append("")
    text = "\n".join(out)
    shown = inert(text)
    if shown != text:
        note = (
            "*Control characters the replies contained (terminal escape sequences) are shown "
            "as symbols such as ␛; the history database keeps them as they arrived.*"
        )
        shown = shown.replace("\n\n", f"\n\n{note}\n\n", 1)
    return secrets.redact(shown)


def default_export_path(title: str, conv_id: int, fmt_name: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "conversation"
    return paths.data_dir() / "exports" / f"{slug}-{conv_id}.{'md' if fmt_name == 'md' else 'json'}"


def write_export(store: Store, conv_id: int, fmt_name: str, path: Path | None = None) -> Path:
    """Write the export (atomically) and return its path."""
    from providers.config import atomic_write_text

    conv = store.conversation(conv_id)
    if conv is None:
        raise ExportError(f"no conversation with id {conv_id}")
    text = export_markdown(store, conv_id) if fmt_name == "md" else export_json(store, conv_id)
    target = path or default_export_path(conv.title, conv_id, fmt_name)
    try:
        atomic_write_text(target, text)
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target

"""Export a stored conversation to Markdown, JSON or HTML, with each reply's model and metrics.

Exports are built from the store only (never from the config or the engine), and every string
goes through ``secrets.redact`` on the way out: an export never contains a key. The store keeps
replies as they arrived; an export is read on terminals (``cat``, a pager), so the Markdown
shows control characters as symbols (``providers.inert``, and says so when it did), and the
JSON escapes C1 controls and DEL as ``\\u`` (the same values, parsed).

The HTML page is meant to be shared, so model text is treated as hostile: it is rendered from
Markdown with raw HTML off, images off and links only to http, https and mailto; everything
else is escaped; and the page's Content-Security-Policy forbids scripts and every network
request (``default-src 'none'``), with the styles inline in the page.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from providers import paths, secrets
from providers.attachments import KIND_NAMES, human_bytes
from providers.inert import inert, inert_label, json_inert
from providers.metrics import metrics_from_record
from tui.format import metrics_text
from tui.session import blind
from tui.session.conversation import (
    branch_since,
    branch_tips,
    current_branch,
)
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
    images = store.images(conv_id)
    # The current branch: the one the conversation reopens on (earlier branches stay stored).
    tips, since = branch_tips(conv.branch), branch_since(conv.branch)
    for m in current_branch(store.messages(conv_id), tips, since):
        item: dict[str, Any] = {
            "id": m["id"],
            "parent_id": m["parent_id"],
            "pane": m["pane"],
            "role": m["role"],
            "model": m["model"],
            "status": m["status"],
            "content": m["content"],
            "reasoning": m["reasoning"] or None,
            "error": m["error"],
            "created_at": _when(m["created_at"]),
        }
        if images.get(m["id"]):
            # The bytes too (base64): an export is the conversation, and resends nothing else.
            item["images"] = [
                {
                    "name": img.name,
                    "mime": img.mime,
                    "bytes": img.size,
                    "width": img.width,
                    "height": img.height,
                    "sha256": img.sha256,
                    "data": img.b64(),
                }
                for img in images[m["id"]]
            ]
        if m["tool_calls"]:  # [{id, name, arguments}]: shown and checked, never executed
            item["tool_calls"] = json.loads(m["tool_calls"])
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
        {
            "race_id": v["race_id"],
            "winner": v["winner"],
            "models": json.loads(v["models"]),
            "blind": bool(v["blind"]),
        }
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
    # An unrevealed blind race is exported as it is shown: models by label.
    data = blind.export_view(blind.BlindRace.from_json(conv.blind), data)
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
    settings = [
        f"tools = {', '.join(t['name'] for t in v)}" if k == "tools" else f"{k} = {v}"
        for k, v in s.items()
        if v not in (None, False, "")
    ]
    if settings:
        out += ["Settings: " + ", ".join(settings), ""]
    panes = sorted({m["pane"] for m in data["messages"]})
    for pane in panes:
        if len(panes) > 1:
            out += [f"## Pane {'ABCD'[pane]}", ""]
        for m in (x for x in data["messages"] if x["pane"] == pane):
            if m["role"] == "user":
                out += ["### You", "", m["content"], ""]
                out += [f"- Image: {inert_label(describe(i))}" for i in m.get("images", ())]
                out += [""] if m.get("images") else []
                continue
            out += [f"### {inert_label(m['model'] or '')}", ""]
            if m.get("reasoning"):
                quoted = "\n".join(f"> {line}" for line in m["reasoning"].splitlines())
                out += ["<details><summary>Reasoning</summary>", "", quoted, "", "</details>", ""]
            calls = m.get("tool_calls") or []
            out += [m["content"] or ("" if calls else "*(no text)*"), ""]
            for c in calls:
                out += [f"`tool call {c['name']}({c['arguments']})` (not executed)", ""]
            if m.get("error"):
                out += [f"**Error:** {m['error']}", ""]
            if "metrics" in m:
                row = dict(m["metrics"], status=m["status"])
                mm = metrics_from_record(row)
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


CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)
LINK_SCHEMES = ("http:", "https:", "mailto:")
# Characters an HTML parser reports as errors (surrogates, noncharacters); shown as U+FFFD.
_NOT_HTML = re.compile("[\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")

PAGE_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1c1e21; }
header, footer { padding: 1rem 1.5rem; }
figure { margin: .5rem 0; } figure img { max-width: 100%; max-height: 20rem; }
header h1 { margin: 0 0 .25rem; font-size: 1.4rem; }
.meta, .figures { color: #5b6270; font-size: .85rem; }
.panes { display: grid; gap: 1rem; padding: 0 1.5rem;
  grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); }
.pane { background: #fff; border: 1px solid #d8dce3; border-radius: 8px; padding: 0 1rem 1rem;
  min-width: 0; }
.pane h2 { font-size: 1rem; border-bottom: 1px solid #e4e7ec; padding: .6rem 0; margin: 0; }
.turn { margin-top: .8rem; }
.turn h3 { font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; color: #5b6270;
  margin: 0 0 .2rem; }
.user .body { white-space: pre-wrap; background: #eef2f8; border-radius: 6px; padding: .5rem; }
.reply pre { background: #f1f3f5; padding: .6rem; overflow-x: auto; border-radius: 6px; }
.reply code { font-family: ui-monospace, monospace; font-size: .9em; }
.reasoning pre, .error { white-space: pre-wrap; }
.error { color: #b42318; }
.winner { outline: 3px solid #12b76a; }
"""


def _safe(text: str) -> str:
    """Text escaped for HTML, with terminal controls shown and parser-error characters replaced."""
    return html.escape(_NOT_HTML.sub("\ufffd", inert(text)), quote=True)


def _markdown_renderer() -> Any:
    """CommonMark with raw HTML and images off, and links only to http(s) and mailto."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).disable("image")

    def validate(url: str) -> bool:
        return url.strip().lower().startswith(LINK_SCHEMES)

    md.validateLink = validate  # type: ignore[method-assign]

    def link_open(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
        return str(renderer.renderToken(tokens, idx, options, env))

    md.add_render_rule("link_open", link_open)
    return md


def describe(image: dict[str, Any]) -> str:
    """An exported image's line: ``cat.png · PNG · 12.3 KB · 640×480``."""
    kind = KIND_NAMES.get(image["mime"], image["mime"])
    size = human_bytes(image["bytes"])
    return f"{image['name']} · {kind} · {size} · {image['width']}×{image['height']}"


def _image_html(image: dict[str, Any]) -> str:
    """The image itself, inline (the CSP allows ``data:`` images only), with its line. The MIME
    type was judged from the bytes when it was attached: PNG, JPEG, WebP or GIF, never SVG."""
    mime = image["mime"] if image["mime"] in KIND_NAMES else "application/octet-stream"
    line = _safe(describe(image))
    return (
        f'<figure><img src="data:{mime};base64,{image["data"]}" alt="{line}">'
        f"<figcaption>{line}</figcaption></figure>"
    )


def export_html(store: Store, conv_id: int) -> str:
    """One self-contained, script-free HTML page: each pane's prompts, replies and figures."""
    data = export_data(store, conv_id)
    md = _markdown_renderer()

    def render(text: str) -> str:
        return str(md.render(_NOT_HTML.sub("\ufffd", inert(text))))

    title = _safe(inert_label(data["title"] or "Conversation"))
    panes = sorted({m["pane"] for m in data["messages"]})
    last = data["verdicts"][-1] if data["verdicts"] else None
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title} · tokenrace</title>",
        f"<style>{PAGE_STYLE}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>{title}</h1>",
        f'<p class="meta">Exported from tokenrace · {_safe(data["mode"])} · started '
        f"{_safe(data['created_at'])}</p>",
    ]
    settings = [f"{k} = {v}" for k, v in data["settings"].items() if v not in (None, False, "")]
    if settings:
        out.append(f'<p class="meta">Settings: {_safe(", ".join(settings))}</p>')
    out += ["</header>", '<main class="panes">']
    for pane in panes:
        turns = [x for x in data["messages"] if x["pane"] == pane]
        model = next((t["model"] for t in turns if t["role"] == "assistant" and t["model"]), "")
        won = last is not None and last["winner"] != "tie" and last["winner"] == model
        label = f"Pane {'ABCD'[pane]}" if len(panes) > 1 and pane < 4 else "Conversation"
        out.append(f'<section class="pane{" winner" if won else ""}">')
        out.append(f"<h2>{_safe(label)} · {_safe(inert_label(model or 'model'))}</h2>")
        for m in turns:
            if m["role"] == "user":
                out += [
                    '<div class="turn user"><h3>You</h3>',
                    f'<div class="body">{_safe(m["content"])}</div>',
                    *(_image_html(i) for i in m.get("images", ())),
                    "</div>",
                ]
                continue
            out.append('<div class="turn reply">')
            out.append(f"<h3>{_safe(inert_label(m['model'] or ''))}</h3>")
            if m.get("reasoning"):
                out.append(
                    '<details class="reasoning"><summary>Reasoning</summary>'
                    f"<pre>{_safe(m['reasoning'])}</pre></details>"
                )
            out.append(render(m["content"]) if m["content"] else "<p><em>(no text)</em></p>")
            if m.get("error"):
                out.append(f'<p class="error">Error: {_safe(m["error"])}</p>')
            if "metrics" in m:
                mm = metrics_from_record(dict(m["metrics"], status=m["status"]))
                out.append(f'<p class="figures">{_safe(metrics_text(mm))}</p>')
            else:
                out.append(f'<p class="figures">{_safe(m["status"])}</p>')
            out.append("</div>")
        out.append("</section>")
    out.append("</main>")
    if data["verdicts"]:
        out += ["<footer>", "<h2>Verdicts</h2>", "<ul>"]
        for v in data["verdicts"]:
            who = "tie" if v["winner"] == "tie" else f"best: {inert_label(v['winner'])}"
            names = ", ".join(inert_label(x) for x in v["models"])
            out.append(f"<li>race {_safe(v['race_id'][:8])}: {_safe(who)} ({_safe(names)})</li>")
        out += ["</ul>", "</footer>"]
    out += ["</body>", "</html>", ""]
    return secrets.redact("\n".join(out))


EXTENSIONS = {"md": "md", "json": "json", "html": "html"}


def export_text(store: Store, conv_id: int, fmt_name: str) -> str:
    """The export in ``fmt_name`` (md, json or html)."""
    if fmt_name == "html":
        return export_html(store, conv_id)
    return export_markdown(store, conv_id) if fmt_name == "md" else export_json(store, conv_id)


def default_export_path(title: str, conv_id: int, fmt_name: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "conversation"
    ext = EXTENSIONS.get(fmt_name, "json")
    return paths.data_dir() / "exports" / f"{slug}-{conv_id}.{ext}"


def write_export(store: Store, conv_id: int, fmt_name: str, path: Path | None = None) -> Path:
    """Write the export (atomically) and return its path."""
    from providers.config import atomic_write_text

    conv = store.conversation(conv_id)
    if conv is None:
        raise ExportError(f"no conversation with id {conv_id}")
    text = export_text(store, conv_id, fmt_name)
    target = path or default_export_path(conv.title, conv_id, fmt_name)
    try:
        atomic_write_text(target, text)
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target

"""``tokenrace export [ID] --format md|json|html``: a conversation with its models and metrics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from providers import paths
from providers.inert import inert_label
from tui.session.export import ExportError, export_text
from tui.session.store import Store, StoreError


def register_known_keys() -> None:
    """Learn the keys set in the environment, so a reply that echoed one is redacted."""
    import os

    from providers import secrets
    from providers.config import ConfigError, load_config

    try:
        config = load_config()
    except ConfigError:
        return
    for ep in config.endpoints.values():
        if ep.api_key_env:
            secrets.register(os.environ.get(ep.api_key_env))


def main(argv: list[str]) -> int:
    """``tokenrace export`` entry point."""
    p = argparse.ArgumentParser(
        prog="tokenrace export", description="Export a conversation (the latest by default)."
    )
    p.add_argument("id", nargs="?", type=int, help="conversation id (tokenrace export --list)")
    p.add_argument("--format", choices=("md", "json", "html"), default="md")
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    p.add_argument("--list", action="store_true", help="list conversations and their ids")
    ns = p.parse_args(argv)
    db = paths.data_dir() / "history.db"
    if not db.exists():
        print("tokenrace export: no history yet", file=sys.stderr)
        return 1
    register_known_keys()
    try:
        store = Store(db, on_error=lambda m: print(f"tokenrace export: {m}", file=sys.stderr))
    except StoreError as exc:
        print(f"tokenrace export: {exc}", file=sys.stderr)
        return 1
    if store.recovered:  # replies a killed tokenrace left streaming: log them as interrupted
        from providers.config import ConfigError, load_config
        from tui.session.metrics_log import log_recovered

        try:
            log_recovered(store.recovered, load_config())
        except ConfigError:
            log_recovered(store.recovered, None)
    try:
        if ns.list:
            for row in store.conversations():
                print(f"{row.id}\t{row.mode}\t{row.messages} msgs\t{inert_label(row.title)}")
            return 0
        conv_id = ns.id if ns.id is not None else store.latest_conversation()
        if conv_id is None:
            print("tokenrace export: no conversations yet", file=sys.stderr)
            return 1
        try:
            text = export_text(store, conv_id, ns.format)
        except ExportError as exc:
            print(f"tokenrace export: {exc}", file=sys.stderr)
            return 1
        if ns.output:
            from providers.config import atomic_write_text

            atomic_write_text(ns.output, text)
            print(f"wrote {ns.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    finally:
        store.close()

"""``tokenrace endpoints``: list endpoints, or add one to config.toml (atomic, comments kept)."""

from __future__ import annotations

import argparse
import sys

from providers import paths, secrets
from providers.config import ConfigError, add_endpoint, load_config
from providers.local import with_local
from providers.protocols import PROTOCOLS


def main(argv: list[str]) -> int:
    """``tokenrace endpoints`` entry point."""
    p = argparse.ArgumentParser(prog="tokenrace endpoints", description="Manage endpoints.")
    sub = p.add_subparsers(dest="action")
    a = sub.add_parser("add", help="add an endpoint to config.toml")
    a.add_argument("name")
    a.add_argument("--base-url", required=True)
    a.add_argument("--key-env", metavar="VAR", help="environment variable holding its key")
    a.add_argument("--model", action="append", default=[], help="model id (repeatable)")
    a.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="chat",
        help="wire protocol it speaks (default: chat, OpenAI chat completions)",
    )
    sub.add_parser("list", help="list the endpoints (the same as no action)")
    ns = p.parse_args(argv)
    if ns.action == "add":
        try:
            path = add_endpoint(
                ns.name, ns.base_url, api_key_env=ns.key_env, models=ns.model, protocol=ns.protocol
            )
        except ConfigError as exc:
            if exc.path is not None:  # the file itself is broken: say where
                print(f"tokenrace: config error: {exc}", file=sys.stderr)
            else:
                print(f"tokenrace endpoints add: {exc.detail}", file=sys.stderr)
            return 2
        print(f"Added [endpoints.{ns.name}] to {path}.")
        return 0
    config = with_local(load_config())
    print(f"config: {config.path if config.path else paths.config_path()}")
    for ep in config.endpoints.values():
        kind = "preset" if ep.preset else "config"
        url = (
            "(started by tokenrace on first use)" if ep.managed else secrets.redact_url(ep.base_url)
        )
        print(f"  {ep.name:<16} {url:<58} {kind:<6} {ep.protocol:<9} {ep.description}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

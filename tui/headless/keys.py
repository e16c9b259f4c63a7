"""``tokenrace keys set|delete|list``: API keys in the OS keyring, shown masked."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from providers import secrets
from providers.config import Config, load_config
from providers.discovery import validate_key
from providers.inert import inert
from providers.keys import KeyLookupError, Keyring, KeyStore
from tui.headless.models import key_status


def _endpoint_or_fail(config: Config, name: str) -> bool:
    if name in config.endpoints:
        return True
    print(
        f"tokenrace keys: unknown endpoint {name!r}; known: {', '.join(sorted(config.endpoints))}",
        file=sys.stderr,
    )
    return False


def _read_secret(name: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(f"API key for {name} (input hidden): ")
    return sys.stdin.readline()


def cmd_set(config: Config, keyring: Keyring, name: str, validate: bool) -> int:
    """Prompt for a key (hidden), validate it when the endpoint answers, store it."""
    ep = config.endpoint(name)
    value = _read_secret(name).strip()
    if not value:
        print("tokenrace keys: no key given; nothing stored", file=sys.stderr)
        return 1
    secrets.register(value)
    if validate:
        timeout = 3.0 if ep.is_loopback else 10.0
        listing = asyncio.run(validate_key(ep, value, timeout))
        if listing.outcome == "auth":
            print(
                f"tokenrace keys: {name} rejected this key ({inert(listing.message)}); not stored",
                file=sys.stderr,
            )
            return 1
        if listing.outcome == "ok":
            print(f"{name} accepted the key ({len(listing.models)} models available).")
        else:
            print(
                f"warning: could not validate the key ({listing.outcome}: "
                f"{inert(listing.message)}); storing it anyway",
                file=sys.stderr,
            )
    try:
        keyring.set(name, value)
    except KeyLookupError as exc:
        print(f"tokenrace keys: could not store the key: {exc}", file=sys.stderr)
        return 1
    print(f"Stored {secrets.mask(value)} for {name} in the OS keyring (service 'tokenrace').")
    if ep.api_key_env:
        print(f"Note: {ep.api_key_env}, when set, takes precedence over the keyring.")
    return 0


def cmd_delete(keyring: Keyring, name: str) -> int:
    """Remove the endpoint's key from the keyring."""
    try:
        removed = keyring.delete(name)
    except KeyLookupError as exc:
        print(f"tokenrace keys: {exc}", file=sys.stderr)
        return 1
    print(f"Deleted the key for {name}." if removed else f"No key for {name} in the keyring.")
    return 0


def cmd_list(config: Config, keyring: Keyring, name: str | None) -> int:
    """Every endpoint with its masked key and where it comes from."""
    store = KeyStore(keyring)
    names = [name] if name else list(config.endpoints)
    width = max(len(n) for n in names)
    for n in names:
        ep = config.endpoint(n)
        try:
            resolved = store.resolve(ep)
            print(f"{n:<{width}}  {key_status(ep, resolved, None)}")
        except KeyLookupError as exc:
            print(f"{n:<{width}}  {key_status(ep, None, str(exc))}")
    try:
        print(f"\nkeyring backend: {keyring.backend_name()}")
    except KeyLookupError as exc:
        print(f"\nkeyring: {exc}")
    return 0


def main(argv: list[str]) -> int:
    """``tokenrace keys`` entry point."""
    p = argparse.ArgumentParser(
        prog="tokenrace keys", description="Manage API keys in the OS keyring."
    )
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("set", help="store a key (prompted, hidden) after validating it")
    s.add_argument("endpoint")
    s.add_argument("--no-validate", action="store_true", help="store without asking the endpoint")
    d = sub.add_parser("delete", help="remove a stored key")
    d.add_argument("endpoint")
    ls = sub.add_parser("list", help="show every endpoint's key, masked, and its source")
    ls.add_argument("endpoint", nargs="?")
    ns = p.parse_args(argv)
    config = load_config()
    if ns.endpoint and not _endpoint_or_fail(config, ns.endpoint):
        return 2
    keyring = Keyring(config.keyring_timeout_s)
    if ns.action == "set":
        return cmd_set(config, keyring, ns.endpoint, not ns.no_validate)
    if ns.action == "delete":
        return cmd_delete(keyring, ns.endpoint)
    return cmd_list(config, keyring, ns.endpoint)

"""``tokenrace models``: endpoints, their models (discovered live), prices, context, key source."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from typing import Any

from providers import secrets
from providers.config import Config, Endpoint, load_config
from providers.discovery import ModelListing, list_models
from providers.inert import inert, inert_label
from providers.keys import KeyLookupError, Keyring, KeyStore, ResolvedKey
from providers.local import describe, with_local
from providers.model_ref import ModelRef
from providers.prices import as_of, builtin_models, format_context, format_price, model_info

LOOPBACK_TIMEOUT_S = 2.0
REMOTE_TIMEOUT_S = 10.0


@dataclass
class EndpointReport:
    """What `models` found out about one endpoint."""

    endpoint: Endpoint
    key: ResolvedKey | None
    key_error: str | None
    listing: ModelListing | None
    models: list[tuple[str, str]]  # (model id, where we know it from)


def key_status(ep: Endpoint, key: ResolvedKey | None, error: str | None) -> str:
    """How the key column reads: masked key and source, or what is missing."""
    if error:
        return f"key lookup failed: {error}"
    if key is not None and key.value:
        where = {"cmd": "api_key_cmd", "env": f"env {key.detail}", "keyring": "OS keyring"}
        return f"key {key.masked} ({where.get(key.source, key.source)})"
    if ep.key_required:
        env = f"set {ep.api_key_env} or " if ep.api_key_env else ""
        return f"no key ({env}tokenrace keys set {ep.name})"
    return "no key needed"


async def survey(config: Config, names: list[str], store: KeyStore) -> list[EndpointReport]:
    """Look up keys and list models of every named endpoint, concurrently."""

    async def one(name: str) -> EndpointReport:
        ep = config.endpoint(name)
        if ep.managed:  # tokenrace starts its server on first use: nothing to ask now
            local = ModelListing(ep.name, "ok", ep.models)
            return EndpointReport(ep, None, None, local, [(m, "local") for m in ep.models])
        key: ResolvedKey | None = None
        key_error: str | None = None
        try:
            key = await asyncio.to_thread(store.resolve, ep)
        except KeyLookupError as exc:
            key_error = str(exc)
        listing: ModelListing | None = None
        has_key = key is not None and bool(key.value)
        if has_key or not ep.key_required:
            timeout = LOOPBACK_TIMEOUT_S if ep.is_loopback else REMOTE_TIMEOUT_S
            listing = await list_models(ep, key.value if key else None, timeout)
        seen: dict[str, str] = {}
        if listing is not None and listing.outcome == "ok":
            for m in listing.models:
                seen[m] = "live"
        for m in ep.models:
            seen.setdefault(m, "config")
        if not seen or listing is None or listing.outcome != "ok":
            for ref in builtin_models(ep.name):
                seen.setdefault(ModelRef.parse(ref).model, "price table")
        return EndpointReport(ep, key, key_error, listing, sorted(seen.items()))

    return list(await asyncio.gather(*(one(n) for n in names)))


def _listing_status(r: EndpointReport) -> str:
    if r.listing is None:
        return "not queried (no key)"
    if r.listing.outcome == "ok":
        return f"{len(r.listing.models)} models"
    if r.listing.outcome == "unreachable":
        return ("not running" if r.endpoint.is_loopback else "unreachable") + (
            f" ({r.listing.message})" if r.listing.message else ""
        )
    if r.listing.outcome == "auth":
        return f"key rejected ({r.listing.message})"
    return f"error ({r.listing.message})"


def print_text(reports: list[EndpointReport], config: Config, verbose: bool) -> None:
    """The human-readable report."""
    for r in reports:
        ep = r.endpoint
        where = f"started by tokenrace on first use: {ep.description}" if ep.managed else ""
        print(f"{ep.name}  {where or secrets.redact_url(ep.base_url)}")
        # The listing's message and the model ids are the server's words: made inert.
        print(f"  {key_status(ep, r.key, r.key_error)} · {inert(_listing_status(r))}")
        if not r.models:
            continue
        shown = r.models if verbose or len(r.models) <= 40 else r.models[:40]
        width = max(len(inert_label(m)) for m, _ in shown)
        for model, source in shown:
            info = model_info(str(ModelRef(ep.name, model)), config)
            label = inert_label(model)
            cached = (
                f"cached ${info.price.cached_input:g}"
                if info.price and info.price.cached_input is not None
                else ""
            )
            print(
                f"    {ep.name}/{label:<{width}}  {format_price(info.price):>17}  "
                f"{cached:>16}  ctx {format_context(info.context):>5}  [{source}]"
            )
            if ep.managed:  # what a local model is: kind, size, licence, what to expect
                print(f"      {describe(model)}")
        if len(shown) < len(r.models):
            print(f"    … {len(r.models) - len(shown)} more (--all)")
    print(
        f"\nPrices: $ per 1M input / output tokens, built-in table as of {as_of()}, "
        "overridable in config.toml [prices]."
    )


def as_json(reports: list[EndpointReport], config: Config) -> list[dict[str, Any]]:
    """The machine-readable report (``--json``)."""
    out = []
    for r in reports:
        ep = r.endpoint
        models = []
        for model, source in r.models:
            ref = str(ModelRef(ep.name, model))
            info = model_info(ref, config)
            models.append(
                {
                    "model": ref,
                    "source": source,
                    "input_per_m": info.price.input if info.price else None,
                    "output_per_m": info.price.output if info.price else None,
                    "cached_input_per_m": info.price.cached_input if info.price else None,
                    "context": info.context,
                    **({"description": describe(model)} if ep.managed else {}),
                }
            )
        out.append(
            {
                "endpoint": ep.name,
                "base_url": secrets.redact_url(ep.base_url),
                "key": key_status(ep, r.key, r.key_error),
                "key_source": r.key.source if r.key else None,
                "reachable": _listing_status(r),
                "models": models,
            }
        )
    return out


def main(argv: list[str]) -> int:
    """``tokenrace models`` entry point."""
    p = argparse.ArgumentParser(
        prog="tokenrace models", description="List endpoints and their models, with prices."
    )
    p.add_argument("endpoint", nargs="?", help="only this endpoint")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--all", action="store_true", help="list every model, not the first 40")
    ns = p.parse_args(argv)
    config = with_local(load_config())
    if ns.endpoint:
        if ns.endpoint not in config.endpoints:
            print(
                f"tokenrace models: unknown endpoint {ns.endpoint!r}; known: "
                f"{', '.join(sorted(config.endpoints))}",
                file=sys.stderr,
            )
            return 2
        names = [ns.endpoint]
    else:
        names = list(config.endpoints)
    store = KeyStore(Keyring(config.keyring_timeout_s))
    reports = asyncio.run(survey(config, names, store))
    if ns.json:
        print(json.dumps(as_json(reports, config), indent=2))
    else:
        print_text(reports, config, ns.all)
    return 0

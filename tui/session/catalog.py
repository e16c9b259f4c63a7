"""The models the user can pick: configured, priced, and discovered live (no textual).

Discovery runs ``tokenrace models --json`` in a subprocess, so the UI process never imports the
openai SDK nor waits on a slow endpoint; the picker shows what is known at once and adds the
discovered models when they arrive.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass

from providers.config import Config
from providers.local import bundled_model
from providers.model_ref import ModelRef, endpoint_of
from providers.prices import builtin_models, format_context, format_price, model_info


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model as the picker lists it."""

    ref: str
    endpoint: str
    price: str
    context: str
    source: str
    note: str = ""  # what a local model is: "instruct, 135M · Apache-2.0"

    @property
    def model(self) -> str:
        return ModelRef.parse(self.ref).model


def entry(ref: str, config: Config, source: str) -> ModelEntry:
    info = model_info(ref, config)
    endpoint, model = (parsed := ModelRef.parse(ref)).endpoint, parsed.model
    ep = config.endpoints.get(endpoint)
    note = ""
    if ep is not None and ep.managed:
        bundled = bundled_model(model)
        note = bundled.label if bundled is not None else "your GGUF"
    return ModelEntry(
        ref, endpoint, format_price(info.price), format_context(info.context), source, note
    )


def static_catalog(config: Config) -> list[ModelEntry]:
    """Models known without asking any endpoint: config first, then the price table."""
    seen: dict[str, ModelEntry] = {}
    for ep in config.endpoints.values():
        for m in ep.models:
            ref = str(ModelRef(ep.name, m))
            seen.setdefault(ref, entry(ref, config, "local" if ep.managed else "config"))
    for ref in builtin_models():
        if endpoint_of(ref) in config.endpoints:
            seen.setdefault(ref, entry(ref, config, "price table"))
    for ref in config.prices:
        if endpoint_of(ref) in config.endpoints:
            seen.setdefault(ref, entry(ref, config, "config"))
    return list(seen.values())


# A model picker opened longer than this after the last discovery asks the endpoints again.
PICKER_REDISCOVER_S = 20.0


async def discover(config: Config, timeout_s: float = 20.0) -> tuple[list[ModelEntry], str]:
    """Models that endpoints list live, via ``tokenrace models --json`` in a subprocess."""
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tui.cli",
            "models",
            "--json",
            "--all",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ),
        )
    except OSError as exc:
        return [], f"model discovery could not start: {exc}"
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return [], "model discovery took too long"
    if proc.returncode != 0:
        return [], (err.decode(errors="replace").strip().splitlines() or ["failed"])[-1]
    try:
        report = json.loads(out)
    except ValueError:
        return [], "model discovery printed something unexpected"
    found: list[ModelEntry] = []
    for ep in report:
        for m in ep.get("models", []):
            if m.get("source") == "live":
                found.append(entry(m["model"], config, "live"))
    return found, ""


def merge(known: list[ModelEntry], found: list[ModelEntry]) -> list[ModelEntry]:
    """Known entries, with live ones added (a live entry replaces a static one)."""
    by_ref = {e.ref: e for e in known}
    for e in found:
        by_ref[e.ref] = e
    return sorted(by_ref.values(), key=lambda e: (e.source != "live", e.endpoint, e.model))


def resolve(name: str, entries: list[ModelEntry], config: Config) -> tuple[str | None, str]:
    """A model ref for what the user typed after /model; or None and why."""
    name = name.strip()
    if not name:
        return None, "give a model: /model ENDPOINT/MODEL"
    if "/" in name and endpoint_of(name) in config.endpoints:
        return name, ""
    exact = [e for e in entries if e.model == name]
    if len(exact) == 1:
        return exact[0].ref, ""
    matches = [e for e in entries if name.lower() in e.ref.lower()]
    if len(matches) == 1:
        return matches[0].ref, ""
    if not matches:
        return None, f"no known model matches {name!r}; F2 opens the picker"
    shown = ", ".join(e.ref for e in matches[:5])
    return None, f"{len(matches)} models match {name!r} ({shown}…); be more specific or use F2"

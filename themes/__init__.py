"""Built-in themes as data, and the loader that turns them (and user themes) into Textual themes.

Every theme carries the semantic colours the app uses for metrics and panes, as Textual theme
variables: ``pane-a`` … ``pane-d`` (pane identity), ``good`` / ``bad`` (better / worse in
comparisons), ``metric`` (figures in the status bar) and ``reasoning``. Textual's own built-in
themes get defaults for them too, so any theme the user picks works. Colour never carries
meaning alone: the widgets always add a glyph or a label.

User themes: TOML files in ``<config dir>/themes/*.toml`` with the keys of ``ThemeSpec``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.theme import Theme

SEMANTIC_DEFAULTS_DARK = {
    "pane-a": "#5fafff",
    "pane-b": "#ffaf5f",
    "pane-c": "#af87ff",
    "pane-d": "#5fd7af",
    "good": "#5fd75f",
    "bad": "#ff5f5f",
    "metric": "#d7d7af",
    "reasoning": "#8a8a8a",
}
SEMANTIC_DEFAULTS_LIGHT = {
    "pane-a": "#005fd7",
    "pane-b": "#af5f00",
    "pane-c": "#5f00af",
    "pane-d": "#00875f",
    "good": "#008700",
    "bad": "#d70000",
    "metric": "#5f5f00",
    "reasoning": "#6c6c6c",
}


@dataclass(frozen=True)
class ThemeSpec:
    """A theme as plain data: Textual's base colours plus our semantic ones."""

    name: str
    primary: str
    dark: bool = True
    secondary: str | None = None
    accent: str | None = None
    warning: str | None = None
    error: str | None = None
    success: str | None = None
    foreground: str | None = None
    background: str | None = None
    surface: str | None = None
    panel: str | None = None
    boost: str | None = None
    variables: dict[str, str] = field(default_factory=dict)


BUILTIN: tuple[ThemeSpec, ...] = (
    ThemeSpec(
        name="tokenrace-dark",
        primary="#5fafff",
        secondary="#af87ff",
        accent="#ffaf5f",
        warning="#ffd75f",
        error="#ff5f5f",
        success="#5fd75f",
        foreground="#dadada",
        background="#121417",
        surface="#1a1d22",
        panel="#22262c",
        dark=True,
    ),
    ThemeSpec(
        name="tokenrace-light",
        primary="#005fd7",
        secondary="#5f00af",
        accent="#af5f00",
        warning="#af8700",
        error="#d70000",
        success="#008700",
        foreground="#1c1c1c",
        background="#fafafa",
        surface="#f0f0f0",
        panel="#e4e4e4",
        dark=False,
    ),
    ThemeSpec(
        name="tokenrace-amber",
        primary="#ffaf00",
        secondary="#d78700",
        accent="#87d7ff",
        warning="#ffd700",
        error="#ff5f5f",
        success="#afd75f",
        foreground="#ffd7a0",
        background="#1a1200",
        surface="#241a05",
        panel="#2e220a",
        dark=True,
        variables={"pane-a": "#ffaf00", "pane-b": "#87d7ff", "metric": "#ffd787"},
    ),
    ThemeSpec(
        name="tokenrace-contrast",
        primary="#00ffff",
        secondary="#ffff00",
        accent="#ff00ff",
        warning="#ffff00",
        error="#ff0000",
        success="#00ff00",
        foreground="#ffffff",
        background="#000000",
        surface="#000000",
        panel="#1c1c1c",
        dark=True,
        variables={
            "pane-a": "#00ffff",
            "pane-b": "#ffff00",
            "pane-c": "#ff00ff",
            "pane-d": "#00ff00",
            "good": "#00ff00",
            "bad": "#ff0000",
            "metric": "#ffffff",
            "reasoning": "#c0c0c0",
        },
    ),
)

DEFAULT_DARK = "tokenrace-dark"


def semantic_variables(dark: bool, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Our semantic colours for a dark or light theme, with overrides applied."""
    base = dict(SEMANTIC_DEFAULTS_DARK if dark else SEMANTIC_DEFAULTS_LIGHT)
    base.update(overrides or {})
    return base


def to_textual(spec: ThemeSpec) -> Theme:
    """A ``textual.theme.Theme`` for ``spec``."""
    from textual.theme import Theme

    kwargs: dict[str, Any] = {
        f.name: getattr(spec, f.name)
        for f in fields(spec)
        if f.name not in ("variables",) and getattr(spec, f.name) is not None
    }
    kwargs["variables"] = semantic_variables(spec.dark, spec.variables)
    return Theme(**kwargs)


class ThemeFileError(ValueError):
    """A user theme file that cannot be used."""


def _check_colours(spec: ThemeSpec) -> None:
    """Raise ThemeFileError naming the first value that is not a colour Textual can parse."""
    from textual.color import Color, ColorParseError

    values = {f.name: getattr(spec, f.name) for f in fields(spec) if f.name not in _NOT_COLOURS}
    if not isinstance(spec.variables, dict):
        raise ThemeFileError("variables: expected a table")
    # Textual's own variables may hold styles ("bold"); ours are colours the widgets parse.
    values.update(
        {f"variables.{k}": v for k, v in spec.variables.items() if k in SEMANTIC_DEFAULTS_DARK}
    )
    for key, value in values.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise ThemeFileError(f"{key}: expected a colour string, got {value!r}")
        try:
            Color.parse(value)
        except ColorParseError:
            raise ThemeFileError(f"{key}: {value!r} is not a colour") from None


_NOT_COLOURS = frozenset({"name", "dark", "variables"})


def load_user_themes(folder: Path) -> tuple[list[ThemeSpec], list[str]]:
    """Themes from ``folder/*.toml``; broken files are reported, never fatal."""
    specs: list[ThemeSpec] = []
    errors: list[str] = []
    if not folder.is_dir():
        return specs, errors
    allowed = {f.name for f in fields(ThemeSpec)}
    for path in sorted(folder.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text("utf-8"))
            unknown = set(data) - allowed
            if unknown:
                raise ThemeFileError(f"unknown keys: {', '.join(sorted(unknown))}")
            data.setdefault("name", path.stem)
            if "primary" not in data:
                raise ThemeFileError("missing key: primary")
            spec = ThemeSpec(**data)
            _check_colours(spec)
            specs.append(spec)
        except (OSError, tomllib.TOMLDecodeError, ThemeFileError, TypeError) as exc:
            errors.append(f"{path}: {exc}")
    return specs, errors


def all_specs(user_folder: Path | None = None) -> tuple[list[ThemeSpec], list[str]]:
    """Built-in and user themes (user themes may replace a built-in by name)."""
    by_name = {s.name: s for s in BUILTIN}
    errors: list[str] = []
    if user_folder is not None:
        user, errors = load_user_themes(user_folder)
        for s in user:
            by_name[s.name] = s
    return list(by_name.values()), errors

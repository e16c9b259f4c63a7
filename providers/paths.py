"""Where tokenrace keeps its files: one function per kind, each with an env-var override."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "tokenrace"


def _home_override() -> Path | None:
    home = os.environ.get("TOKENRACE_HOME")
    return Path(home).expanduser() if home else None


def config_path() -> Path:
    """The config file: $TOKENRACE_CONFIG, $TOKENRACE_HOME/config.toml, or the platform dir."""
    explicit = os.environ.get("TOKENRACE_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    home = _home_override()
    if home is not None:
        return home / "config.toml"
    import platformdirs

    return platformdirs.user_config_path(APP_NAME) / "config.toml"


def data_dir() -> Path:
    """History database, logs, state file: $TOKENRACE_DATA_DIR, $TOKENRACE_HOME/data or platform."""
    explicit = os.environ.get("TOKENRACE_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    home = _home_override()
    if home is not None:
        return home / "data"
    import platformdirs

    return platformdirs.user_data_path(APP_NAME)


def cache_dir() -> Path:
    """Rebuildable files (the local model): $TOKENRACE_CACHE_DIR, home/cache or platform."""
    explicit = os.environ.get("TOKENRACE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    home = _home_override()
    if home is not None:
        return home / "cache"
    import platformdirs

    return platformdirs.user_cache_path(APP_NAME)


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with user-only permissions if it does not exist."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path

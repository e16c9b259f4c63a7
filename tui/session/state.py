"""UI state that is not configuration: theme, last model, last conversation (DESIGN §2)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from providers import paths
from providers.config import atomic_write_text


@dataclass
class UiState:
    """What the app remembers between runs; written atomically to the data dir."""

    theme: str | None = None
    last_model: str | None = None
    last_models: list[str] = field(default_factory=list)
    last_conversation: int | None = None
    synced_scroll: bool = True

    @classmethod
    def path(cls) -> Path:
        return paths.data_dir() / "state.json"

    @classmethod
    def load(cls, path: Path | None = None) -> UiState:
        """The saved state; defaults when the file is missing or unreadable."""
        try:
            data: Any = json.loads((path or cls.path()).read_text("utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except TypeError:
            return cls()

    def save(self, path: Path | None = None) -> str | None:
        """Write the state; returns an error message instead of raising (a full disk)."""
        target = path or self.path()
        try:
            paths.ensure_dir(target.parent)
            atomic_write_text(target, json.dumps(asdict(self), indent=1))
        except OSError as exc:
            return f"could not save UI state to {target}: {exc.strerror or exc}"
        return None

"""Images waiting for the next message: ``/image PATH``, a dropped or pasted path, Tab
completion of paths (no textual).

A pasted text that is nothing but the path of an image file attaches the image at once, without
asking: dropping a file on a terminal can only ever produce such a paste, and someone who drops
a picture on a chat app means to send it. The attachment shows above the prompt before anything
is sent, and ``/image clear`` takes it back, so a wrong guess costs one command, not a request.
Anything else (a path to a text file, a path among other words) is pasted as text.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from providers.attachments import Image, ImageError, load_image, refusal_for, sniff
from providers.config import Config

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
MAX_COMPLETIONS = 50


@dataclass
class PendingImages:
    """The images the next message will carry."""

    images: list[Image] = field(default_factory=list)

    def attach(self, path: str | Path) -> Image:
        """Read and attach the image at ``path``; raises ``ImageError`` with the reason."""
        img = load_image(path)
        self.images.append(img)
        return img

    def take(self) -> tuple[Image, ...]:
        """The attached images, now handed to a message (and no longer pending)."""
        out = tuple(self.images)
        self.images.clear()
        return out

    def clear(self) -> int:
        """Drop every pending image; how many there were."""
        n = len(self.images)
        self.images.clear()
        return n

    def summary(self) -> str:
        """``image: cat.png · PNG · 12.3 KB · 640×480`` (``2 images: …``), or empty."""
        if not self.images:
            return ""
        label = "image" if len(self.images) == 1 else f"{len(self.images)} images"
        return f"{label}: " + " + ".join(i.describe() for i in self.images)


def dropped_image_path(text: str, cwd: Path | None = None) -> Path | None:
    """The image file a pasted ``text`` names, when the paste is that path and nothing else.

    Terminals drop files as a path, quoted or with backslash-escaped spaces, or as a
    ``file://`` URI (GNOME Terminal, kitty); the file must exist and start like an image.
    """
    text = text.strip()
    if not text or "\n" in text or len(text) > 4096:
        return None
    if text.startswith("file://"):
        text = unquote(urlparse(text).path)
    elif not os.path.exists(os.path.expanduser(text)):  # dropped as is, spaces and all
        try:
            words = shlex.split(text)
        except ValueError:
            return None
        if len(words) != 1:
            return None
        text = words[0]
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    try:
        if not path.is_file():
            return None
        with path.open("rb") as f:
            head = f.read(64 * 1024)
        sniff(head)
    except (OSError, ImageError):
        return None
    return path


def complete_path(arg: str, cwd: Path | None = None) -> list[str]:
    """Completions of a partly typed path: directories (ending in ``/``) and image files."""
    typed = os.path.expanduser(arg)
    base = Path(typed) if os.path.isabs(typed) else (cwd or Path.cwd()) / typed
    folder, prefix = (base, "") if arg.endswith("/") or not arg else (base.parent, base.name)
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError:
        return []
    shown = arg[: len(arg) - len(prefix)]
    out: list[str] = []
    for p in entries:
        if not p.name.startswith(prefix) or (p.name.startswith(".") and not prefix):
            continue
        if p.is_dir():
            out.append(f"{shown}{p.name}/")
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            out.append(f"{shown}{p.name}")
        if len(out) >= MAX_COMPLETIONS:
            break
    return out


def common_prefix(options: list[str]) -> str:
    """What every completion starts with (Tab fills this much when they disagree)."""
    return os.path.commonprefix(options) if options else ""  # noqa: RUF071 (characters, not path parts: a half-typed name)


def image_command(pending: PendingImages, arg: str) -> tuple[str, bool]:
    """Run ``/image ARG``: attach a path, ``clear``, or list; the sentence to show, and
    whether it worked."""
    if arg == "clear":
        n = pending.clear()
        return (f"{n} image{'s' if n != 1 else ''} removed." if n else "No image attached."), True
    if not arg:
        return pending.summary() or "No image attached: /image PATH attaches one.", True
    try:
        words = shlex.split(arg)
    except ValueError:
        words = [arg]
    path = words[0] if len(words) == 1 else arg
    try:
        img = pending.attach(path)
    except ImageError as exc:
        return f"Not attached: {exc}", False
    return f"Attached {img.describe()} to the next message (/image clear removes it).", True


def refused_before_sending(
    config: Config,
    model_ref: str,
    history: Sequence[Mapping[str, Any]],
    images: Sequence[Image],
) -> str | None:
    """Why the next message (with ``images``) cannot go to ``model_ref``, checked before the
    prompt leaves the box, so nothing is sent, stored or lost; None when it can."""
    nxt = {"role": "user", "content": "", "images": tuple(images)}
    return refusal_for(config, model_ref, [*history, nxt])


def complete_image_command(text: str, cwd: Path | None = None) -> str | None:
    """Tab on ``/image PARTIAL``: the prompt completed as far as the matches agree."""
    name, _, arg = text.partition(" ")
    options = complete_path(arg, cwd)
    if not options:
        return None
    return f"{name} {options[0] if len(options) == 1 else common_prefix(options)}"

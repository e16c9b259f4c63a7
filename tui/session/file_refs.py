"""Files into the prompt: ``@path`` words become fenced blocks of the file's text.

A word that starts with ``@`` and names an existing file (relative to the working directory,
``~`` or absolute; ``@"a b.txt"`` for names with spaces) is replaced by the file's name and its
text in a fence longer than any backtick run inside it, so the block cannot be closed early.
``@@word`` sends ``@word`` as typed; every other ``@word`` (a mail address, a decorator, a
handle, a path that does not exist) stays as typed. A file that is too large or not text is
refused with a message that names it, and nothing is sent: the prompt stays in the box.
History stores the prompt as sent, with the files' text in it, so a replay sends the same.
No textual or rich here: the app and ``ask -f`` share it (DESIGN §1).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# 256 KB is ~64k tokens of English: beyond it a file is a mistake more often than a prompt,
# and it costs real money on every pane of a race.
MAX_FILE_BYTES = 256 * 1024
# What is read to tell text from binary before the whole file is.
_SNIFF_BYTES = 8192
# Punctuation that ends a sentence after a path ("see @notes.md, then"), tried off the end
# when the whole word names no file.
_TRAILING = ".,;:!?)]}'\""
# ``@`` at the start of a word: after the start of the text or whitespace, so mail addresses
# (bob@example.com) never match. Group 1 is a second ``@`` (the escape), group 2 a quoted
# name, group 3 a bare word.
_WORD = re.compile(r'(?<!\S)@(@?)(?:"([^"\n]+)"|(\S+))')
_LANGUAGES = {
    ".py": "python",
    ".js": "javascript",
    ".ts": "typescript",
    ".tsx": "tsx",
    ".rs": "rust",
    ".go": "go",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
    ".java": "java",
    ".rb": "ruby",
    ".sh": "bash",
    ".json": "json",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".md": "markdown",
    ".html": "html",
    ".css": "css",
    ".sql": "sql",
}
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF")


class FileRefError(ValueError):
    """A named file that cannot go into the prompt, with the reason in the user's words."""


@dataclass(frozen=True, slots=True)
class AttachedFile:
    """A file whose text went into the prompt."""

    name: str  # as the user typed it
    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class Expanded:
    """The prompt to send and the files that went into it."""

    text: str
    files: tuple[AttachedFile, ...]


def _resolve(name: str, cwd: Path) -> Path:
    path = Path(os.path.expanduser(name))
    return path if path.is_absolute() else cwd / path


def _is_file(name: str, cwd: Path) -> bool:
    try:
        return _resolve(name, cwd).is_file()
    except (OSError, ValueError):  # a NUL in the name, a name too long for the file system
        return False


def read_text_file(name: str, path: Path, limit: int = MAX_FILE_BYTES) -> str:
    """The text of ``path``, or ``FileRefError`` saying why it cannot go into a prompt."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise FileRefError(
                f"{name} is {size:,} bytes; files in a prompt are limited to {limit:,} bytes"
            )
        data = path.read_bytes()
    except FileRefError:
        raise
    except OSError as exc:
        raise FileRefError(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(data) > limit:  # grew between the stat and the read
        raise FileRefError(f"{name} is over {limit:,} bytes; files in a prompt are limited")
    head = data[:_SNIFF_BYTES]
    if head.startswith(_IMAGE_MAGIC):
        raise FileRefError(f"{name} is an image: attach it with /image {name}")
    if b"\x00" in head:
        raise FileRefError(f"{name} is a binary file, not text; only text files go in with @")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRefError(
            f"{name} is not UTF-8 text (byte {exc.start:,} cannot be read); "
            "only text files go in with @"
        ) from None
    return text.removeprefix("\ufeff")


def fenced(name: str, text: str) -> str:
    """``text`` as a Markdown block labelled with ``name``, fenced so nothing inside closes it."""
    runs = re.findall(r"`{3,}", text)
    fence = "`" * max(3, *(len(r) + 1 for r in runs)) if runs else "```"
    lang = _LANGUAGES.get(Path(name).suffix.lower(), "")
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"{name}:\n{fence}{lang}\n{body}{fence}"


def _split_trailing(word: str, cwd: Path) -> tuple[str, str] | None:
    """(name, rest) where ``name`` is ``word`` less trailing punctuation and names a file."""
    end = len(word)
    while end > 0 and word[end - 1] in _TRAILING:
        end -= 1
        if _is_file(word[:end], cwd):
            return word[:end], word[end:]
    return None


def _fenced_spans(text: str) -> list[tuple[int, int]]:
    """Where the Markdown code fences of ``text`` are (start, end): ``@`` in them stays, so
    decorators in pasted code and a re-sent prompt's files are never read again."""
    spans: list[tuple[int, int]] = []
    opened: tuple[int, str] | None = None
    pos = 0
    for line in text.splitlines(keepends=True):
        m = re.match(r" {0,3}(`{3,}|~{3,})", line)
        if m:
            mark = m.group(1)
            if opened is None:
                opened = (pos, mark)
            elif (
                mark[0] == opened[1][0]
                and len(mark) >= len(opened[1])
                and not line[m.end() :].strip()
            ):
                spans.append((opened[0], pos + len(line)))
                opened = None
        pos += len(line)
    if opened is not None:
        spans.append((opened[0], len(text)))
    return spans


def expand(text: str, cwd: Path | None = None, limit: int = MAX_FILE_BYTES) -> Expanded:
    """``text`` with each ``@file`` word replaced by the file's fenced text.

    Raises ``FileRefError`` for a named file that is too large or not text (nothing is half
    expanded: the caller keeps the prompt as typed)."""
    if "@" not in text:
        return Expanded(text, ())
    base = Path.cwd() if cwd is None else cwd
    files: list[AttachedFile] = []
    out: list[str] = []
    pos = 0
    spans = _fenced_spans(text) if "```" in text or "~~~" in text else []
    for m in _WORD.finditer(text):
        if any(a <= m.start() < b for a, b in spans):
            continue
        escaped, quoted, bare = m.group(1), m.group(2), m.group(3)
        out.append(text[pos : m.start()])
        pos = m.end()
        if escaped:
            out.append(m.group(0)[1:])  # '@@x' sends '@x'
            continue
        name, rest = (quoted, "") if quoted is not None else (bare, "")
        if not _is_file(name, base):
            split = None if quoted is not None else _split_trailing(bare, base)
            if split is None:
                out.append(m.group(0))
                continue
            name, rest = split
        path = _resolve(name, base)
        content = read_text_file(name, path, limit)
        files.append(AttachedFile(name, path, len(content.encode("utf-8"))))
        out.append(fenced(name, content) + rest)
    out.append(text[pos:])
    return Expanded("".join(out), tuple(files))


def prepend_files(prompt: str, names: Iterable[str], cwd: Path | None = None) -> Expanded:
    """``ask -f``: each named file's fenced text, then the prompt as given.

    ``@`` words in a headless prompt stay as typed: it may come from a pipe, and text from
    elsewhere must not choose which local files are sent to a provider."""
    base = Path.cwd() if cwd is None else cwd
    blocks: list[str] = []
    files: list[AttachedFile] = []
    for name in names:
        path = _resolve(name, base)
        if not path.is_file():
            raise FileRefError(f"{name}: no such file")
        content = read_text_file(name, path)
        files.append(AttachedFile(name, path, len(content.encode("utf-8"))))
        blocks.append(fenced(name, content))
    return Expanded("\n\n".join([*blocks, prompt]), tuple(files))


def complete(word: str, cwd: Path | None = None, most: int = 50) -> list[str]:
    """Tab completion of an ``@`` word: the ``@``-words the file system offers, sorted;
    directories end in ``/`` so Tab can go on into them. Hidden names only after a dot."""
    if not word.startswith("@") or word.startswith("@@"):
        return []
    typed = word[1:].removeprefix('"')
    base = Path.cwd() if cwd is None else cwd
    head, sep, prefix = typed.rpartition("/")
    folder = (Path("/") if not head else _resolve(head, base)) if sep else base
    stem = typed[: len(typed) - len(prefix)]
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    out: list[str] = []
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        if entry.name.startswith(".") and not prefix.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            continue
        name = f"{stem}{entry.name}{'/' if is_dir else ''}"
        out.append(f'@"{name}"' if any(c.isspace() for c in name) and not is_dir else f"@{name}")
        if len(out) >= most:
            break
    return out

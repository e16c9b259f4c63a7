"""What the terminal sends, read the way xterm, VTE and tmux mean it (Textual 8 internals).

Three changes to how Textual turns the terminal's bytes into events, made in this one module
through ``tui.textual_private`` (pyproject pins Textual; ``tests/test_terminal_input.py`` checks
each against Textual's own parser and driver, so an upgrade that moves them fails a test, not a
user):

- **Invalid UTF-8 no longer kills the input thread.** The Linux driver decodes stdin with a
  strict incremental UTF-8 decoder; one stray byte (a paste of a binary log, a ``0xFF``)
  raised ``UnicodeDecodeError`` in the input thread and the app exited. Bytes that are not
  UTF-8 now arrive as U+FFFD, the way terminals show them.
- **Alt+key is a key, not a character.** ``ESC g`` became ``alt+g`` carrying the character
  ``g``, so the prompt (a text area) typed ``g`` and the Alt+G binding never ran; the same key
  under the kitty keyboard protocol (``CSI 103;3u``) carries no character and worked; and
  ``ESC Enter`` lost its Alt and sent the prompt. Both forms now arrive alike, as a key the
  bindings see.
- **ESC followed by a digit is Alt+digit.** Textual maps ``ESC 1`` … ``ESC 0`` (and ``ESC -``,
  ``ESC =``, ``ESC §``) to the characters macOS composes for Option+key under WezTerm (``™``
  for ``ESC 2``). xterm, VTE, the Linux console, screen and tmux send exactly those bytes for
  Alt+1 … Alt+0, so Alt+2 typed ``™`` instead of cancelling pane B. They are Alt+key again.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Iterator
from typing import Any

# Textual's WezTerm-on-macOS entries: ESC + key → the character Option+key composes.
OPTION_COMPOSED = ("\x1b§", *(f"\x1b{d}" for d in "1234567890"), "\x1b-", "\x1b=")

_installed = False


def tolerant_decoder(encoding: str) -> Callable[..., codecs.IncrementalDecoder]:
    """``codecs.getincrementaldecoder`` whose decoders replace undecodable bytes with U+FFFD."""
    factory = codecs.getincrementaldecoder(encoding)

    def make(errors: str = "replace") -> codecs.IncrementalDecoder:
        return factory(errors)

    return make


def install() -> None:
    """Apply the three changes (idempotent); call before ``App.run``."""
    global _installed
    if _installed:
        return
    from textual import events

    from tui.textual_private import ansi_sequence_keys, set_input_decoder, wrap_key_events

    def sequence_to_key_events(
        to_keys: Callable[..., Iterable[events.Key]], parser: Any, sequence: str, alt: bool
    ) -> Iterator[events.Key]:
        for key in to_keys(parser, sequence, alt):
            if not alt or key.key == "escape":
                yield key
            elif key.key.startswith("alt+"):
                yield events.Key(key.key, None)
            else:  # ESC Enter came out as plain Enter (sending the prompt), ESC Tab as Tab
                yield events.Key(f"alt+{key.key}", None)

    wrap_key_events(sequence_to_key_events)
    set_input_decoder(tolerant_decoder)
    table = ansi_sequence_keys()
    for seq in OPTION_COMPOSED:
        table.pop(seq, None)
    _installed = True

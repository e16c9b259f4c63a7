"""Headless subcommands: plain text on stdout/stderr, no textual or rich."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def dispatch(command: str, argv: Sequence[str]) -> int:
    """Run one headless subcommand and return its exit status."""
    from providers.config import ConfigError

    try:
        if command == "ask":
            from tui.headless.ask import main as run
        elif command == "models":
            from tui.headless.models import main as run
        elif command == "keys":
            from tui.headless.keys import main as run
        elif command == "endpoints":
            from tui.headless.endpoints import main as run
        elif command == "replay":
            from tui.headless.replay import main as run
        elif command == "load":
            from tui.headless.load import main as run
        elif command == "export":
            from tui.headless.export import main as run
        elif command == "stats":
            from tui.headless.stats import main as run
        elif command == "serve":
            try:
                from tui.headless.serve import main as run
            except ImportError as exc:
                print(
                    f"tokenrace serve needs the serve extra ({exc.name} is missing): "
                    "pip install 'tokenrace[serve]'",
                    file=sys.stderr,
                )
                return 2
        else:
            print(f"tokenrace: unknown command {command!r}", file=sys.stderr)
            return 2
        return run(list(argv))
    except ConfigError as exc:
        print(f"tokenrace: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ntokenrace: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `tokenrace ask … | head` closed our stdout: not an error worth a traceback.
        try:
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115
        except OSError:
            pass
        return 0

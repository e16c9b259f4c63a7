"""Everything that talks to a model and measures it. Never imports textual, rich, tui or themes."""

import sys

# httpx imports its command-line client (click, rich, pygments: ~40 ms) whenever click is
# installed, as it is beside llama-cpp-python's server (tokenrace[local]). tokenrace never runs
# that client; a None entry makes httpx fall back to its stub, and keeps rich out of the engine.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

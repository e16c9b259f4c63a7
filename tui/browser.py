"""The app in a browser tab (``tokenrace serve``): what copying can do there."""

from __future__ import annotations

import os

# Set by `tokenrace serve` in each app process: "secure" when the page is a secure context
# (loopback, or https with --cert/--key), where the browser's clipboard takes the copy; anything
# else means the page cannot copy.
BROWSER_ENV = "TOKENRACE_BROWSER"

COPY_UNAVAILABLE = (
    "Copying is unavailable here: the browser allows it only on a secure page (https, or "
    "localhost). Start `tokenrace serve` with --cert and --key to serve https."
)


def copy_problem(in_browser: bool) -> str | None:
    """Why copying cannot work in this browser tab, or None when it can (or not in a browser)."""
    if not in_browser or os.environ.get(BROWSER_ENV) == "secure":
        return None
    return COPY_UNAVAILABLE

"""Run the tests that guard our use of private library APIs against the newest releases.

    python tests/upgrade_check.py [--keep DIR]

Builds a throwaway venv, installs tokenrace with its test tools, upgrades the pinned libraries
we reach into (textual, rich, httpx, httpcore, httpx-sse) to their newest releases, and runs the
tests that compare our paths with theirs: the compositor and render paths, the snapshots, the
streaming markdown view, the selection/theme contracts, the SSE samples, the read path
(httpx-sse's SSEDecoder, h11's chunked bodies) and the timing tests (httpcore's network
backend stamps t0). A green run means the pins in pyproject.toml can move
to the versions it prints. Never part of .ci/run: it downloads whatever is newest today.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PINNED = ["textual", "rich", "httpx", "httpcore", "httpx-sse"]
GUARDS = [
    "tests/test_render_paths.py",
    "tests/test_snapshots.py",
    "tests/test_streaming_markdown.py",
    "tests/test_textual_contracts.py",
    "tests/test_sse_samples.py",
    "tests/test_fast_read_path.py",
    "tests/test_timing.py",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="build the venv here and keep it")
    args = parser.parse_args()
    venv = args.keep or Path(tempfile.mkdtemp(prefix="tokenrace-upgrade-")) / "venv"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-e", f"{REPO}[dev]"], check=True)
    # --no-deps: the newest of each, even where tokenrace's pins say otherwise.
    subprocess.run([*pip, "--upgrade", "--no-deps", *PINNED], check=True)
    versions = subprocess.run(
        [str(py), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wanted = {name.replace("-", "_") for name in PINNED}
    for line in versions.splitlines():
        if line.split("==")[0].lower().replace("-", "_") in wanted:
            print(line)
    tests = subprocess.run([str(py), "-m", "pytest", "-q", *GUARDS], cwd=REPO, check=False)
    return tests.returncode


if __name__ == "__main__":
    sys.exit(main())

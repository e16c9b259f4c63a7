"""Same-run A/B: the benchmark rows of an older commit and of this tree, interleaved.

    python bench/ab.py --base d703755 --only render_lag cpu cold_start --rounds 2

The older commit is checked out into a git worktree beside the cache (once); each round runs
``bench/run.py --only …`` in both trees, in alternating order, so the two versions see the same
machine over the same minutes. For every row the headline figure (the first number of its
"measured" column) is compared as a ratio of medians over the rounds; a row is worse when the
new figure is more than ``--margin`` (10 %) in the wrong direction. Prints a table and writes
bench/results/ab.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import Row, as_installed, print_table, write_json  # noqa: E402

# A number not glued to a letter or digit before it ("p99 0.58" reads 0.58, not 99).
_NUMBER = re.compile(r"(?<![A-Za-z\d.])\d[\d,]*(?:\.\d+)?")
# Rows whose headline figure is better when higher (rates); every other figure is a time,
# a share of a core, or a size, and better when lower.
_HIGHER_IS_BETTER = ("sustainable", "rate", "tok/s a pane", "streams")


def headline(measured: str) -> float | None:
    """The first number in a row's measured column, or None (skipped, crashed)."""
    m = _NUMBER.search(measured)
    return float(m.group(0).replace(",", "")) if m else None


def higher_is_better(row_name: str) -> bool:
    low = row_name.lower()
    return any(word in low for word in _HIGHER_IS_BETTER) and "lag" not in low


def worktree_at(rev: str) -> Path:
    """A git worktree of ``rev`` (made once, kept for later runs)."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", rev],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    path = Path(tempfile.gettempdir()) / f"tokenrace-ab-{sha}"
    if not (path / "bench" / "run.py").exists():
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), sha],
            check=True,
            capture_output=True,
        )
    return path


def run_rows(tree: Path, names: list[str]) -> list[Row]:
    """``bench/run.py --only NAMES`` in ``tree``, its rows."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(tree / "bench" / "run.py"), "--rows-json", str(out)]
        subprocess.run([*cmd, "--only", *names], cwd=tree, check=False)
        if not out.exists():
            return []
        return [Row(**r) for r in json.loads(out.read_text())]


def compare(old: dict[str, list[float]], new: dict[str, list[float]], margin: float) -> list[Row]:
    rows: list[Row] = []
    for name in sorted(set(old) & set(new)):
        if not old[name] or not new[name]:
            continue
        a, b = statistics.median(old[name]), statistics.median(new[name])
        up = higher_is_better(name)
        ratio = (b / a) if a else float("inf") if b else 1.0
        worse = ratio < 1 - margin if up else ratio > 1 + margin
        rows.append(
            Row(
                name,
                f"new within {margin:.0%} of old ({'higher' if up else 'lower'} is better)",
                f"{a:g} → {b:g} ({ratio:.2f}×)",
                not worse,
                {"old": old[name], "new": new[name], "ratio": ratio},
            )
        )
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True, help="the older commit (git rev)")
    p.add_argument("--only", nargs="+", required=True, help="bench/run.py row groups")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--margin", type=float, default=0.10)
    ns = p.parse_args()
    base = worktree_at(ns.base)
    for tree in (base, REPO):  # both from bytecode, as installed (an older run.py did not)
        as_installed(tree)
    old: dict[str, list[float]] = {}
    new: dict[str, list[float]] = {}
    started = time.monotonic()
    for round_no in range(ns.rounds):
        order = [(base, old), (REPO, new)]
        for tree, into in order if round_no % 2 == 0 else order[::-1]:
            for row in run_rows(tree, ns.only):
                value = headline(row.measured)
                if value is not None:
                    into.setdefault(row.name, []).append(value)
    rows = compare(old, new, ns.margin)
    print()
    print_table(rows)
    path = write_json("ab", rows, {"base": ns.base, "rounds": ns.rounds, "only": ns.only})
    print(f"\n{time.monotonic() - started:.0f} s · wrote {path}")
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Run ``tokenrace load --ray local:4`` against the mock server and record what Ray listened on.

Meant to run inside a private network namespace (tests/test_load_ray.py starts it under
``unshare``), whose only interface is loopback: Ray's own servers bind the wildcard address
whatever ``_node_ip_address`` says, and there the wildcard is loopback. Writes one JSON file:
the command's exit status and output, its ``--json`` document, the server's log, every
listening socket of the command's process tree, and the namespace's interfaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from tests.support.mock_server import MockServerProcess


def listeners(root: psutil.Process) -> set[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket under ``root``."""
    out: set[tuple[str, str, int]] = set()
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return out
    for p in procs:
        try:
            name = p.name()
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    out.add((name, c.laddr.ip, c.laddr.port))
        except psutil.Error:
            continue
    return out


def main(out_path: str, home: str, scenario: str, *args: str) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    with MockServerProcess(scenarios={"grow": json.loads(scenario)}) as server:
        Path(home, "config.toml").write_text(
            f'[endpoints.mock]\nbase_url = "{server.base_url}"\n', encoding="utf-8"
        )
        suite = Path(home, "suite.jsonl")
        suite.write_text(
            "".join(json.dumps({"prompt": f"prompt {i}"}) + "\n" for i in range(16)),
            encoding="utf-8",
        )
        doc_path = Path(home, "load.json")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "load", str(suite), "-m", "mock/grow", *args,
             "--json", str(doc_path)],
            env=dict(os.environ, TOKENRACE_HOME=home, RAY_USAGE_STATS_ENABLED="0"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        root = psutil.Process(proc.pid)
        seen: set[tuple[str, str, int]] = set()
        while proc.poll() is None:
            seen |= listeners(root)
            time.sleep(0.3)
        stdout, stderr = proc.communicate()
        result: dict[str, Any] = {
            "rc": proc.returncode,
            "stdout": stdout,
            "stderr": stderr[-4000:],
            "doc": json.loads(doc_path.read_text()) if doc_path.exists() else None,
            "log": [r for r in server.log() if r["path"] == "/v1/chat/completions"],
            "listeners": sorted(seen),
            "interfaces": sorted(psutil.net_if_addrs()),
        }
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

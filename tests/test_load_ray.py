"""``tokenrace load --ray local:4``: the same sweep on four Ray actors, on loopback only.

Ray starts slowly, so it starts once for this module: one run of the command, in a private
network namespace (``unshare``), whose record every test here reads.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.support.cli import REPO
from tests.test_load import GROWING, SLO, check_against_log, favoured
from tui.session.load import parse_slo

pytest.importorskip("ray", reason="the scale extra (pip install -e '.[dev]') installs Ray")


def _netns_prefix() -> list[str] | None:
    """``unshare`` as root, or in a user namespace: a network namespace with loopback only."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    for prefix in (["unshare", "--net"], ["unshare", "--user", "--map-root-user", "--net"]):
        ok = subprocess.run([*prefix, "true"], capture_output=True, check=False)
        if ok.returncode == 0:
            return prefix
    return None


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    prefix = _netns_prefix()
    if prefix is None:
        pytest.skip("needs unshare and ip, and the right to make a network namespace")
    tmp = tmp_path_factory.mktemp("ray")
    home = tmp / "home"
    home.mkdir()
    out = tmp / "run.json"
    env = dict(os.environ, TOKENRACE_HOME=str(home), PYTHONPATH=str(REPO))
    r = subprocess.run(
        [*prefix, sys.executable, "-m", "tests.support.ray_sweep", str(out), str(home),
         json.dumps(GROWING), "--concurrency", "1,4", "--requests", "12", "--slo", SLO,
         "--ray", "local:4"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        preexec_fn=favoured,  # Ray's processes, the actors and the mock server inherit it
        start_new_session=True,
    )  # fmt: skip
    assert r.returncode == 0 and out.exists(), r.stdout + r.stderr
    run: dict[str, Any] = json.loads(out.read_text())
    assert run["rc"] == 0 and run["doc"] is not None, run["stderr"]
    return run


def test_ray_local_4_gives_the_same_steps_from_every_actor(ray_run: dict[str, Any]) -> None:
    doc = ray_run["doc"]
    assert doc["shards"] == 4 and doc["ray"] == "ray: 4 actors"
    steps = doc["steps"]
    assert [len(s["requests"]) for s in steps] == [12, 12]  # the same count as one process
    # One stream: one actor sends it all; four streams: one each, every actor answering.
    assert len({q["shard"] for q in steps[0]["requests"]}) == 1
    assert {q["shard"] for q in steps[1]["requests"]} == {f"actor-{i}" for i in range(1, 5)}
    assert len({h["pid"] for h in steps[1]["health"]}) == 4  # four engine processes
    log = sorted(ray_run["log"], key=lambda r: r["received_ns"])
    assert len(log) == 24
    check_against_log(steps, log, parse_slo(SLO))


def test_every_ray_listener_is_on_loopback(ray_run: dict[str, Any]) -> None:
    # The namespace has no interface but loopback, so a wildcard bind (Ray's GCS and raylet
    # bind 0.0.0.0 / :: whatever the node address) reaches 127.0.0.1 and nothing else.
    assert ray_run["interfaces"] == ["lo"]
    names = {name for name, _, _ in ray_run["listeners"]}
    assert {"gcs_server", "raylet"} <= names, ray_run["listeners"]
    for name, ip, port in ray_run["listeners"]:
        addr = ipaddress.ip_address(ip)
        mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1
        loopback = addr.is_loopback or (mapped is not None and mapped.is_loopback)
        assert loopback or addr.is_unspecified, (name, ip, port)
    # Not a vacuous pass: Ray's node address in there was loopback too.
    assert any(ip.endswith("127.0.0.1") for _, ip, _ in ray_run["listeners"])

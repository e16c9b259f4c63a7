"""The metrics log and its Prometheus file: concurrent writers, incremental reading, escaping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from providers.config import Config, load_config
from providers.metrics import EMPTY_METRICS
from tui.session.metrics_log import append_record, log_path, run_record

WRITES_EACH = 40

WRITER = """
import sys, time
from pathlib import Path
from dataclasses import replace
from providers.config import load_config
from providers.metrics import EMPTY_METRICS
from tui.session.metrics_log import append_record, run_record

config = load_config(Path(sys.argv[1]))
who, n, go = sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
import prometheus_client  # imported now, so that both writers start writing together
Path(f"{go}.{who}").touch()
while not go.exists():
    time.sleep(0.001)
for i in range(n):
    m = replace(EMPTY_METRICS, status="complete", output_tokens=i + 1, ttft_ms=50.0 + i)
    err = append_record(run_record(f"mock/{who}", "mock", m), config)
    assert err is None, err
"""


def _config(home: Path, prom: Path) -> tuple[Config, Path]:
    path = home / "config.toml"
    path.write_text(f"[metrics]\nprometheus_file = {json.dumps(str(prom))}\n")
    return load_config(path), path


def _samples(prom: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(prom.read_text(encoding="utf-8"))
        for s in fam.samples
    }


def test_two_writers_at_once_lose_nothing_and_count_nothing_twice(isolated_home: Path) -> None:
    """The app and ``ask`` (here: two processes) append at the same moment, each refreshing
    the Prometheus file from where the log was last read."""
    prom = isolated_home / "tokenrace.prom"
    _, cfg = _config(isolated_home, prom)
    go = isolated_home / "go"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(cfg), who, str(WRITES_EACH), str(go)],
            env=dict(os.environ),
        )
        for who in ("a", "b")
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.{who}").exists() for who in ("a", "b")):
        assert time.monotonic() < deadline and all(w.poll() is None for w in writers)
        time.sleep(0.01)
    go.touch()  # both imported and waiting: they start together
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    lines = log_path().read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 * WRITES_EACH
    records = [json.loads(line) for line in lines]
    # The two writers' lines interleave (they really ran at once) and none is torn.
    models = [r["model"] for r in records]
    assert models != sorted(models), "the writers did not overlap; the test proved nothing"
    samples = _samples(prom)
    want_tokens = sum(range(1, WRITES_EACH + 1))
    for who in ("a", "b"):
        model = (("model", f"mock/{who}"),)
        assert samples[("tokenrace_requests_total", (*model, ("status", "complete")))] == (
            WRITES_EACH
        )
        assert samples[("tokenrace_tokens_total", (("kind", "output"), *model))] == want_tokens
        assert samples[("tokenrace_ttft_seconds_count", model)] == WRITES_EACH
    totals = json.loads((log_path().parent / "runs.jsonl.totals").read_text())
    assert totals["offset"] == log_path().stat().st_size


def test_the_log_is_read_from_where_it_was_last_read(isolated_home: Path) -> None:
    """A reply reads only the lines after the last offset: a line already counted is not
    read again (here it is overwritten in place, and the count does not change)."""
    from dataclasses import replace

    prom = isolated_home / "tokenrace.prom"
    config, _ = _config(isolated_home, prom)
    m = replace(EMPTY_METRICS, status="complete", output_tokens=5)
    assert append_record(run_record("mock/first", "mock", m), config) is None
    log = log_path()
    log.write_bytes(log.read_bytes().replace(b"mock/first", b"mock/FIRST"))
    assert append_record(run_record("mock/second", "mock", m), config) is None
    models = {dict(k[1]).get("model") for k in _samples(prom) if k[0].startswith("tokenrace_")}
    assert models == {"mock/first", "mock/second"}
    # A log cut short (rotated by the user) is read again from its start.
    log.write_text("")
    assert append_record(run_record("mock/third", "mock", m), config) is None
    models = {dict(k[1]).get("model") for k in _samples(prom) if k[0].startswith("tokenrace_")}
    assert models == {"mock/third"}


def test_a_hostile_model_name_stays_one_label_value(isolated_home: Path) -> None:
    """A model id from a server that tries to end the label and forge a series is escaped."""
    from dataclasses import replace

    prom = isolated_home / "tokenrace.prom"
    config, _ = _config(isolated_home, prom)
    hostile = 'evil"} 1\ntokenrace_cost_usd_total{model="victim"} 1e9\n# \\ \ud800'
    m = replace(EMPTY_METRICS, status="complete", output_tokens=3, cost_usd=0.25)
    assert append_record(run_record(f"mock/{hostile}", "mock", m), config) is None
    samples = _samples(prom)
    models = {dict(labels).get("model") for _, labels in samples}
    assert models == {"mock/" + hostile.replace("\ud800", "\ufffd")}
    assert (
        samples[
            (
                "tokenrace_cost_usd_total",
                (("model", f"mock/{hostile}".replace("\ud800", "\ufffd")),),
            )
        ]
        == 0.25
    )

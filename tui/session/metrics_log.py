"""The metrics log: one JSON line per completed run, for dashboards; and the Prometheus file.

``runs.jsonl`` under the data dir gets one object per finished reply (model, endpoint, status,
every timing, tokens, cost). When ``[metrics] prometheus_file`` is set, a text-format file for
node_exporter's textfile collector is rewritten atomically after each run, from the totals of
the whole log (so it survives restarts and equals sums over the stored runs).

The app, ``ask`` and ``replay`` may append at once. Each append takes a lock on
``runs.jsonl.lock``, writes its line, and (with a Prometheus file) folds the lines after the
offset it last read into running totals, kept with that offset in ``runs.jsonl.totals`` (one
atomic write, so a crash never counts a line twice). Reading stays proportional to the new
lines, not to the whole log.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from providers import paths, secrets
from providers.config import Config, atomic_write_text
from providers.inert import json_inert
from providers.metrics import OK_STATUSES, RunMetrics

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

TTFT_BUCKETS_MS = (100, 250, 500, 1000, 2000, 5000, 10000, 30000)
DECODE_BUCKETS_TPS = (10, 25, 50, 100, 200, 500, 1000)
TOKEN_KINDS = (
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cached", "cached_tokens"),
    ("reasoning", "reasoning_tokens"),
)


def log_path() -> Path:
    return paths.data_dir() / "runs.jsonl"


def run_record(
    model: str,
    endpoint: str,
    m: RunMetrics,
    *,
    source: str = "tui",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One line of the metrics log."""
    rec: dict[str, Any] = {
        "ts": round(time.time(), 3),
        "source": source,
        "model": model,
        "endpoint": endpoint,
        "status": m.status,
        **m.to_json(),
    }
    if extra:
        rec.update(extra)
    return rec


def append_record(rec: dict[str, Any], config: Config | None = None) -> str | None:
    """Append ``rec`` (and refresh the Prometheus file); an error message instead of raising."""
    path = log_path()
    prom = config.metrics.prometheus_file if config is not None else None
    # json_inert: `tail -f runs.jsonl` on a terminal shows model ids, never obeys them.
    line = json_inert(secrets.redact(json.dumps(rec, ensure_ascii=False))) + "\n"
    try:
        paths.ensure_dir(path.parent)
        with _locked(path.with_name(path.name + ".lock")):
            try:
                with path.open("a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError as exc:
                return f"could not append to the metrics log {path}: {exc.strerror or exc}"
            if prom is None:
                return None
            try:
                totals = Totals.catch_up(path)
                atomic_write_text(prom, prometheus_text(totals))
            except OSError as exc:
                return f"could not write the Prometheus file {prom}: {exc.strerror or exc}"
    except OSError as exc:
        return f"could not lock the metrics log {path}: {exc.strerror or exc}"
    return None


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (other processes wait)."""
    with lock_path.open("a+b") as fh:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def log_recovered(rows: list[Any], config: Config | None) -> str | None:
    """Log the runs a killed process left unfinished (``Store.recovered``) as interrupted."""
    from providers.metrics import metrics_from_record

    if config is not None and not (config.metrics.log or config.metrics.prometheus_file):
        return None
    for row in rows:
        rec = run_record(
            row["model"], row["endpoint"], metrics_from_record(row), extra={"recovered": True}
        )
        rec["ts"] = round(row["finished_at"] or time.time(), 3)
        err = append_record(rec, config)
        if err:
            return err
    return None


@dataclass
class Histogram:
    """Counts per bucket (not cumulative), the count and the sum of one model's values."""

    buckets: list[int]
    count: int = 0
    total: float = 0.0

    def add(self, x: float, bounds: tuple[float, ...]) -> None:
        for i, b in enumerate(bounds):
            if x <= b:
                self.buckets[i] += 1
                break
        self.count += 1
        self.total += x


@dataclass
class Totals:
    """Sums over the log up to ``offset`` bytes of the file ``log_id`` (device, inode)."""

    offset: int = 0
    log_id: list[int] = field(default_factory=list)
    tokens: dict[str, dict[str, int]] = field(default_factory=dict)  # model → kind → n
    requests: dict[str, dict[str, int]] = field(default_factory=dict)  # model → status → n
    cost: dict[str, float] = field(default_factory=dict)
    ttft: dict[str, Histogram] = field(default_factory=dict)  # seconds
    decode: dict[str, Histogram] = field(default_factory=dict)  # tokens per second

    def add(self, r: dict[str, Any]) -> None:
        """Count one record of the log."""
        model, status = str(r.get("model")), str(r.get("status"))
        by_status = self.requests.setdefault(model, {})
        by_status[status] = by_status.get(status, 0) + 1
        for kind, key in TOKEN_KINDS:
            v = r.get(key)
            if isinstance(v, int) and not isinstance(v, bool):
                by_kind = self.tokens.setdefault(model, {})
                by_kind[kind] = by_kind.get(kind, 0) + v
        if isinstance(r.get("cost_usd"), int | float):
            self.cost[model] = self.cost.get(model, 0.0) + float(r["cost_usd"])
        if status in OK_STATUSES:
            if isinstance(r.get("ttft_ms"), int | float):
                h = self.ttft.setdefault(model, Histogram([0] * len(TTFT_BUCKETS_MS)))
                h.add(float(r["ttft_ms"]) / 1000, _TTFT_BOUNDS_S)
            if isinstance(r.get("decode_tps"), int | float):
                h = self.decode.setdefault(model, Histogram([0] * len(DECODE_BUCKETS_TPS)))
                h.add(float(r["decode_tps"]), _DECODE_BOUNDS)

    def fold(self, data: bytes) -> None:
        """Count the complete lines of ``data`` (lines that do not parse are skipped)."""
        for raw in data.splitlines():
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict):
                self.add(rec)

    @staticmethod
    def catch_up(log: Path) -> Totals:
        """The totals over the whole log, reading only the lines after the saved offset.

        Call with the log's lock held. A log replaced or cut short since is read from the start.
        """
        state = log.with_name(log.name + ".totals")
        totals = Totals.load(state)
        st = log.stat()
        log_id = [st.st_dev, st.st_ino]
        if totals.log_id != log_id or st.st_size < totals.offset:
            totals = Totals(log_id=log_id)
        with log.open("rb") as fh:
            fh.seek(totals.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a line still being written (no lock: an old version) waits
        totals.fold(data[:end])
        totals.offset += end
        atomic_write_text(state, json.dumps(totals.to_json()))
        return totals

    @staticmethod
    def load(state: Path) -> Totals:
        """The saved totals; empty when missing or unreadable (then the log is read whole)."""
        try:
            d = json.loads(state.read_text(encoding="utf-8"))
            return Totals(
                offset=int(d["offset"]),
                log_id=[int(x) for x in d["log_id"]],
                tokens=d["tokens"],
                requests=d["requests"],
                cost=d["cost"],
                ttft={m: Histogram(**h) for m, h in d["ttft"].items()},
                decode={m: Histogram(**h) for m, h in d["decode"].items()},
            )
        except (OSError, ValueError, KeyError, TypeError):
            return Totals()

    def to_json(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "log_id": self.log_id,
            "tokens": self.tokens,
            "requests": self.requests,
            "cost": self.cost,
            "ttft": {m: vars(h) for m, h in self.ttft.items()},
            "decode": {m: vars(h) for m, h in self.decode.items()},
        }


_TTFT_BOUNDS_S = tuple(b / 1000 for b in TTFT_BUCKETS_MS)
_DECODE_BOUNDS = tuple(float(b) for b in DECODE_BUCKETS_TPS)


def _label(value: str) -> str:
    """A label value that encodes: a lone surrogate (JSON allows one) becomes U+FFFD.

    Quotes, backslashes and newlines are the client's to escape.
    """
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def prometheus_text(totals: Totals) -> str:
    """Counters and histograms of ``totals`` in the Prometheus text format, by prometheus_client
    (imported only here: only a configured Prometheus file pays for it)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    def histogram(
        name: str, doc: str, data: dict[str, Histogram], bounds: tuple[float, ...]
    ) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(name, doc, labels=["model"])
        for model, h in sorted(data.items()):
            cumulative, buckets = 0, []
            for b, n in zip(bounds, h.buckets, strict=True):
                cumulative += n
                buckets.append((f"{b:g}", float(cumulative)))
            buckets.append(("+Inf", float(h.count)))
            fam.add_metric([_label(model)], buckets, h.total)
        return fam

    class Families:
        def collect(self) -> Iterator[Any]:
            tokens = CounterMetricFamily(
                "tokenrace_tokens", "Tokens by model and kind.", labels=["model", "kind"]
            )
            for model, by_kind in sorted(totals.tokens.items()):
                for kind, n in sorted(by_kind.items()):
                    tokens.add_metric([_label(model), kind], n)
            requests = CounterMetricFamily(
                "tokenrace_requests",
                "Requests by model and final status.",
                labels=["model", "status"],
            )
            for model, by_status in sorted(totals.requests.items()):
                for status, n in sorted(by_status.items()):
                    requests.add_metric([_label(model), _label(status)], n)
            cost = CounterMetricFamily(
                "tokenrace_cost_usd", "Cost in US dollars by model.", labels=["model"]
            )
            for model, usd in sorted(totals.cost.items()):
                cost.add_metric([_label(model)], usd)
            yield tokens
            yield requests
            yield cost
            yield histogram(
                "tokenrace_ttft_seconds",
                "Time to first token of completed replies.",
                totals.ttft,
                _TTFT_BOUNDS_S,
            )
            yield histogram(
                "tokenrace_decode_tokens_per_second",
                "Decode rate of completed replies.",
                totals.decode,
                _DECODE_BOUNDS,
            )

    registry = CollectorRegistry(auto_describe=False)
    collector: Collector = Families()
    registry.register(collector)
    return generate_latest(registry).decode("utf-8")

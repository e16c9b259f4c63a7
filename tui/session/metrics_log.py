"""The metrics log: one JSON line per completed run, for dashboards; and the Prometheus file.

``runs.jsonl`` under the data dir gets one object per finished reply (model, endpoint, status,
every timing, tokens, cost). When ``[metrics] prometheus_file`` is set, a text-format file for
node_exporter's textfile collector is rewritten atomically after each run, from the totals of
the whole log (so it survives restarts and equals sums over the stored runs).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from providers import paths, secrets
from providers.config import Config, atomic_write_text
from providers.inert import json_inert
from providers.metrics import RunMetrics

TTFT_BUCKETS_MS = (100, 250, 500, 1000, 2000, 5000, 10000, 30000)
DECODE_BUCKETS_TPS = (10, 25, 50, 100, 200, 500, 1000)


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
    try:
        paths.ensure_dir(path.parent)
        with path.open("a", encoding="utf-8") as fh:
            # json_inert: `tail -f runs.jsonl` on a terminal shows model ids, never obeys them.
            fh.write(json_inert(secrets.redact(json.dumps(rec, ensure_ascii=False))) + "\n")
    except OSError as exc:
        return f"could not append to the metrics log {path}: {exc.strerror or exc}"
    if config is not None and config.metrics.prometheus_file is not None:
        try:
            write_prometheus(config.metrics.prometheus_file, read_records(path))
        except OSError as exc:
            return (
                f"could not write the Prometheus file {config.metrics.prometheus_file}: "
                f"{exc.strerror or exc}"
            )
    return None


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


def read_records(path: Path | None = None) -> list[dict[str, Any]]:
    """Every record of the log (lines that do not parse are skipped)."""
    out: list[dict[str, Any]] = []
    try:
        with (path or log_path()).open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    out.append(rec)
    except FileNotFoundError:
        pass
    return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(records: list[dict[str, Any]]) -> str:
    """Counters and histograms over ``records`` in the Prometheus text format."""
    tokens: dict[tuple[str, str], int] = {}
    requests: dict[tuple[str, str], int] = {}
    cost: dict[str, float] = {}
    ttft: dict[str, list[float]] = {}
    decode: dict[str, list[float]] = {}
    for r in records:
        model = str(r.get("model"))
        requests[(model, str(r.get("status")))] = requests.get((model, str(r.get("status"))), 0) + 1
        for kind, key in (
            ("input", "input_tokens"),
            ("output", "output_tokens"),
            ("cached", "cached_tokens"),
            ("reasoning", "reasoning_tokens"),
        ):
            v = r.get(key)
            if isinstance(v, int):
                tokens[(model, kind)] = tokens.get((model, kind), 0) + v
        if isinstance(r.get("cost_usd"), (int, float)):
            cost[model] = cost.get(model, 0.0) + float(r["cost_usd"])
        if r.get("status") in ("complete", "length"):
            if isinstance(r.get("ttft_ms"), (int, float)):
                ttft.setdefault(model, []).append(float(r["ttft_ms"]))
            if isinstance(r.get("decode_tps"), (int, float)):
                decode.setdefault(model, []).append(float(r["decode_tps"]))
    out: list[str] = []
    out += [
        "# HELP tokenrace_tokens_total Tokens by model and kind.",
        "# TYPE tokenrace_tokens_total counter",
    ]
    for (model, kind), v in sorted(tokens.items()):
        out.append(f'tokenrace_tokens_total{{model="{_label(model)}",kind="{kind}"}} {v}')
    out += [
        "# HELP tokenrace_requests_total Requests by model and final status.",
        "# TYPE tokenrace_requests_total counter",
    ]
    for (model, status), v in sorted(requests.items()):
        out.append(f'tokenrace_requests_total{{model="{_label(model)}",status="{status}"}} {v}')
    out += [
        "# HELP tokenrace_cost_usd_total Cost in US dollars by model.",
        "# TYPE tokenrace_cost_usd_total counter",
    ]
    for model, v in sorted(cost.items()):
        out.append(f'tokenrace_cost_usd_total{{model="{_label(model)}"}} {v!r}')
    out += _histogram(
        "tokenrace_ttft_seconds",
        "Time to first token of completed replies.",
        {m: [x / 1000 for x in xs] for m, xs in ttft.items()},
        [b / 1000 for b in TTFT_BUCKETS_MS],
    )
    out += _histogram(
        "tokenrace_decode_tokens_per_second",
        "Decode rate of completed replies.",
        decode,
        [float(b) for b in DECODE_BUCKETS_TPS],
    )
    return "\n".join(out) + "\n"


def _histogram(
    name: str, help_text: str, data: dict[str, list[float]], buckets: list[float]
) -> list[str]:
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for model, xs in sorted(data.items()):
        label = _label(model)
        for b in buckets:
            n = sum(1 for x in xs if x <= b)
            out.append(f'{name}_bucket{{model="{label}",le="{b:g}"}} {n}')
        out.append(f'{name}_bucket{{model="{label}",le="+Inf"}} {len(xs)}')
        out.append(f'{name}_sum{{model="{label}"}} {sum(xs)!r}')
        out.append(f'{name}_count{{model="{label}"}} {len(xs)}')
    return out


def write_prometheus(path: Path, records: list[dict[str, Any]]) -> None:
    """Write the Prometheus file atomically (node_exporter must never read half a file)."""
    atomic_write_text(path, prometheus_text(records))

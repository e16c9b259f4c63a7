"""Plots of a load sweep: TTFT p50/p99 and throughput against load, in SVG and in the terminal.

Hand-written (no plotting library): a few lines and circles are all a sweep needs, and the
headless command stays light. Client-limited steps are marked in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from providers.inert import inert_label
from tui.session.load import StepRow, level_text

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")
BAR = 28


def _models(rows: Sequence[StepRow]) -> list[str]:
    return list(dict.fromkeys(r.model for r in rows))


def terminal_plot(rows: Sequence[StepRow]) -> str:
    """Bars per step and model: TTFT p50 (█) up to p99 (░), and output tok/s; ! = client-limited."""
    top = max((r.ttft[2] or r.ttft[0] or 0.0 for r in rows), default=0.0) or 1.0
    tps_top = max((r.output_tps or 0.0 for r in rows), default=0.0) or 1.0
    lines = [
        "TTFT p50 █ to p99 ░ (ms) and output tok/s against load; ! marks a client-limited step"
    ]
    for model in _models(rows):
        lines.append(f"  {inert_label(model)}")
        for r in (r for r in rows if r.model == model):
            p50, p99 = r.ttft[0] or 0.0, r.ttft[2] or r.ttft[0] or 0.0
            a = round(BAR * p50 / top)
            b = max(a, round(BAR * p99 / top))
            t = round(12 * (r.output_tps or 0.0) / tps_top)
            figures = f"{p50:7.1f} / {p99:7.1f} ms" if r.ttft[0] is not None else f"{'—':>17}"
            lines.append(
                f"  {'!' if r.client_limited else ' '}{level_text(r.mode, r.level):>7} "
                f"{'█' * a}{'░' * (b - a)}{' ' * (BAR - b)} {figures}  "
                f"{'▆' * t}{' ' * (12 - t)} {r.output_tps or 0.0:,.0f} tok/s"
            )
    return "\n".join(lines)


def svg_plot(rows: Sequence[StepRow]) -> str:
    """Two panels: TTFT p50 (solid) and p99 (dashed) against load, and output tok/s."""
    width, height, pad = 900, 380, 60
    panel_w = (width - 3 * pad) / 2
    plot_h = height - 2 * pad - 30
    models = _models(rows)
    # One x position per step (a sweep may repeat a level: 2,2 is two steps).
    levels = list(dict.fromkeys((r.step, r.mode, r.level) for r in rows))
    n = max(1, len(levels) - 1)
    ttft_top = max((r.ttft[2] or r.ttft[0] or 0.0 for r in rows), default=0.0) or 1.0
    tps_top = max((r.output_tps or 0.0 for r in rows), default=0.0) or 1.0

    def x(i: int, panel: int) -> float:
        left = pad + panel * (panel_w + pad)
        return left + (panel_w * i / n if len(levels) > 1 else panel_w / 2)

    def y(v: float, top: float) -> float:
        return pad + plot_h - plot_h * v / top

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for panel, (title, top) in enumerate(
        (("TTFT (ms): p50 solid, p99 dashed", ttft_top), ("Output tokens/s", tps_top))
    ):
        left = pad + panel * (panel_w + pad)
        out.append(f'<text x="{left}" y="{pad - 20}" font-weight="bold">{escape(title)}</text>')
        out.append(
            f'<path d="M{left},{pad} V{pad + plot_h} H{left + panel_w}" stroke="#333" fill="none"/>'
        )
        for frac in (0.0, 0.5, 1.0):
            yy = y(top * frac, top)
            out.append(
                f'<text x="{left - 6}" y="{yy + 4}" text-anchor="end">{top * frac:,.0f}</text>'
            )
        for i, (_, mode, level) in enumerate(levels):
            out.append(
                f'<text x="{x(i, panel)}" y="{pad + plot_h + 16}" text-anchor="middle">'
                f"{escape(level_text(mode, level))}</text>"
            )
        label = (
            "streams per model"
            if levels and levels[0][1] == "concurrency"
            else "requests/s per model"
        )
        out.append(
            f'<text x="{left + panel_w / 2}" y="{pad + plot_h + 34}" '
            f'text-anchor="middle">{label}</text>'
        )
    for k, model in enumerate(models):
        colour = COLOURS[k % len(COLOURS)]
        mine = {(r.step, r.mode, r.level): r for r in rows if r.model == model}
        series: list[tuple[int, float, str, str]] = [
            (0, ttft_top, "", "p50"),
            (0, ttft_top, "6,4", "p99"),
            (1, tps_top, "", "tps"),
        ]
        for panel, top, dash, which in series:
            pts = []
            for i, key in enumerate(levels):
                r = mine.get(key)
                if r is None:
                    continue
                v = {"p50": r.ttft[0], "p99": r.ttft[2], "tps": r.output_tps}[which]
                if v is not None:
                    pts.append((x(i, panel), y(v, top), r.client_limited))
            if pts:
                d = " ".join(
                    f"{'M' if j == 0 else 'L'}{px:.1f},{py:.1f}"
                    for j, (px, py, _) in enumerate(pts)
                )
                dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
                out.append(
                    f'<path d="{d}" stroke="{colour}" fill="none" stroke-width="2"{dash_attr}/>'
                )
                for px, py, limited in pts:
                    if limited:  # a hollow red square: the client set this figure
                        out.append(
                            f'<rect x="{px - 5:.1f}" y="{py - 5:.1f}" width="10" height="10" '
                            'fill="none" stroke="#d00" stroke-width="2"><title>client-limited'
                            "</title></rect>"
                        )
                    else:
                        out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>')
        out.append(
            f'<text x="{pad + 12}" y="{height - 12 - 16 * (len(models) - 1 - k)}" fill="{colour}">'
            f"■ {escape(inert_label(model))}</text>"
        )
    if any(r.client_limited for r in rows):
        out.append(
            f'<text x="{width - pad}" y="{height - 12}" text-anchor="end" fill="#d00">'
            "□ client-limited step: stamping delay p99 over 10 ms</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"

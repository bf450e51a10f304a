"""Equity-curve chart of a replay as one self-contained HTML file (inline SVG, no scripts).

Markers show guard interventions (refusals, resizes, closes, reductions) and the exchange's
liquidations on the curve. Long curves are reduced to at most ``max_points`` by keeping each
bucket's lowest and highest equity, so drawdowns stay visible. Every text is HTML-escaped.
Hand-written rather than matplotlib/plotly: one chart does not justify a plotting stack in
the bot's runtime dependencies.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from html import escape
from pathlib import Path

from bot.research.report import EquityCurve, Report

WIDTH, HEIGHT = 1100, 420
PAD_L, PAD_R, PAD_T, PAD_B = 80, 20, 30, 50
COLOURS = {
    "liquidation": "#d62728",
    "close": "#ff7f0e",
    "reduce": "#ffbb78",
    "refused": "#9467bd",
    "resized": "#17becf",
    "place_stop": "#2ca02c",
    "halt": "#8c564b",
    "cancel_entries": "#7f7f7f",
}


def downsample(ts: list[float], eq: list[float], max_points: int) -> list[tuple[float, float]]:
    """At most ``max_points`` points: per bucket, the min and max equity in time order."""
    n = len(ts)
    if n <= max_points:
        return list(zip(ts, eq, strict=True))
    buckets = max(1, max_points // 2)
    size = n / buckets
    out: list[tuple[float, float]] = []
    for b in range(buckets):
        lo_i, hi_i = int(b * size), min(n, int((b + 1) * size))
        if lo_i >= hi_i:
            continue
        seg = range(lo_i, hi_i)
        i_min = min(seg, key=eq.__getitem__)
        i_max = max(seg, key=eq.__getitem__)
        for i in sorted({i_min, i_max}):
            out.append((ts[i], eq[i]))
    return out


def render_html(report: Report, title: str = "guardbot replay", max_points: int = 2000) -> str:
    """The chart page for a report that recorded its equity curve."""
    curve = report.curve
    if curve is None or len(curve.ts) == 0:
        raise ValueError("this report has no equity curve (replay with record_curve=True)")
    pts = downsample(list(curve.ts), list(curve.equity), max_points)
    t0, t1 = pts[0][0], pts[-1][0]
    lo = min(e for _, e in pts)
    hi = max(e for _, e in pts)
    if hi == lo:
        hi, lo = hi + 1.0, lo - 1.0
    span_t = (t1 - t0) or 1.0

    def x(t: float) -> float:
        return PAD_L + (t - t0) / span_t * (WIDTH - PAD_L - PAD_R)

    def y(e: float) -> float:
        return PAD_T + (hi - e) / (hi - lo) * (HEIGHT - PAD_T - PAD_B)

    line = " ".join(f"{x(t):.1f},{y(e):.1f}" for t, e in pts)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="equity curve">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
    ]
    for k in range(5):
        e = lo + (hi - lo) * k / 4
        parts.append(
            f'<line x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{y(e):.1f}" y2="{y(e):.1f}" '
            'stroke="#eee"/>'
            f'<text x="{PAD_L - 6}" y="{y(e) + 4:.1f}" font-size="11" text-anchor="end">'
            f"{e:,.0f}</text>"
        )
    for k in range(5):
        t = t0 + span_t * k / 4
        label = time.strftime("%Y-%m-%d", time.gmtime(t))
        parts.append(
            f'<text x="{x(t):.1f}" y="{HEIGHT - PAD_B + 18}" font-size="11" '
            f'text-anchor="middle">{label}</text>'
        )
    parts.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.2" points="{line}"/>')
    parts.extend(_markers(curve, x, y, t0, t1))
    parts.append("</svg>")
    counts: dict[str, int] = {}
    for _, kind, _ in curve.markers:
        counts[kind] = counts.get(kind, 0) + 1
    legend = "".join(
        f'<li><span style="color:{COLOURS.get(k, "#000")}">&#9679;</span> {escape(k)}: {n:,}</li>'
        for k, n in sorted(counts.items())
    )
    summary = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>"
        for k, v in report.to_dict().items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:20px}td,th{padding:2px 8px;text-align:left}"
        "ul{list-style:none;padding:0;display:flex;gap:16px}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>{escape(report.symbol)} {escape(report.timeframe)}, "
        f"{escape(report.start)} → {escape(report.end)}</p>"
        + "".join(parts)
        + f"<ul>{legend}</ul><table>{summary}</table></body></html>"
    )


def _markers(
    curve: EquityCurve,
    x: Callable[[float], float],
    y: Callable[[float], float],
    t0: float,
    t1: float,
) -> list[str]:
    ts = curve.ts
    eq = curve.equity
    out: list[str] = []
    for t, kind, rule in curve.markers:
        if not t0 <= t <= t1:
            continue
        i = min(len(ts) - 1, bisect.bisect_left(ts, t))
        colour = COLOURS.get(kind, "#000")
        size = 6 if kind == "liquidation" else 3
        out.append(
            f'<circle cx="{x(t):.1f}" cy="{y(eq[i]):.1f}" r="{size}" fill="{colour}" '
            f'fill-opacity="0.8"><title>{escape(kind)} ({escape(rule)}) at '
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(t))}</title></circle>"
        )
    return out


def write_plot(report: Report, path: Path, title: str = "guardbot replay") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, title), encoding="utf-8")
    return path

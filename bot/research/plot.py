"""A replay as one self-contained HTML page (inline SVG, no scripts, nothing loaded from outside).

Panels, on one time axis:

1. **equity**: guards on (and, with ``--compare``, guards off) at every candle close, with the
   lowest equity inside each candle shaded under it;
2. **drawdown**: the fall from the running peak, in %, for each run;
3. **price** of each symbol (up to four): entries (▲ long, ▼ short), exits coloured by reason,
   guard closes coloured by rule, liquidations (✕, red; guards-off liquidations too);
4. **guard lanes**: one row per rule, a tick at each refusal, resize or sweep action of that rule
   (one tick per order: a refusal counts under the rule that refused it first).

Every marker has a tooltip (``<title>``) and the legend lists each rule with its colour and
count. Long series are reduced to at most ``max_points`` per line by keeping each bucket's lowest
and highest value, so drawdowns and crashes stay visible. Every text is HTML-escaped.
Hand-written rather than matplotlib/plotly: one chart does not justify a plotting stack in the
bot's runtime dependencies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path

from bot.research.report import Report

WIDTH = 1100
PAD_L, PAD_R = 80, 20
EQ_H, DD_H, PRICE_H, LANE_H, GAP = 280, 110, 220, 16, 34
ON_COLOUR, OFF_COLOUR = "#1f77b4", "#999999"
#: One colour per rule (and the exchange's liquidation engine).
RULE_COLOURS = {
    "position_cap": "#9467bd",
    "stop_loss": "#2ca02c",
    "liquidation": "#d62728",
    "no_overnight": "#ff7f0e",
    "anti_top_up": "#8c564b",
    "overtrading": "#e377c2",
    "loss_limit": "#7f7f7f",
    "trend": "#bcbd22",
    "circuit_breaker": "#17becf",
    "engine": "#000000",
    "exchange": "#d62728",
}
EXIT_COLOURS = {
    "strategy": "#1f77b4",
    "stop": "#555555",
    "take_profit": "#2ca02c",
    "guard": "#ff7f0e",
    "liquidation": "#d62728",
    "manual": "#8c564b",
}
KIND_SHAPES = {"refused": "×", "resized": "↓", "close": "■", "reduce": "◆", "place_stop": "●"}


def colour(rule: str) -> str:
    return RULE_COLOURS.get(rule, "#000000")


def downsample(
    ts: Sequence[float], ys: Sequence[float], max_points: int
) -> list[tuple[float, float]]:
    """At most ``max_points`` points: per bucket, the min and max value in time order."""
    n = len(ts)
    if n <= max_points:
        return list(zip(ts, ys, strict=True))
    buckets = max(1, max_points // 2)
    size = n / buckets
    out: list[tuple[float, float]] = []
    for b in range(buckets):
        lo_i, hi_i = int(b * size), min(n, int((b + 1) * size))
        if lo_i >= hi_i:
            continue
        seg = range(lo_i, hi_i)
        i_min = min(seg, key=ys.__getitem__)
        i_max = max(seg, key=ys.__getitem__)
        for i in sorted({i_min, i_max}):
            out.append((ts[i], ys[i]))
    return out


def drawdown(equity: Sequence[float]) -> list[float]:
    """Fall from the running peak at each point, in % (0 at a new peak)."""
    peak = 0.0
    out = []
    for e in equity:
        peak = max(peak, e)
        out.append((peak - e) / peak * 100.0 if peak > 0 else 0.0)
    return out


class _Axis:
    def __init__(self, t0: float, t1: float, top: float, height: float, lo: float, hi: float):
        if hi == lo:
            hi, lo = hi + 1.0, lo - 1.0
        self.t0, self.span = t0, (t1 - t0) or 1.0
        self.top, self.height, self.lo, self.hi = top, height, lo, hi

    def x(self, t: float) -> float:
        return PAD_L + (t - self.t0) / self.span * (WIDTH - PAD_L - PAD_R)

    def y(self, v: float) -> float:
        return self.top + (self.hi - v) / (self.hi - self.lo) * self.height


def _line(pts: list[tuple[float, float]], ax: _Axis, stroke: str, width: float = 1.2) -> str:
    points = " ".join(f"{ax.x(t):.1f},{ax.y(v):.1f}" for t, v in pts)
    return f'<polyline fill="none" stroke="{stroke}" stroke-width="{width}" points="{points}"/>'


def _grid(ax: _Axis, fmt: Callable[[float], str], title: str) -> list[str]:
    out = [
        f'<text x="{PAD_L}" y="{ax.top - 8:.1f}" font-size="12" font-weight="bold">'
        f"{escape(title)}</text>"
    ]
    for k in range(5):
        v = ax.lo + (ax.hi - ax.lo) * k / 4
        out.append(
            f'<line x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{ax.y(v):.1f}" y2="{ax.y(v):.1f}" '
            'stroke="#eee"/>'
            f'<text x="{PAD_L - 6}" y="{ax.y(v) + 4:.1f}" font-size="11" text-anchor="end">'
            f"{escape(fmt(v))}</text>"
        )
    return out


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


def _glyph(
    x: float, y: float, text: str, fill: str, tip: str, size: int = 12, cls: str = "mark"
) -> str:
    return (
        f'<text class="{escape(cls)}" x="{x:.1f}" y="{y + size / 3:.1f}" font-size="{size}" '
        f'text-anchor="middle" fill="{fill}"><title>{escape(tip)}</title>{escape(text)}</text>'
    )


def render_html(
    report: Report,
    title: str = "guardbot replay",
    max_points: int = 2000,
    off: Report | None = None,
) -> str:
    """The chart page for a report that recorded its equity curve (``off``: guards off)."""
    curve = report.curve
    if curve is None or len(curve.ts) == 0:
        raise ValueError("this report has no equity curve (replay with record_curve=True)")
    off_curve = off.curve if off is not None else None
    t0, t1 = curve.ts[0], curve.ts[-1]
    parts: list[str] = []
    top = 40.0
    # 1. equity
    pts = downsample(curve.ts, curve.equity, max_points)
    lows = downsample(curve.ts, curve.low, max_points)
    series = [e for _, e in pts] + [e for _, e in lows]
    off_pts: list[tuple[float, float]] = []
    if off_curve is not None and len(off_curve.ts):
        off_pts = downsample(off_curve.ts, off_curve.equity, max_points)
        series += [e for _, e in off_pts]
    ax = _Axis(t0, t1, top, EQ_H, min(series), max(series))
    parts += _grid(ax, lambda v: f"{v:,.0f}", f"equity ({report.currency})")
    parts.append(_line(lows, ax, "#c6dbef", 1.0))
    if off_pts:
        parts.append(_line(off_pts, ax, OFF_COLOUR, 1.2))
    parts.append(_line(pts, ax, ON_COLOUR, 1.4))
    top += EQ_H + GAP
    # 2. drawdown
    dd = drawdown(curve.equity)
    dd_pts = downsample(curve.ts, [-d for d in dd], max_points)
    dd_off: list[tuple[float, float]] = []
    if off_curve is not None and len(off_curve.ts):
        dd_off = downsample(off_curve.ts, [-d for d in drawdown(off_curve.equity)], max_points)
    lo = min([v for _, v in dd_pts] + [v for _, v in dd_off] + [-1.0])
    ax = _Axis(t0, t1, top, DD_H, lo, 0.0)
    parts += _grid(ax, lambda v: f"{v:.1f} %", "drawdown from peak")
    if dd_off:
        parts.append(_line(dd_off, ax, OFF_COLOUR))
    parts.append(_line(dd_pts, ax, ON_COLOUR))
    top += DD_H + GAP
    # 3. price panels
    for symbol, (times, closes) in list(curve.prices.items())[:4]:
        top = _price_panel(parts, report, off, symbol, times, closes, t0, t1, top, max_points)
    # 4. guard lanes
    rules = sorted({rule for _, _, rule in curve.markers if rule != "exchange"})
    counts: dict[str, int] = {}
    if rules:
        parts.append(
            f'<text x="{PAD_L}" y="{top - 8:.1f}" font-size="12" font-weight="bold">guard '
            "actions by rule (× refused, ↓ resized, ■ closed, ◆ reduced, ● stop placed)</text>"
        )
        ax = _Axis(t0, t1, top, 1.0, 0.0, 1.0)
        for i, rule in enumerate(rules):
            y = top + i * LANE_H + LANE_H / 2
            parts.append(
                f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
                f"{escape(rule)}</text>"
            )
            for t, kind, r in curve.markers:
                if r != rule or not t0 <= t <= t1:
                    continue
                counts[rule] = counts.get(rule, 0) + 1
                parts.append(
                    _glyph(ax.x(t), y, KIND_SHAPES.get(kind, "|"), colour(rule),
                           f"{kind} by {rule} at {_when(t)}", 10, f"lane {rule}")
                )  # fmt: skip
        top += LANE_H * len(rules) + GAP
    # time axis
    for k in range(5):
        t = t0 + (t1 - t0) * k / 4
        anchor = ("start", "middle", "middle", "middle", "end")[k]
        parts.append(
            f'<text x="{ax.x(t):.1f}" y="{top - GAP / 2:.1f}" font-size="11" '
            f'text-anchor="{anchor}">{_when(t)[:10]}</text>'
        )
    height = int(top)
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="replay chart">'
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#fff"/>'
        + "".join(parts)
        + "</svg>"
    )
    legend = [
        f'<li><span style="color:{ON_COLOUR}">━</span> guards on</li>',
        *(
            [f'<li><span style="color:{OFF_COLOUR}">━</span> guards off</li>']
            if off is not None
            else []
        ),
        *(
            f'<li><span style="color:{colour(r)}">■</span> {escape(r)}: {counts.get(r, 0):,}</li>'
            for r in rules
        ),
        f'<li><span style="color:{RULE_COLOURS["exchange"]}">✕</span> liquidation: '
        f"{report.liquidations}"
        + (f" (guards off: {off.liquidations})" if off is not None else "")
        + "</li>",
    ]
    summary = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td>"
        + (f"<td>{escape(str(off.to_dict().get(k)))}</td>" if off is not None else "")
        + "</tr>"
        for k, v in report.to_dict().items()
        if not isinstance(v, dict | list)
    )
    head = "<tr><th></th><th>guards on</th><th>guards off</th></tr>" if off is not None else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:20px}td,th{padding:2px 8px;text-align:left}"
        "ul{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:16px}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>{escape(report.symbol)} {escape(report.timeframe)}, "
        f"{escape(report.start)} → {escape(report.end)} UTC</p>"
        f"<ul>{''.join(legend)}</ul>{svg}<table>{head}{summary}</table></body></html>"
    )


def _price_panel(
    parts: list[str],
    report: Report,
    off: Report | None,
    symbol: str,
    times: Sequence[float],
    closes: Sequence[float],
    t0: float,
    t1: float,
    top: float,
    max_points: int,
) -> float:
    pts = downsample(times, closes, max_points)
    ax = _Axis(t0, t1, top, PRICE_H, min(v for _, v in pts), max(v for _, v in pts))
    parts.extend(_grid(ax, lambda v: f"{v:,.6g}", f"{symbol} close"))
    parts.append(_line(pts, ax, "#333333", 1.0))
    trades = [t for t in report.closed_trades if t.symbol == symbol]
    for t in trades[:5000]:
        up = t.side == "long"
        parts.append(
            _glyph(ax.x(t.opened_at / 1000), ax.y(t.entry_price), "▲" if up else "▼",
                   "#2ca02c" if up else "#d62728",
                   f"{t.side} entry {t.entry_price:,.6g} at {_when(t.opened_at / 1000)}", 9)
        )  # fmt: skip
        if t.reason != "liquidation":
            parts.append(
                _glyph(ax.x(t.closed_at / 1000), ax.y(t.exit_price), "●",
                       EXIT_COLOURS.get(t.reason, "#000"),
                       f"exit ({t.reason}) {t.exit_price:,.6g}, net {t.net:,.2f} at "
                       f"{_when(t.closed_at / 1000)}", 7)
            )  # fmt: skip
    curve = report.curve
    if curve is not None:
        for ts, kind, rule in curve.markers:
            if kind in ("close", "reduce") and rule != "exchange":
                y = _price_at(times, closes, ts)
                if y is not None:
                    parts.append(
                        _glyph(ax.x(ts), ax.y(y), "■", colour(rule), f"{kind} by {rule}", 10)
                    )
    for rep, label in ((report, "guards on"), (off, "guards off")):
        run = rep.run if rep is not None else None
        if run is None:
            continue
        for e in run.core.liquidations:
            if e.symbol == symbol:
                parts.append(
                    _glyph(ax.x(e.ts / 1000), ax.y(e.mark), "✕", RULE_COLOURS["exchange"],
                           f"liquidation ({label}) at mark {e.mark:,.6g}, margin lost "
                           f"{e.margin_lost:,.2f} at {_when(e.ts / 1000)}", 16)
                )  # fmt: skip
    return top + PRICE_H + GAP


def _price_at(times: Sequence[float], closes: Sequence[float], ts: float) -> float | None:
    import bisect

    i = bisect.bisect_left(times, ts)
    if not times:
        return None
    return closes[min(i, len(times) - 1)]


def write_plot(
    report: Report, path: Path, title: str = "guardbot replay", off: Report | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, title, off=off), encoding="utf-8")
    return path

"""The certificate's pictures as SVG: a temperature chart per probe (its readings, the
profile's limit band, breaches and data gaps shaded) and the route from the GPS trace (no
map tiles: the document must render offline). Pure: strings from numbers.

Drawn by hand rather than with matplotlib: a chart is a few rectangles and one polyline,
which the PDF and the browser draw as vectors (sharp at any zoom, a few kB), and it costs
well under a millisecond where a matplotlib figure costs tens (docs/performance.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from coldtrace.deliveries.trace import decimate, min_max

Point = tuple[int, float]  # (epoch ms, C)
Span = tuple[int, int]  # [start, end] epoch ms

# Chart geometry in SVG user units (the template scales the picture to the page's width).
WIDTH, HEIGHT = 640.0, 150.0
LEFT, RIGHT, TOP, BOTTOM = 42.0, 16.0, 8.0, 20.0  # RIGHT: room for the last hour's label
# At most this many points per polyline: per bucket its lowest and highest reading, so an
# excursion's peak is always drawn (coldtrace.deliveries.trace.min_max).
MAX_POINTS = 200
ROUTE_SIZE = 200.0
MAX_FIXES = 200

BAND = "#d9f2d9"
BREACH = "#f4a6a6"
GAP = "#d0d0d0"
LINE = "#1f4e79"


@dataclass(frozen=True, slots=True)
class ProbeChart:
    """What one probe's chart shows. ``points``: its readings with a temperature, in time
    order; ``breaches``/``gaps``: spans to shade (an open breach ends at the window's end);
    ``low_c``/``high_c``: the profile's range (None: unbounded on that side)."""

    points: Sequence[Point]
    start: int
    end: int
    low_c: float | None
    high_c: float | None
    breaches: Sequence[Span]
    gaps: Sequence[Span]


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 6) for i in range(int((hi - first) / step) + 1)]


def _hour_ticks(start: int, end: int, zone: ZoneInfo) -> list[int]:
    """Whole local hours in [start, end], every 1, 2, 3 or 6 h to keep at most 10."""
    hours = (end - start) / 3_600_000
    every = next((h for h in (1, 2, 3, 6, 12, 24) if hours / h <= 10), 24)
    first = datetime.fromtimestamp(start / 1000, zone).replace(minute=0, second=0, microsecond=0)
    ticks = []
    t = int(first.timestamp() * 1000)
    while t <= end:
        local = datetime.fromtimestamp(t / 1000, zone)
        if t >= start and local.hour % every == 0:
            ticks.append(t)
        t += 3_600_000
    return ticks


def _runs(points: Sequence[Point], gaps: Sequence[Span]) -> list[list[Point]]:
    """The points split where a data gap begins: no line is drawn across a gap."""
    cuts = sorted(a for a, _ in gaps)
    runs: list[list[Point]] = [[]]
    i = 0
    for p in points:
        while i < len(cuts) and p[0] > cuts[i]:
            i += 1
            if runs[-1]:
                runs.append([])
        runs[-1].append(p)
    return [r for r in runs if r]


def probe_chart(chart: ProbeChart, zone: str, number: Callable[[float], str]) -> str:
    """The SVG of one probe's chart; axis times in ``zone`` (IANA), temperatures written
    by ``number`` (the document's language)."""
    values = [c for _, c in chart.points]
    limits = [x for x in (chart.low_c, chart.high_c) if x is not None]
    lo = min([*values, *limits], default=0.0) - 1.0
    hi = max([*values, *limits], default=1.0) + 1.0
    span_ms = max(chart.end - chart.start, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(ts: int) -> float:
        return LEFT + plot_w * (min(max(ts, chart.start), chart.end) - chart.start) / span_ms

    def y(c: float) -> float:
        return TOP + plot_h * (hi - c) / (hi - lo)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH:g} {HEIGHT:g}" '
        'font-family="DejaVu Sans" font-size="9">'
    ]
    band_top = y(chart.high_c) if chart.high_c is not None else TOP
    band_bottom = y(chart.low_c) if chart.low_c is not None else TOP + plot_h
    parts.append(
        f'<rect x="{LEFT:g}" y="{band_top:.1f}" width="{plot_w:g}" '
        f'height="{band_bottom - band_top:.1f}" fill="{BAND}"/>'
    )
    for shade, spans in ((GAP, chart.gaps), (BREACH, chart.breaches)):
        for a, b in spans:
            parts.append(
                f'<rect x="{x(a):.1f}" y="{TOP:g}" width="{max(x(b) - x(a), 1.0):.1f}" '
                f'height="{plot_h:g}" fill="{shade}" fill-opacity="0.8"/>'
            )
    for c in _ticks(lo, hi):
        parts.append(
            f'<line x1="{LEFT:g}" x2="{WIDTH - RIGHT:g}" y1="{y(c):.1f}" y2="{y(c):.1f}" '
            'stroke="#bbb" stroke-width="0.4"/>'
            f'<text x="{LEFT - 4:g}" y="{y(c) + 3:.1f}" text-anchor="end">{number(c)}</text>'
        )
    tz = ZoneInfo(zone)
    for t in _hour_ticks(chart.start, chart.end, tz):
        label = datetime.fromtimestamp(t / 1000, tz).strftime("%H:%M")
        parts.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{TOP:g}" y2="{TOP + plot_h:g}" '
            'stroke="#bbb" stroke-width="0.4"/>'
            f'<text x="{x(t):.1f}" y="{HEIGHT - 6:g}" text-anchor="middle">{label}</text>'
        )
    for run in _runs(chart.points, chart.gaps):
        drawn = min_max(run, MAX_POINTS)
        if len(drawn) == 1:
            (t, c), *_ = drawn
            parts.append(f'<circle cx="{x(t):.1f}" cy="{y(c):.1f}" r="1.5" fill="{LINE}"/>')
            continue
        coords = " ".join(f"{x(t):.1f},{y(c):.1f}" for t, c in drawn)
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{LINE}" stroke-width="1.2"/>'
        )
    parts.append(
        f'<rect x="{LEFT:g}" y="{TOP:g}" width="{plot_w:g}" height="{plot_h:g}" '
        'fill="none" stroke="#555" stroke-width="0.6"/></svg>'
    )
    return "".join(parts)


def route_plot(
    fixes: Sequence[tuple[float, float]],
    pickup: tuple[float, float],
    dropoff: tuple[float, float],
    breaches: Sequence[tuple[float, float]],
) -> str:
    """The SVG of the route: the GPS trace (lat, lon in time order) as a line, the pickup
    (green), the drop-off (black) and where each breach began (red), north up, on an
    equirectangular projection (distances true at the route's latitude)."""
    trace = [fixes[i] for i in decimate(len(fixes), MAX_FIXES)]
    everything = [*trace, pickup, dropoff, *breaches]
    lats = [p[0] for p in everything]
    lons = [p[1] for p in everything]
    scale_lon = math.cos(math.radians(sum(lats) / len(lats)))
    width = max((max(lons) - min(lons)) * scale_lon, 1e-4)
    height = max(max(lats) - min(lats), 1e-4)
    size = max(width, height) * 1.15
    pad = 10.0
    usable = ROUTE_SIZE - 2 * pad
    cx, cy = (max(lons) + min(lons)) / 2, (max(lats) + min(lats)) / 2

    def xy(p: tuple[float, float]) -> str:
        px = ROUTE_SIZE / 2 + (p[1] - cx) * scale_lon / size * usable
        py = ROUTE_SIZE / 2 - (p[0] - cy) / size * usable
        return f"{px:.1f},{py:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {ROUTE_SIZE:g} {ROUTE_SIZE:g}">'
        f'<rect width="{ROUTE_SIZE:g}" height="{ROUTE_SIZE:g}" fill="#f7f7f7" stroke="#999"/>'
    ]
    if len(trace) > 1:
        parts.append(
            f'<polyline points="{" ".join(xy(p) for p in trace)}" fill="none" '
            f'stroke="{LINE}" stroke-width="1.5"/>'
        )
    for p, fill, r in ((pickup, "#2e7d32", 4.5), (dropoff, "#222", 4.5)):
        cx_, cy_ = xy(p).split(",")
        parts.append(f'<circle cx="{cx_}" cy="{cy_}" r="{r}" fill="{fill}"/>')
    for p in breaches:
        cx_, cy_ = xy(p).split(",")
        parts.append(
            f'<circle cx="{cx_}" cy="{cy_}" r="4" fill="#c62828" stroke="white" stroke-width="1"/>'
        )
    parts.append("</svg>")
    return "".join(parts)

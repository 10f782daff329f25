"""A delivery's trace: the route and temperatures between its start and end, as GeoJSON
(RFC 7946) and as compact series for charts, downsampled on request. Pure."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from coldtrace.deliveries.geo import Position, Stop, StopRule, find_stops

Sample = tuple[int, float]  # (epoch ms, value)


@dataclass(frozen=True, slots=True)
class BreachMark:
    """A breach as the trace shows it: where and when it began, and what it was."""

    id: int
    device: str
    probe: str
    rule: str
    start: int
    end: int | None
    severity: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Readings:
    """Everything InfluxDB holds for one delivery window, each list sorted by time."""

    positions: Sequence[Position]
    temperatures: Mapping[str, Sequence[Sample]]  # probe -> samples
    door_open: Sequence[tuple[int, int]] = ()  # (ts, seq) of the readings with the door open


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def decimate(n: int, max_points: int | None) -> list[int] | range:
    """Indices of at most max_points items spread evenly over n, keeping the first and last."""
    if max_points is None or n <= max_points:
        return range(n)
    if max_points < 2:
        return [n - 1]
    step = (n - 1) / (max_points - 1)
    return [round(i * step) for i in range(max_points)]


def min_max(samples: Sequence[Sample], max_points: int | None) -> Sequence[Sample]:
    """At most max_points samples: per time bucket its lowest and highest, in time order, so a
    peak (an excursion) never disappears from a downsampled chart."""
    if max_points is None or len(samples) <= max_points:
        return samples
    buckets = max(1, max_points // 2)
    t0, t1 = samples[0][0], samples[-1][0]
    width = (t1 - t0) / buckets or 1
    out: list[Sample] = []
    lo = hi = samples[0]
    current = 0
    for s in samples:
        b = min(int((s[0] - t0) / width), buckets - 1)
        if b != current:
            out.extend(sorted({lo, hi}))
            lo = hi = s
            current = b
        elif s[1] < lo[1]:
            lo = s
        elif s[1] > hi[1]:
            hi = s
    out.extend(sorted({lo, hi}))
    return out


def where(positions: Sequence[Position], times: Sequence[int], ts: int) -> Position | None:
    """The last fix at or before ts (else the first one after it)."""
    if not positions:
        return None
    i = bisect.bisect_right(times, ts)
    return positions[i - 1] if i else positions[0]


def geojson(
    delivery: Mapping[str, Any],
    readings: Readings,
    breaches: Sequence[BreachMark],
    stop_rule: StopRule,
    max_points: int | None = None,
) -> dict[str, Any]:
    positions = readings.positions
    times = [p.ts for p in positions]
    route = [positions[i] for i in decimate(len(positions), max_points)]
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[p.lon, p.lat] for p in route]},
            "properties": {
                "kind": "route",
                **delivery,
                "fixes": len(positions),
                "times": [p.ts for p in route],
            },
        }
    ]
    features.extend(_stop_feature(s) for s in find_stops(positions, stop_rule, readings.door_open))
    for b in breaches:
        at = where(positions, times, b.start)
        point = None if at is None else {"type": "Point", "coordinates": [at.lon, at.lat]}
        features.append(
            {
                "type": "Feature",
                "geometry": point,
                "properties": {
                    "kind": "breach",
                    "id": b.id,
                    "device": b.device,
                    "probe": b.probe,
                    "rule": b.rule,
                    "severity": b.severity,
                    "start": iso(b.start),
                    "end": None if b.end is None else iso(b.end),
                    "duration_s": None if b.end is None else (b.end - b.start) / 1000,
                    **b.extra,
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _stop_feature(stop: Stop) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [stop.lon, stop.lat]},
        "properties": {
            "kind": "stop",
            "arrived": iso(stop.start),
            "departed": iso(stop.end),
            "dwell_s": stop.dwell_s,
            "door_openings": stop.door_openings,
        },
    }


def series(
    delivery: Mapping[str, Any], readings: Readings, max_points: int | None = None
) -> dict[str, Any]:
    """Column arrays (epoch ms and values) per probe and for the route."""
    positions = readings.positions
    picked = [positions[i] for i in decimate(len(positions), max_points)]
    temperature: dict[str, dict[str, list[Any]]] = {}
    for probe, samples in sorted(readings.temperatures.items()):
        kept = min_max(samples, max_points)
        temperature[probe] = {"t": [s[0] for s in kept], "c": [s[1] for s in kept]}
    return {
        **delivery,
        "downsampled": max_points is not None
        and (
            len(positions) > max_points
            or any(len(s) > max_points for s in readings.temperatures.values())
        ),
        "temperature": temperature,
        "position": {
            "t": [p.ts for p in picked],
            "lat": [p.lat for p in picked],
            "lon": [p.lon for p in picked],
            "speed_kmh": [p.speed_kmh for p in picked],
        },
    }

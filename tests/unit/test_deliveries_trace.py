"""Trace building: GeoJSON features, compact series, downsampling, delivery windows."""

from __future__ import annotations

import pytest

from coldtrace.deliveries.geo import Position, StopRule
from coldtrace.deliveries.trace import (
    BreachMark,
    Readings,
    decimate,
    geojson,
    min_max,
    series,
    where,
)
from coldtrace.deliveries.window import Segment, Span, device_spans, segments

MIN = 60_000


def readings() -> Readings:
    # 20 fixes a minute apart: moving, then stopped from minute 10 with the door open at 12.
    positions = [
        Position(i * MIN, 45.0 + min(i, 10) * 0.01, 5.0, 0.0 if i >= 10 else 50.0)
        for i in range(20)
    ]
    temps = {"product": [(i * MIN, 3.0 + (2.0 if 5 <= i < 8 else 0.0)) for i in range(20)]}
    return Readings(positions, temps, door_open=[(12 * MIN, 12)])


def test_decimate_keeps_first_and_last() -> None:
    assert list(decimate(5, None)) == [0, 1, 2, 3, 4]
    assert list(decimate(5, 10)) == [0, 1, 2, 3, 4]
    assert decimate(101, 5) == [0, 25, 50, 75, 100]
    assert decimate(10, 1) == [9]


def test_min_max_keeps_the_peak() -> None:
    samples = [(t, 3.0) for t in range(100)]
    samples[37] = (37, 9.5)
    samples[80] = (80, -1.0)
    kept = min_max(samples, 10)
    assert len(kept) <= 10
    assert (37, 9.5) in kept and (80, -1.0) in kept
    assert kept[0] == (0, 3.0)
    assert [t for t, _ in kept] == sorted(t for t, _ in kept)
    assert min_max(samples, None) is samples


def test_where_takes_the_last_fix_at_or_before() -> None:
    pos = readings().positions
    times = [p.ts for p in pos]
    assert where(pos, times, 3 * MIN) == pos[3]
    assert where(pos, times, 3 * MIN + 59_999) == pos[3]
    assert where(pos, times, -5) == pos[0]
    assert where([], [], 0) is None


def test_geojson_has_route_stop_and_breach() -> None:
    breach = BreachMark(
        7, "van-1", "product", "excursion_high", 5 * MIN, 8 * MIN, "major", {"peak": 5.0}
    )
    fc = geojson({"delivery_id": 3}, readings(), [breach], StopRule(3, 120))
    assert fc["type"] == "FeatureCollection"
    route, stop, point = fc["features"]
    assert route["geometry"]["type"] == "LineString"
    assert route["geometry"]["coordinates"][0] == [5.0, 45.0]  # lon, lat (RFC 7946)
    assert len(route["geometry"]["coordinates"]) == 20
    assert route["properties"]["delivery_id"] == 3 and route["properties"]["fixes"] == 20
    assert stop["properties"] == {
        "kind": "stop",
        "arrived": "1970-01-01T00:10:00Z",
        "departed": "1970-01-01T00:19:00Z",
        "dwell_s": 540.0,
        "door_openings": 1,
    }
    assert point["geometry"] == {"type": "Point", "coordinates": [5.0, pytest.approx(45.05)]}
    assert point["properties"]["start"] == "1970-01-01T00:05:00Z"
    assert point["properties"]["duration_s"] == 180.0
    assert point["properties"]["peak"] == 5.0


def test_geojson_open_breach_without_fixes() -> None:
    empty = Readings([], {})
    breach = BreachMark(1, "d", "air", "excursion_high", 0, None, "critical")
    route, point = geojson({}, empty, [breach], StopRule())["features"]
    assert route["geometry"]["coordinates"] == []
    assert point["geometry"] is None
    assert (point["properties"]["end"], point["properties"]["duration_s"]) == (None, None)


def test_series_columns_and_downsampling() -> None:
    full = series({"delivery_id": 1}, readings())
    assert full["downsampled"] is False
    assert full["temperature"]["product"]["t"][:2] == [0, MIN]
    assert len(full["position"]["lat"]) == 20
    small = series({"delivery_id": 1}, readings(), max_points=6)
    assert small["downsampled"] is True
    assert len(small["position"]["t"]) == 6
    assert max(small["temperature"]["product"]["c"]) == 5.0


def test_segments_clip_assignments_to_the_window() -> None:
    spans = [
        Span("a", "product", 0, 50),  # ends at 50 (excluded)
        Span("b", "product", 50, None),
        Span("c", "product", 200, None),  # after the window
    ]
    assert segments(spans, 10, 100) == [
        Segment("a", "product", 10, 49),
        Segment("b", "product", 50, 100),
    ]


def test_device_spans_cover_all_probes_of_a_device() -> None:
    segs = [Segment("a", "air", 10, 40), Segment("a", "product", 0, 30), Segment("b", "x", 5, 9)]
    assert device_spans(segs) == [("a", 0, 40), ("b", 5, 9)]

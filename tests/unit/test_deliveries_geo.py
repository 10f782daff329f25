"""Distances, stops (speed and dwell), leaving the pickup and reaching the drop-off."""

from __future__ import annotations

import pytest

from coldtrace.deliveries.geo import (
    Place,
    Position,
    StopRule,
    arrival,
    departure,
    distance_m,
    find_stops,
)

S = 1000  # ms


def test_distance_of_one_degree_of_latitude() -> None:
    # 2 * pi * 6371.0088 km / 360 = 111.195 km
    assert distance_m(45.0, 5.0, 46.0, 5.0) == pytest.approx(111_195, abs=1)
    assert distance_m(48.8566, 2.3522, 48.8566, 2.3522) == 0.0
    # Paris to Lyon, 391.5 km great circle
    assert distance_m(48.8566, 2.3522, 45.7640, 4.8357) == pytest.approx(391_500, rel=0.002)


def fixes(speeds: list[float], lat: float = 45.0, step_s: int = 30) -> list[Position]:
    return [Position(i * step_s * S, lat + i * 1e-4, 5.0, v) for i, v in enumerate(speeds)]


def test_stops_need_low_speed_for_the_dwell() -> None:
    # 30-s fixes: stopped for 4 fixes (90 s: too short), then for 6 fixes (150 s).
    speeds = [40, 0, 0, 0, 0, 40, 40, 1, 2, 0, 0, 0, 0, 50]
    stops = find_stops(fixes(speeds), StopRule(speed_kmh=3, min_dwell_s=120))
    assert [(s.start, s.end, s.dwell_s) for s in stops] == [(210 * S, 360 * S, 150.0)]
    assert stops[0].lat == pytest.approx(45.0 + sum(range(7, 13)) / 6 * 1e-4)


def test_a_stop_at_the_end_of_the_track_counts() -> None:
    stops = find_stops(fixes([30, 0, 0, 0, 0, 0]), StopRule(3, 120))
    assert [(s.start, s.end) for s in stops] == [(30 * S, 150 * S)]


def test_speed_from_positions_when_the_gps_sends_none() -> None:
    # 0.001 deg of latitude (111 m) per 30 s is 13 km/h: moving; then standing still.
    track = [Position(i * 30 * S, 45 + min(i, 3) * 0.001, 5.0) for i in range(10)]
    stops = find_stops(track, StopRule(3, 120))
    assert [(s.start, s.end) for s in stops] == [(120 * S, 270 * S)]


def test_door_openings_are_runs_of_consecutive_readings_within_the_stop() -> None:
    speeds = [0] * 10  # one stop, 0..270 s, readings seq 100.. every 30 s
    door_open = [(30 * S, 101), (60 * S, 102), (120 * S, 104), (400 * S, 113)]
    [stop] = find_stops(fixes(speeds), StopRule(3, 120), door_open)
    assert stop.door_openings == 2  # 101-102, then 104; 113 is after the stop
    # Already open when the stop began: one opening during the stop, counted once.
    [stop] = find_stops(fixes(speeds), StopRule(3, 120), [(-S, 99), (0, 100), (30 * S, 101)])
    assert stop.door_openings == 1


PICKUP = Place(45.0, 5.0)


def test_departure_is_the_first_fix_outside_after_one_inside() -> None:
    # 0.001 deg latitude = 111 m per fix
    track = [Position(i * S, 45.0 + i * 0.001, 5.0, 30) for i in range(6)]
    assert departure(track, PICKUP, radius_m=300) == 3 * S
    assert departure(track[4:], PICKUP, radius_m=300) is None, "never seen at the pickup"


def test_arrival_is_the_first_stop_inside_the_dropoff_geofence() -> None:
    dropoff = Place(45.01, 5.0)
    track = (
        [Position(i * 30 * S, 45.0, 5.0, 0) for i in range(6)]  # stop at the pickup
        + [Position((6 + i) * 30 * S, 45.0 + i * 0.002, 5.0, 40) for i in range(5)]
        + [Position((11 + i) * 30 * S, 45.0098, 5.0, 0) for i in range(6)]  # 22 m away
    )
    assert arrival(track, dropoff, 300, StopRule(3, 120)) == 11 * 30 * S
    assert arrival(track, Place(46.0, 5.0), 300, StopRule(3, 120)) is None

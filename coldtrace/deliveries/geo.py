"""Where a vehicle stopped and when it left the pickup or reached the drop-off. Pure."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

EARTH_RADIUS_M = 6_371_008.8


class Position(NamedTuple):
    """A GPS fix (a tuple: a trace builds tens of thousands of them per request)."""

    ts: int  # epoch ms, device time
    lat: float
    lon: float
    speed_kmh: float | None = None


@dataclass(frozen=True, slots=True)
class Place:
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Stop:
    start: int
    end: int
    lat: float
    lon: float
    door_openings: int

    @property
    def dwell_s(self) -> float:
        return (self.end - self.start) / 1000


@dataclass(frozen=True, slots=True)
class StopRule:
    """A vehicle stops when slower than `speed_kmh` for at least `min_dwell_s`."""

    speed_kmh: float = 3.0
    min_dwell_s: float = 120.0


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def _speeds(positions: Sequence[Position]) -> list[float]:
    """Reported speed, or the speed from the previous fix when the GPS sent none."""
    out: list[float] = []
    for i, p in enumerate(positions):
        if p.speed_kmh is not None:
            out.append(p.speed_kmh)
        elif i == 0 or p.ts == positions[i - 1].ts:
            out.append(0.0)
        else:
            q = positions[i - 1]
            out.append(distance_m(q.lat, q.lon, p.lat, p.lon) / (p.ts - q.ts) * 3600)
    return out


def find_stops(
    positions: Sequence[Position], rule: StopRule, door_open: Sequence[tuple[int, int]] = ()
) -> list[Stop]:
    """Maximal runs of fixes slower than the rule's speed lasting at least its dwell.

    `door_open` lists the readings whose door was open, as (ts, seq) sorted by time: one
    opening is a run of consecutive seqs (the readings in between had it closed).
    """
    stops: list[Stop] = []
    run: list[Position] = []

    def flush() -> None:
        if run and (run[-1].ts - run[0].ts) / 1000 >= rule.min_dwell_s:
            stops.append(
                Stop(
                    run[0].ts,
                    run[-1].ts,
                    sum(p.lat for p in run) / len(run),
                    sum(p.lon for p in run) / len(run),
                    _openings(door_open, run[0].ts, run[-1].ts),
                )
            )
        run.clear()

    for p, speed in zip(positions, _speeds(positions), strict=True):
        if speed < rule.speed_kmh:
            run.append(p)
        else:
            flush()
    flush()
    return stops


def _openings(door_open: Sequence[tuple[int, int]], start: int, end: int) -> int:
    """Openings seen within [start, end]; a door already open when the stop began counts."""
    i = bisect.bisect_left(door_open, (start,))
    count, previous = 0, None
    while i < len(door_open) and door_open[i][0] <= end:
        seq = door_open[i][1]
        if previous is None or seq != previous + 1:
            count += 1
        previous = seq
        i += 1
    return count


def departure(positions: Sequence[Position], pickup: Place, radius_m: float) -> int | None:
    """Time of the first fix outside the pickup geofence after one inside it."""
    was_inside = False
    for p in positions:
        inside = distance_m(p.lat, p.lon, pickup.lat, pickup.lon) <= radius_m
        if was_inside and not inside:
            return p.ts
        was_inside = inside
    return None


def arrival(
    positions: Sequence[Position], dropoff: Place, radius_m: float, rule: StopRule
) -> int | None:
    """Start of the first stop inside the drop-off geofence."""
    for stop in find_stops(positions, rule):
        if distance_m(stop.lat, stop.lon, dropoff.lat, dropoff.lon) <= radius_m:
            return stop.start
    return None

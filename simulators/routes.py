"""Delivery rounds: a depot, customer stops inside a real city's bounding box, urban speeds
and dwell times. Pure and deterministic for a given random generator.

Legs are straight lines between places; their length is the great-circle distance times a
detour factor (streets are not straight), driven at a speed drawn per leg.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

EARTH_RADIUS_M: Final = 6_371_000.0
# Road distance over straight-line distance in a dense European city (typically 1.2-1.4).
DETOUR: Final = 1.3
URBAN_KMH: Final = (18.0, 32.0)  # mean speed of a leg through city traffic, drawn uniformly
DWELL_MIN: Final = (6.0, 15.0)  # a stop without a dwell time given: drawn uniformly


@dataclass(frozen=True, slots=True)
class Place:
    name: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class City:
    """A bounding box (degrees) and the depot the vans leave from."""

    name: str
    south: float
    west: float
    north: float
    east: float
    depot: Place

    def contains(self, lat: float, lon: float) -> bool:
        return self.south <= lat <= self.north and self.west <= lon <= self.east


CITIES: Final = {
    # The city of Paris inside the boulevard peripherique; depot at La Villette.
    "paris": City(
        "paris", 48.8156, 2.2242, 48.9022, 2.4699, Place("Depot La Villette", 48.8938, 2.3889)
    ),
    # Lyon (the city proper); depot at Port Edouard Herriot.
    "lyon": City(
        "lyon",
        45.7073,
        4.7718,
        45.8083,
        4.8984,
        Place("Dépôt Port Édouard Herriot", 45.7284, 4.8229),
    ),
}


def distance_m(a: Place, b: Place) -> float:
    """Great-circle distance (haversine), metres."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


@dataclass(frozen=True, slots=True)
class Visit:
    """A stay at a place, in seconds from the start of the round."""

    place: Place
    arrive_s: float
    depart_s: float


@dataclass(frozen=True, slots=True)
class Fix:
    lat: float
    lon: float
    speed_kmh: float


@dataclass(frozen=True, slots=True)
class Route:
    """The depot (loading until ``visits[0].depart_s``), then each stop in order."""

    visits: tuple[Visit, ...]
    speeds_kmh: tuple[float, ...]  # the speed of the leg arriving at visits[i + 1]

    @property
    def stops(self) -> tuple[Visit, ...]:
        return self.visits[1:]

    def at(self, t_s: float) -> Fix:
        """Where the van is at ``t_s``: still at a place, or along the leg between two."""
        for i, v in enumerate(self.visits):
            if t_s <= v.depart_s:
                if t_s >= v.arrive_s or i == 0:
                    return Fix(v.place.lat, v.place.lon, 0.0)
                prev = self.visits[i - 1]
                f = (t_s - prev.depart_s) / (v.arrive_s - prev.depart_s)
                lat = prev.place.lat + f * (v.place.lat - prev.place.lat)
                lon = prev.place.lon + f * (v.place.lon - prev.place.lon)
                return Fix(lat, lon, self.speeds_kmh[i - 1])
        last = self.visits[-1].place
        return Fix(last.lat, last.lon, 0.0)


def random_stop(city: City, rng: random.Random, name: str) -> Place:
    """A customer somewhere in the city (a margin of 5% from the box's edges)."""
    dy, dx = city.north - city.south, city.east - city.west
    lat = rng.uniform(city.south + 0.05 * dy, city.north - 0.05 * dy)
    lon = rng.uniform(city.west + 0.05 * dx, city.east - 0.05 * dx)
    return Place(name, round(lat, 5), round(lon, 5))


def plan(
    city: City,
    stops: list[tuple[Place, float | None]],
    loading_min: float,
    rng: random.Random,
) -> Route:
    """The round: loading at the depot for ``loading_min`` from t=0, then each (place, dwell
    minutes or None) in order; times are whole seconds."""
    t = round(loading_min * 60)
    visits = [Visit(city.depot, 0.0, float(t))]
    speeds: list[float] = []
    here = city.depot
    for place, dwell in stops:
        kmh = round(rng.uniform(*URBAN_KMH), 1)
        t += round(distance_m(here, place) * DETOUR / (kmh / 3.6))
        stay = dwell if dwell is not None else round(rng.uniform(*DWELL_MIN))
        visits.append(Visit(place, float(t), float(t + round(stay * 60))))
        t += round(stay * 60)
        speeds.append(kmh)
        here = place
    return Route(tuple(visits), tuple(speeds))

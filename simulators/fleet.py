"""A minimal fleet model: vans with two probes, GPS and a door, producing contract readings.

Pure and deterministic for a given seed, so tests know exactly what was sent.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from coldtrace.contract import GpsFix, Reading, TelemetryBatch

RUNGIS = (48.7570, 2.3510)  # the wholesale market south of Paris the vans leave from


def device_id(index: int, prefix: str = "van") -> str:
    return f"{prefix}-{index + 1:02d}"


@dataclass
class Van:
    device: str
    setpoint_c: float
    rng: random.Random
    boot: int = 1
    seq: int = 0
    up_ms: int = 0
    lat: float = RUNGIS[0]
    lon: float = RUNGIS[1]
    heading: float = 0.0
    air_c: float = field(init=False)
    product_c: float = field(init=False)

    def __post_init__(self) -> None:
        self.heading = self.rng.uniform(0, 2 * math.pi)
        self.air_c = self.setpoint_c + self.rng.uniform(-0.5, 0.5)
        self.product_c = self.setpoint_c + self.rng.uniform(-0.3, 0.3)

    def step(self, ts_ms: int, interval_s: float) -> Reading:
        """The reading taken at ts_ms, interval_s after the previous one."""
        door = self.rng.random() < 0.02
        # Air follows the fridge unit with noise and warms while the door is open; the
        # product follows the air slowly (thermal mass).
        target = self.setpoint_c + (3.0 if door else 0.0)
        self.air_c += 0.3 * (target - self.air_c) + self.rng.gauss(0, 0.15)
        self.product_c += 0.05 * (self.air_c - self.product_c)
        speed = max(0.0, self.rng.gauss(35, 12))
        self.heading += self.rng.gauss(0, 0.3)
        dist_km = speed * interval_s / 3600
        self.lat += dist_km / 111.2 * math.cos(self.heading)
        self.lon += dist_km / (111.2 * math.cos(math.radians(self.lat))) * math.sin(self.heading)
        self.seq += 1
        self.up_ms += int(interval_s * 1000)
        return Reading(
            seq=self.seq,
            ts=ts_ms,
            up=self.up_ms,
            probes={"air": round(self.air_c, 2), "product": round(self.product_c, 2)},
            gps=GpsFix(
                lat=round(self.lat, 6),
                lon=round(self.lon, 6),
                speed_kmh=round(speed, 1),
                hdop=round(self.rng.uniform(0.6, 2.0), 1),
            ),
            door=door,
            battery_v=round(12.6 + self.rng.gauss(0, 0.05), 2),
            rssi_dbm=self.rng.randint(-95, -55),
        )


def make_fleet(
    vehicles: int, seed: int = 1, setpoint_c: float = 3.0, prefix: str = "van"
) -> list[Van]:
    return [
        Van(device_id(i, prefix), setpoint_c, random.Random(seed * 1000 + i))
        for i in range(vehicles)
    ]


def batches(
    van: Van, start_ms: int, count: int, interval_s: float, per_batch: int
) -> Iterator[TelemetryBatch]:
    """`count` readings of one van from start_ms, grouped `per_batch` to a message."""
    pending: list[Reading] = []
    for i in range(count):
        pending.append(van.step(start_ms + int(i * interval_s * 1000), interval_s))
        if len(pending) == per_batch:
            yield TelemetryBatch(device=van.device, boot=van.boot, readings=pending)
            pending = []
    if pending:
        yield TelemetryBatch(device=van.device, boot=van.boot, readings=pending)

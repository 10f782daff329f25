"""A delivery's readings from InfluxDB (schema: docs/storage-schema.md)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from coldtrace.influx import InfluxClient, quote_string
from deliveries.geo import Position
from deliveries.trace import Readings, Sample
from deliveries.window import Segment, device_spans


def _between(device: str, start: int, end: int) -> str:
    return f"device = {quote_string(device)} AND time >= {start}ms AND time <= {end}ms"


class ReadingSource:
    def __init__(self, influx: InfluxClient) -> None:
        self.influx = influx

    def readings(self, segs: Iterable[Segment]) -> Readings:
        segs = list(segs)
        positions: list[Position] = []
        door: list[tuple[int, bool]] = []
        for device, start, end in device_spans(segs):
            for s in self.influx.query(
                f"SELECT lat, lon, speed_kmh FROM position WHERE {_between(device, start, end)}"
            ):
                positions.extend(Position(t, lat, lon, v) for t, lat, lon, v in s["values"])
            for s in self.influx.query(
                f"SELECT door FROM device_health WHERE {_between(device, start, end)}"
            ):
                door.extend((t, bool(d)) for t, d in s["values"] if d is not None)
        temperatures: dict[str, list[Sample]] = defaultdict(list)
        for seg in segs:
            probe = quote_string(seg.probe)
            where = f"{_between(seg.device, seg.start, seg.end)} AND probe = {probe}"
            for s in self.influx.query(f"SELECT celsius FROM temperature WHERE {where}"):
                temperatures[seg.probe].extend((t, c) for t, c in s["values"] if c is not None)
        if len(segs) > 1:  # several devices over the delivery: merge in time order
            positions.sort(key=lambda p: p.ts)
            door.sort()
            for samples in temperatures.values():
                samples.sort()
        return Readings(positions, dict(temperatures), door)

    def last_reading_ms(self, devices: Iterable[str]) -> int | None:
        """Device time of the newest reading stored for any of the devices."""
        newest: int | None = None
        for device in set(devices):
            for s in self.influx.query(
                f"SELECT last(seq) FROM device_health WHERE device = {quote_string(device)}"
            ):
                t = int(s["values"][0][0])
                newest = t if newest is None else max(newest, t)
        return newest

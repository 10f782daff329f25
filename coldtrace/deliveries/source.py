"""A delivery's readings from InfluxDB (schema: docs/storage-schema.md)."""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from alerts.evaluation import Position as Fix
from alerts.evaluation import ProbeKey
from alerts.rules import Sample as RuleSample
from coldtrace.deliveries.geo import Position
from coldtrace.deliveries.trace import Readings, Sample
from coldtrace.deliveries.window import Segment, device_spans
from coldtrace.influx import InfluxClient, quote_string

# The route, the door and each probe are separate queries: InfluxDB answers them at once.
QUERY_THREADS = 4
# Finished deliveries' readings kept in memory (a 10-hour one at 1 Hz GPS: ~5 MB).
CACHED_DELIVERIES = 16


def _between(device: str, start: int, end: int) -> str:
    return f"device = {quote_string(device)} AND time >= {start}ms AND time <= {end}ms"


class ReadingSource:
    def __init__(self, influx: InfluxClient) -> None:
        self.influx = influx
        self.pool = ThreadPoolExecutor(QUERY_THREADS, thread_name_prefix="trace-query")
        self.cache: OrderedDict[tuple[Segment, ...], tuple[tuple[int, ...], Readings]] = (
            OrderedDict()
        )
        self.lock = threading.Lock()

    def close(self) -> None:
        self.pool.shutdown()

    def _ask(self, influxql: str) -> Future[list[dict[str, Any]]]:
        return self.pool.submit(self.influx.query, influxql)

    def finished_readings(self, segs: Iterable[Segment]) -> Readings:
        """The readings of a window that has ended, from memory while InfluxDB still holds
        exactly as many readings for it: a late reading (which always writes its
        device_health point) changes the count and the window is read again."""
        key = tuple(segs)
        counts = tuple(
            f.result()
            for f in [
                self.pool.submit(self._count, device, start, end)
                for device, start, end in device_spans(key)
            ]
        )
        with self.lock:
            hit = self.cache.get(key)
            if hit is not None and hit[0] == counts:
                self.cache.move_to_end(key)
                return hit[1]
        readings = self.readings(key)
        with self.lock:
            self.cache[key] = (counts, readings)
            while len(self.cache) > CACHED_DELIVERIES:
                self.cache.popitem(last=False)
        return readings

    def _count(self, device: str, start: int, end: int) -> int:
        series = self.influx.query(
            f"SELECT count(seq) FROM device_health WHERE {_between(device, start, end)}"
        )
        return int(series[0]["values"][0][1]) if series else 0

    def readings(self, segs: Iterable[Segment]) -> Readings:
        segs = list(segs)
        spans = device_spans(segs)
        fixes = [
            self._ask(f"SELECT lat, lon, speed_kmh FROM position WHERE {_between(*span)}")
            for span in spans
        ]
        # Only the readings with the door open: a few rows instead of one per reading.
        doors = [
            self._ask(f"SELECT seq FROM device_health WHERE {_between(*span)} AND door = true")
            for span in spans
        ]
        temps = [
            (
                seg.probe,
                self._ask(
                    f"SELECT celsius FROM temperature WHERE "
                    f"{_between(seg.device, seg.start, seg.end)} "
                    f"AND probe = {quote_string(seg.probe)}"
                ),
            )
            for seg in segs
        ]
        positions = [
            Position(t, lat, lon, v)
            for f in fixes
            for s in f.result()
            for t, lat, lon, v in s["values"]
        ]
        door_open = [(t, seq) for f in doors for s in f.result() for t, seq in s["values"]]
        temperatures: dict[str, list[Sample]] = defaultdict(list)
        for probe, f in temps:
            for s in f.result():
                temperatures[probe].extend((t, c) for t, c in s["values"] if c is not None)
        if len(segs) > 1:  # several devices over the delivery: merge in time order
            positions.sort(key=lambda p: p.ts)
            door_open.sort()
            for samples in temperatures.values():
                samples.sort()
        return Readings(positions, dict(temperatures), door_open)

    def probe_samples(self, segs: Iterable[Segment]) -> dict[ProbeKey, list[RuleSample]]:
        """Every stored reading of each segment's probe, as the rules judge them: a probe
        fault (stored without ``celsius``) has no temperature, and a reading taken with the
        door open carries it (for the loading grace). Per (device, probe), in time order."""
        segs = list(segs)
        doors = [
            (
                device,
                self._ask(
                    f"SELECT seq FROM device_health WHERE {_between(device, lo, hi)} "
                    "AND door = true"
                ),
            )
            for device, lo, hi in device_spans(segs)
        ]
        temps = [
            (
                (seg.device, seg.probe),
                self._ask(
                    f"SELECT celsius, seq FROM temperature WHERE "
                    f"{_between(seg.device, seg.start, seg.end)} "
                    f"AND probe = {quote_string(seg.probe)}"
                ),
            )
            for seg in segs
        ]
        open_at = {(device, t) for device, f in doors for s in f.result() for t, _ in s["values"]}
        out: dict[ProbeKey, list[RuleSample]] = defaultdict(list)
        for key, f in temps:
            device = key[0]
            for s in f.result():
                out[key].extend(
                    RuleSample(t, seq, c, True if (device, t) in open_at else None)
                    for t, c, seq in s["values"]
                )
        for samples in out.values():
            samples.sort(key=lambda x: (x.ts, x.seq))
        return {(seg.device, seg.probe): out.get((seg.device, seg.probe), []) for seg in segs}

    def fix_at(self, device: str, ts: int) -> Fix | None:
        """The device's last GPS fix at or before ``ts`` (epoch ms), if any."""
        for s in self.influx.query(
            f"SELECT lat, lon FROM position WHERE device = {quote_string(device)} "
            f"AND time <= {ts}ms ORDER BY time DESC LIMIT 1"
        ):
            t, lat, lon = s["values"][0]
            return Fix(int(t), float(lat), float(lon))
        return None

    def temperature_count(self, segs: Iterable[Segment]) -> int:
        """How many temperature points (faults included) InfluxDB holds for the segments."""
        futures = [
            self._ask(
                f"SELECT count(seq) FROM temperature WHERE "
                f"{_between(seg.device, seg.start, seg.end)} AND probe = {quote_string(seg.probe)}"
            )
            for seg in segs
        ]
        return sum(int(s["values"][0][1]) for f in futures for s in f.result())

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

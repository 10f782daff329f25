"""The readings the rules judge, as samples (alerts/rules.py): those of a batch ingest stored,
and those InfluxDB holds (to rebuild an engine's state, or to judge what overflowed the
stage's queue). Per probe, and a device's door under DOOR; impossible probe values
(coldtrace/contract.py) are faults (celsius None); a sample in a configured suppression
window is ``paused``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from alerts.rules import Sample, Window, in_windows
from coldtrace.contract import probe_fault
from coldtrace.influx import InfluxClient, quote_string, since_groups
from coldtrace.records import FAR_FUTURE_MS, PlacedReading

DOOR = ""  # the engine key (and breach probe) of a device's door rules


def samples_of(readings: list[PlacedReading], windows: list[Window]) -> dict[str, list[Sample]]:
    """A batch's placed readings of one device as samples."""
    out: dict[str, list[Sample]] = defaultdict(list)
    for p in readings:
        r = p.reading
        paused = in_windows(windows, p.ts)
        for probe, value in r.probes.items():
            celsius = None if probe_fault(value) else value
            out[probe].append(Sample(p.ts, r.seq, celsius, r.door, paused))
        if r.door is not None:
            out[DOOR].append(Sample(p.ts, r.seq, None, r.door))
    return out


class StoredReadings:
    """InfluxDB's readings (measurements ``temperature`` and ``device_health``,
    docs/storage-schema.md); ``windows``: device -> its suppression windows (epoch ms)."""

    def __init__(self, influx: InfluxClient, windows: dict[str, list[Window]]) -> None:
        self.influx = influx
        self.windows = windows

    def samples(
        self, device: str, since: int, until: int | None = None, probe: str | None = None
    ) -> dict[str, list[Sample]]:
        """A device's stored readings from ``since`` to ``until`` (device ms, inclusive) as
        samples: per probe (only ``probe`` if given), and its door under DOOR."""
        where = f"device = {quote_string(device)} AND time >= {since}ms"
        if until is not None:
            where += f" AND time <= {until}ms"
        probes = where if probe is None else f"{where} AND probe = {quote_string(probe)}"
        return self._samples(
            device,
            self.influx.rows(f"SELECT door, seq FROM device_health WHERE {where}"),
            self.influx.rows(f"SELECT celsius, seq FROM temperature WHERE {probes} GROUP BY probe"),
        )

    def samples_of_devices(
        self, since: Mapping[str, int], until: Mapping[str, int] | None = None
    ) -> dict[str, dict[str, list[Sample]]]:
        """Several devices' stored readings, each from its ``since`` (device ms) on, up to
        its ``until`` if given (included), as ``samples`` gives them (every probe): two
        queries per 100 devices whose ``since``s lie within an hour, instead of two per
        device and probe (an engine rebuilt after a restart reads its device's history: a
        fleet's first batches come together; the spans that overflowed the queue too)."""
        last = {d: FAR_FUTURE_MS for d in since} if until is None else until
        health: dict[str, list[dict[str, Any]]] = {d: [] for d in since}
        temperature: dict[str, list[dict[str, Any]]] = {d: [] for d in since}
        for lo, where in since_groups(since):
            for rows, query in (
                (
                    health,
                    f"SELECT door, seq FROM device_health WHERE {where} AND time >= {lo}ms"
                    " GROUP BY device",
                ),
                (
                    temperature,
                    f"SELECT celsius, seq FROM temperature WHERE {where}"
                    f" AND time >= {lo}ms GROUP BY device, probe",
                ),
            ):
                for row in self.influx.rows(query):
                    if since[row["device"]] <= int(row["time"]) <= last[row["device"]]:
                        rows[row["device"]].append(row)
        return {d: self._samples(d, health[d], temperature[d]) for d in since}

    def _samples(
        self, device: str, health: list[dict[str, Any]], temperature: list[dict[str, Any]]
    ) -> dict[str, list[Sample]]:
        """A device's rows of ``device_health`` and ``temperature`` as samples."""
        doors: dict[int, bool] = {}
        out: dict[str, list[Sample]] = defaultdict(list)
        # A row without seq is a point InfluxDB shows before all its fields are visible (seen
        # under load while ingest writes the batch): skipped here, it arrives through observe.
        for row in health:
            if row.get("door") is not None and row.get("seq") is not None:
                doors[int(row["time"])] = bool(row["door"])
                out[DOOR].append(
                    Sample(int(row["time"]), int(row["seq"]), None, doors[int(row["time"])])
                )
        windows = self.windows.get(device, [])
        for row in temperature:
            if row.get("seq") is None:
                continue
            ts, c = int(row["time"]), row.get("celsius")
            celsius = None if c is None else float(c)
            paused = in_windows(windows, ts)
            out[row["probe"]].append(Sample(ts, int(row["seq"]), celsius, doors.get(ts), paused))
        return out

    def heard_since(self, device: str, probe: str, since: int) -> bool:
        """Whether InfluxDB holds readings of the probe from ``since`` (device ms) on."""
        return bool(
            self.influx.rows(
                f"SELECT last(seq) FROM temperature WHERE device = {quote_string(device)}"
                f" AND probe = {quote_string(probe)} AND time >= {since}ms"
            )
        )

    def recent_devices(self, since: int) -> list[tuple[str, int]]:
        """Each device with readings from ``since`` (ms) on, and its newest reading's time."""
        return [
            (row["device"], int(row["time"]))
            for row in self.influx.rows(
                f"SELECT last(seq) FROM device_health WHERE time >= {since}ms GROUP BY device"
            )
        ]

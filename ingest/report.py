"""What landed in InfluxDB, per device: the other side of the count identity
sent = stored + rejected + reported gaps."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from coldtrace.influx import InfluxClient


@dataclass
class Landed:
    stored: Counter[str] = field(default_factory=Counter)  # readings, by device
    rejected: Counter[str] = field(default_factory=Counter)  # readings, by reason
    rejected_by_device: Counter[str] = field(default_factory=Counter)  # readings
    dead_letters: int = 0  # rejection records (a malformed message counts once)
    gap_missing: Counter[str] = field(default_factory=Counter)  # seqs still missing, by device
    probe_range: dict[str, tuple[float, float]] = field(default_factory=dict)


def landed(influx: InfluxClient) -> Landed:
    """Everything InfluxDB holds so far (the demo subtracts what was there before its run)."""
    out = Landed()
    for row in influx.rows("SELECT count(seq) FROM device_health GROUP BY device"):
        out.stored[row["device"]] = int(row["count"])
    for row in influx.rows("SELECT sum(readings), count(readings) FROM rejected GROUP BY reason"):
        out.rejected[row["reason"]] = int(row["sum"])
        out.dead_letters += int(row["count"])
    # `device` is a field of a dead letter, not a tag (a bad payload may name any string):
    # summed here rather than grouped by InfluxDB.
    for row in influx.rows("SELECT device, readings FROM rejected"):
        if row.get("device") and row.get("readings"):
            out.rejected_by_device[str(row["device"])] += int(row["readings"])
    # The last value of each gap point is its current state (a filled gap is re-written).
    for row in influx.rows("SELECT sum(missing) FROM seq_gap GROUP BY device"):
        out.gap_missing[row["device"]] = int(row["sum"])
    for row in influx.rows(
        "SELECT min(celsius), max(celsius) FROM temperature WHERE probe = 'product' GROUP BY device"
    ):
        out.probe_range[row["device"]] = (float(row["min"]), float(row["max"]))
    return out

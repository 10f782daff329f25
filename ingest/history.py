"""What InfluxDB already holds of a device: primes the ledger and the boot clocks after a
restart, so a replay is recognised and a seq gap seen before the restart stays open."""

from __future__ import annotations

from coldtrace.influx import InfluxClient, quote_string
from ingest.ledger import DeviceHistory, SeqGap


def load_device_history(influx: InfluxClient, device: str, since_ms: int) -> DeviceHistory:
    dev = quote_string(device)
    seen = {
        int(row["seq"]): (int(row["fp"]), int(row["time"]))
        for row in influx.rows(
            f"SELECT seq, fp FROM device_health WHERE device = {dev} AND time >= {since_ms}ms"
        )
    }
    bounds = influx.rows(f"SELECT min(seq), max(seq) FROM device_health WHERE device = {dev}")
    low = int(bounds[0]["min"]) if bounds and bounds[0]["min"] is not None else None
    high = int(bounds[0]["max"]) if bounds and bounds[0]["max"] is not None else None
    gaps = []
    for row in influx.rows(
        f"SELECT first, last, missing FROM seq_gap WHERE device = {dev} AND source = 'ingest' "
        f"AND missing > 0 AND time >= {since_ms}ms"
    ):
        first, last = int(row["first"]), int(row["last"])
        gap = SeqGap(first, last, int(row["time"]), "ingest")  # ms: see lines.gap_line
        cursor = first
        for seq in sorted(s for s in seen if first <= s <= last):
            if seq > cursor:
                gap.missing.append([cursor, seq - 1])
            cursor = seq + 1
        if cursor <= last:
            gap.missing.append([cursor, last])
        if gap.missing:
            gaps.append(gap)
    return DeviceHistory(seen, high, gaps, low)


def load_boot_offset(influx: InfluxClient, device: str, boot: int) -> int | None:
    """The offset (ts - up) stored for one boot of a device, if any reading of it is stored."""
    rows = influx.rows(
        f"SELECT first(up) FROM device_health WHERE device = {quote_string(device)} "
        f"AND boot = {int(boot)}"
    )
    if not rows or rows[0].get("first") is None:
        return None
    return int(rows[0]["time"]) - int(rows[0]["first"])

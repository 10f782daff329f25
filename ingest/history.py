"""What InfluxDB already holds of a device: primes the ledger and the boot clocks after a
restart, so a replay is recognised and a seq gap seen before the restart stays open."""

from __future__ import annotations

from coldtrace.influx import InfluxClient, quote_string
from ingest.decode import valid_seq
from ingest.ledger import DeviceHistory, SeqGap, subtract
from ingest.lines import parse_seq_ranges

_SPANS_PER_QUERY = 100  # seq spans OR-ed into one query: keeps a query short to parse


def rejected_seqs(influx: InfluxClient, device: str) -> set[int]:
    """Every seq the device's dead letters put in its books as rejected (`device` is a field:
    scanned). Not a refused copy: a dead letter that counted none of its seqs stood for a seq
    stored, held or dead-lettered before (a conflicting copy of a held reading must not turn
    the held one away at its release); of a letter that counted only some, the seqs stored."""
    seqs: set[int] = set()
    some: set[int] = set()
    rows = influx.rows(
        f"SELECT seq, seqs, readings, counted FROM rejected WHERE device = {quote_string(device)}"
    )
    for row in rows:
        if (seq := valid_seq(row.get("seq"))) is not None:
            letter = [seq]
        elif row.get("seqs"):
            letter = parse_seq_ranges(str(row["seqs"]))
        else:
            continue
        if row.get("counted") is None:  # written before `counted` was: all counted
            seqs.update(letter)
            continue
        # `counted` also holds the letter's readings without a valid seq (lines.rejection_line).
        new = int(row["counted"]) - max(0, int(row.get("readings") or 0) - len(letter))
        if new >= len(letter):
            seqs.update(letter)
        elif new > 0:
            some.update(letter)
    some -= seqs
    return seqs | (some - stored_in(influx, device, [(s, s) for s in some]))


def stored_in(influx: InfluxClient, device: str, spans: list[tuple[int, int]]) -> set[int]:
    """The device's stored seqs inside inclusive seq spans (its open gaps), whatever their
    device time: `seen` holds only the window's readings, and a reading that filled a gap may
    lie before it (a backlog, or a gap revealed at receive time by a dead letter or a held
    reading), so the window alone would reload a filled seq as missing."""
    merged: list[list[int]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    seqs: set[int] = set()
    # Span by span (in chunks), not min..max: an old reported gap must not pull in every
    # reading stored since.
    for i in range(0, len(merged), _SPANS_PER_QUERY):
        where = " OR ".join(
            f"(seq >= {lo} AND seq <= {hi})" for lo, hi in merged[i : i + _SPANS_PER_QUERY]
        )
        seqs.update(
            int(row["seq"])
            for row in influx.rows(
                f"SELECT seq FROM device_health WHERE device = {quote_string(device)} AND ({where})"
            )
        )
    return seqs


def load_device_history(
    influx: InfluxClient, device: str, since_ms: int, held: set[int] | None = None
) -> DeviceHistory:
    """The device's books as InfluxDB holds them, its readings' fingerprints from device time
    `since_ms` (ms) on, and `held`: the seqs its holding area (ingest.held) keeps for their
    clock. A held seq is accounted for like a stored one (ledger.DeviceLedger.hold), unless a
    copy of it is stored or dead-lettered already (that copy is the seq's fate)."""
    dev = quote_string(device)
    seen = {
        int(row["seq"]): (int(row["fp"]), int(row["time"]))
        for row in influx.rows(
            f"SELECT seq, fp FROM device_health WHERE device = {dev} AND time >= {since_ms}ms"
        )
    }
    rejected = rejected_seqs(influx, device)
    bounds = influx.rows(f"SELECT min(seq), max(seq) FROM device_health WHERE device = {dev}")
    known = [int(bounds[0][k]) for k in ("min", "max") if bounds and bounds[0][k] is not None]
    known.extend(rejected)
    waiting = set(held or ()) - rejected
    waiting -= stored_in(influx, device, [(s, s) for s in waiting])
    known.extend(waiting)
    rows = sorted(
        influx.rows(f"SELECT first, last, missing, source FROM seq_gap WHERE device = {dev}"),
        # A device's report takes over the seqs an ingest gap held, and of two reports the
        # later point (time, then first seq) holds the seqs both miss (ledger.report_dropped):
        # each is applied after those it takes from.
        key=lambda row: (row["source"] == "device", int(row["time"]), int(row["first"])),
    )
    reported = {(int(r["first"]), int(r["last"])) for r in rows if r["source"] == "device"}
    known.extend(n for r in rows for n in (int(r["first"]), int(r["last"])))
    open_rows = [r for r in rows if int(r["missing"]) > 0]
    accounted = (
        set(seen)
        | rejected
        | waiting
        | stored_in(influx, device, [(int(r["first"]), int(r["last"])) for r in open_rows])
    )
    gaps: list[SeqGap] = []
    for row in open_rows:
        first, last = int(row["first"]), int(row["last"])
        gap = SeqGap(first, last, int(row["time"]), str(row["source"]))  # ms: lines.gap_line
        cursor = first
        for seq in sorted(s for s in accounted if first <= s <= last):
            if seq > cursor:
                gap.missing.append([cursor, seq - 1])
            cursor = seq + 1
        if cursor <= last:
            gap.missing.append([cursor, last])
        for earlier in gaps:
            earlier.missing = subtract(earlier.missing, first, last)
        gaps.append(gap)
    gaps = [g for g in gaps if g.missing]
    return DeviceHistory(
        seen,
        max(known, default=None),
        gaps,
        min(known, default=None),
        rejected,
        reported,
        since_ms,
        waiting,
    )


def load_boot_offset(influx: InfluxClient, device: str, boot: int) -> int | None:
    """The offset (ts - up) stored for one boot of a device, if any reading of it is stored."""
    rows = influx.rows(
        f"SELECT first(up) FROM device_health WHERE device = {quote_string(device)} "
        f"AND boot = {int(boot)}"
    )
    if not rows or rows[0].get("first") is None:
        return None
    return int(rows[0]["time"]) - int(rows[0]["first"])

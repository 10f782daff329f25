"""What InfluxDB already holds of the devices: primes their ledgers and boot clocks after a
restart, so a replay is recognised and a seq gap seen before the restart stays open."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from coldtrace.influx import InfluxClient, device_chunks, quote_string, since_groups
from ingest.decode import valid_seq
from ingest.ledger import DeviceHistory, SeqGap, subtract
from ingest.lines import parse_seq_ranges

_SPANS_PER_QUERY = 100  # seq spans OR-ed into one query: keeps a query short to parse


class Wanted(NamedTuple):
    """What priming one device asks for: its readings' fingerprints from device time `since_ms`
    (ms) on, and `held`, the seqs its holding area (ingest.held) keeps for their clock."""

    since_ms: int
    held: set[int]


def _by_device(
    devices: Iterable[str], rows: Iterable[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """The rows of each device (its `device` tag or field); other devices' rows dropped."""
    out: dict[str, list[dict[str, Any]]] = {d: [] for d in devices}
    for row in rows:
        if (mine := out.get(str(row.get("device")))) is not None:
            mine.append(row)
    return out


def _seen(
    influx: InfluxClient, wanted: Mapping[str, Wanted]
) -> dict[str, dict[int, tuple[int, int]]]:
    """Each device's stored seqs from its `since_ms` on: seq -> (fingerprint, ts ms)."""
    seen: dict[str, dict[int, tuple[int, int]]] = {d: {} for d in wanted}
    for since, where in since_groups({d: w.since_ms for d, w in wanted.items()}):
        for row in influx.rows(
            f"SELECT seq, fp FROM device_health WHERE {where} AND time >= {since}ms GROUP BY device"
        ):
            device, ts = row["device"], int(row["time"])
            if ts >= wanted[device].since_ms:
                seen[device][int(row["seq"])] = (int(row["fp"]), ts)
    return seen


def _letters(rows: list[dict[str, Any]]) -> tuple[set[int], set[int]]:
    """Of one device's dead letters: the seqs they put in its books as rejected, and the seqs
    of letters that counted only some of theirs (rejected unless stored). Not a refused copy:
    a dead letter that counted none of its seqs stood for a seq stored, held or
    dead-lettered before (a conflicting copy of a held reading must not turn the held one
    away at its release); of a letter that counted only some, the seqs stored."""
    seqs: set[int] = set()
    some: set[int] = set()
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
    return seqs, some - seqs


def _stored_in(
    influx: InfluxClient, spans: Mapping[str, list[tuple[int, int]]]
) -> dict[str, set[int]]:
    """Each device's stored seqs inside its inclusive seq spans (its open gaps, and single
    seqs), whatever their device time: `seen` holds only the window's readings, and a reading
    that filled a gap may lie before it (a backlog, or a gap revealed at receive time by a
    dead letter or a held reading), so the window alone would reload a filled seq as
    missing."""
    clauses: list[tuple[str, int]] = []  # (condition, its spans)
    for device, device_spans in spans.items():
        merged: list[list[int]] = []
        for lo, hi in sorted(device_spans):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        # Span by span (in chunks), not min..max: an old reported gap must not pull in every
        # reading stored since.
        for i in range(0, len(merged), _SPANS_PER_QUERY):
            chunk = merged[i : i + _SPANS_PER_QUERY]
            seqs = " OR ".join(f"(seq >= {lo} AND seq <= {hi})" for lo, hi in chunk)
            clauses.append((f"(device = {quote_string(device)} AND ({seqs}))", len(chunk)))
    stored: dict[str, set[int]] = {d: set() for d in spans}
    # A query takes devices' conditions up to the span limit.
    query: list[str] = []
    in_query = 0
    for clause, n in clauses:
        if query and in_query + n > _SPANS_PER_QUERY:
            _collect_stored(influx, query, stored)
            query, in_query = [], 0
        query.append(clause)
        in_query += n
    if query:
        _collect_stored(influx, query, stored)
    return stored


def _collect_stored(influx: InfluxClient, clauses: list[str], into: dict[str, set[int]]) -> None:
    where = " OR ".join(clauses)
    for row in influx.rows(f"SELECT seq FROM device_health WHERE {where} GROUP BY device"):
        into[row["device"]].add(int(row["seq"]))


def load_histories(influx: InfluxClient, wanted: Mapping[str, Wanted]) -> dict[str, DeviceHistory]:
    """The books of several devices as InfluxDB holds them, to prime their ledgers: per
    device its readings' fingerprints from its `since_ms` on, and its held seqs accounted for
    like stored ones (ledger.DeviceLedger.hold), unless a copy of one is stored or
    dead-lettered already (that copy is the seq's fate).

    All devices together, in a fixed number of queries per 100 devices rather than several
    per device: after a restart a fleet's first batches arrive together, and `rejected` (where
    `device` is a field, not a tag) is scanned once for all of them instead of once each.
    Raises InfluxUnavailable (the caller retries) or InfluxRejected."""
    devices = list(wanted)
    rejected_rows: list[dict[str, Any]] = []
    bound_rows: list[dict[str, Any]] = []
    gap_rows: list[dict[str, Any]] = []
    for where in device_chunks(devices):
        rejected_rows += influx.rows(
            f"SELECT device, seq, seqs, readings, counted FROM rejected WHERE {where}"
        )
        bound_rows += influx.rows(
            f"SELECT min(seq), max(seq) FROM device_health WHERE {where} GROUP BY device"
        )
        gap_rows += influx.rows(
            f"SELECT first, last, missing, source FROM seq_gap WHERE {where} GROUP BY device"
        )
    seen = _seen(influx, wanted)
    letters = {d: _letters(rows) for d, rows in _by_device(devices, rejected_rows).items()}
    gaps = _by_device(devices, gap_rows)
    bounds = _by_device(devices, bound_rows)
    # One look-up of stored seqs for what all three questions below need: the seqs of letters
    # that counted only some, the held seqs, and the open gaps.
    spans = {
        d: [(s, s) for s in letters[d][1] | wanted[d].held]
        + [(int(r["first"]), int(r["last"])) for r in gaps[d] if int(r["missing"]) > 0]
        for d in devices
    }
    stored = _stored_in(influx, {d: s for d, s in spans.items() if s})
    return {
        d: _history(seen[d], letters[d], bounds[d], gaps[d], stored.get(d, set()), wanted[d])
        for d in devices
    }


def _history(
    seen: dict[int, tuple[int, int]],
    letters: tuple[set[int], set[int]],
    bounds: list[dict[str, Any]],
    gap_rows: list[dict[str, Any]],
    stored: set[int],
    wanted: Wanted,
) -> DeviceHistory:
    """One device's history from its rows; `stored`: its stored seqs among the ones asked
    about (load_histories)."""
    certain, some = letters
    rejected = certain | (some - stored)
    known = [int(bounds[0][k]) for k in ("min", "max") if bounds and bounds[0][k] is not None]
    known.extend(rejected)
    waiting = wanted.held - rejected - stored
    known.extend(waiting)
    rows = sorted(
        gap_rows,
        # A device's report takes over the seqs an ingest gap held, and of two reports the
        # later point (time, then first seq) holds the seqs both miss (ledger.report_dropped):
        # each is applied after those it takes from.
        key=lambda row: (row["source"] == "device", int(row["time"]), int(row["first"])),
    )
    reported = {(int(r["first"]), int(r["last"])) for r in rows if r["source"] == "device"}
    known.extend(n for r in rows for n in (int(r["first"]), int(r["last"])))
    open_rows = [r for r in rows if int(r["missing"]) > 0]
    accounted = set(seen) | rejected | waiting | stored
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
        wanted.since_ms,
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

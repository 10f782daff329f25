"""Issue 11: every reading accounted for. The ingest pipeline (decode, clock, ledger, one write)
against the session's real InfluxDB and a SQLite holding area, with the exact books
(ingest/books.py) each case of the issue's Why list must give."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coldtrace import demo
from coldtrace import influx as influx_adapter
from coldtrace.contract import MAX_BATCH_BYTES, telemetry_topic
from coldtrace.db import upgrade
from coldtrace.influx import InfluxClient, InfluxRejected, quote_string
from coldtrace.settings import Settings
from ingest import history
from ingest.books import Books, load_books
from ingest.held import HeldReadings
from ingest.history import Wanted, load_histories
from ingest.pipeline import InboundMessage, Pipeline
from ingest.report import landed
from tests.conftest import Api, run_coldtrace, stored_seqs

T = 1_764_000_000_000  # 2025-11-24T16:00:00Z
HOUR = 3_600_000
FIELD = Path(__file__).parents[1] / "fixtures" / "field"


class Ingest:
    """The pipeline as `coldtrace ingest` drives it, one batch of messages per send()."""

    def __init__(self, influx: InfluxClient, url: str) -> None:
        """`url`: the relational store holding readings for their clock (migrated here)."""
        upgrade(url)
        self.url = url
        self.influx = influx
        self.held = HeldReadings(url)
        self.restart()

    def restart(self) -> None:
        """A new process: nothing in memory, the holding area and InfluxDB as they are."""
        self.pipeline = Pipeline(
            self.influx,
            self.held,
            max_payload_bytes=MAX_BATCH_BYTES,
            dedup_window_h=24,
            stop=threading.Event(),
            max_clock_ahead_s=300,
        )

    def send(self, device: str, *payloads: bytes, received_ms: int | None = None) -> None:
        now_ns = (received_ms * 1_000_000) if received_ms else time.time_ns()
        batch = [
            InboundMessage(telemetry_topic(device), p, i, 1, 0, now_ns + i * 1000)
            for i, p in enumerate(payloads)
        ]
        work = self.pipeline.prepare(batch)
        try:
            self.pipeline.store(work)
        except InfluxRejected:
            self.pipeline.forget([batch])
            self.pipeline.recover(batch, work)


def holding_area(directory: Path) -> str:
    """A SQLite holding area of its own in a test's directory."""
    return f"sqlite:///{directory / 'held.db'}"


def reading(seq: int, ts: int | None = None, up: int | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "ts": T + seq * 1000 if ts is None and "ts" not in extra else ts,
        "up": seq * 1000 if up is None else up,
        "probes": {"air": 3.5, "product": 2.5},
        **extra,
    }


def unsynced(seq: int, up: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"seq": seq, "ts": None, "up": seq * 1000 if up is None else up, **extra} | {
        "probes": extra.get("probes", {"air": 3.5})
    }


def batch(device: str, readings: list[dict[str, Any]], boot: int = 1, **extra: Any) -> bytes:
    return json.dumps({"device": device, "boot": boot, "readings": readings, **extra}).encode()


def books(ingest: Ingest, device: str) -> Books:
    return load_books(ingest.influx, device, held=ingest.held.seqs(device))


def summary(b: Books) -> tuple[int, int, int, int, int, int, bool | None]:
    """(sent, stored, rejected, missing, dropped, copies, agrees)."""
    return (b.sent, b.stored, b.rejected, b.missing, b.dropped, b.copies, b.agrees)


def dead(influx: InfluxClient, device: str) -> list[tuple[str, Any, int, int]]:
    rows = influx.rows(
        f"SELECT reason, seq, readings, counted FROM rejected WHERE device = {quote_string(device)}"
    )
    return [(r["reason"], r["seq"], r["readings"], r["counted"]) for r in rows]


def celsius(influx: InfluxClient, device: str, probe: str = "air") -> list[tuple[int, float]]:
    rows = influx.rows(
        f"SELECT seq, celsius FROM temperature WHERE device = {quote_string(device)} "
        f"AND probe = {quote_string(probe)}"
    )
    return [(r["seq"], r["celsius"]) for r in rows]


def gap_points(influx: InfluxClient, device: str) -> list[tuple[str, int, int, int]]:
    rows = influx.rows(f"SELECT * FROM seq_gap WHERE device = {quote_string(device)}")
    return [(r["source"], r["first"], r["last"], r["missing"]) for r in rows]


@pytest.fixture
def ingest(influx: InfluxClient, tmp_path: Path) -> Ingest:
    return Ingest(influx, holding_area(tmp_path))


# -- no silent overwrite ---------------------------------------------------------------------


def test_two_seqs_at_one_device_time_the_second_is_dead_lettered(
    ingest: Ingest, prefix: str
) -> None:
    d = f"{prefix}-01"
    same = [
        reading(2, ts=T, up=1, probes={"air": 4.5}),
        reading(3, ts=T, up=2, probes={"air": 9.5}),
    ]
    ingest.send(d, batch(d, same))

    assert celsius(ingest.influx, d) == [(2, 4.5)]
    assert dead(ingest.influx, d) == [("time_taken", 3, 1, 1)]
    assert summary(books(ingest, d)) == (2, 1, 1, 0, 0, 0, True)
    # After a restart the time is still taken (the ledger is primed from InfluxDB).
    ingest.restart()
    ingest.send(d, batch(d, [reading(4, ts=T, up=3)]))
    assert celsius(ingest.influx, d) == [(2, 4.5)]
    assert summary(books(ingest, d)) == (3, 1, 2, 0, 0, 0, True)


def test_a_conflicting_duplicate_older_than_the_ledgers_memory_is_refused(
    ingest: Ingest, prefix: str
) -> None:
    d = f"{prefix}-01"
    ingest.send(d, batch(d, [reading(1, ts=T - 48 * HOUR, probes={"product": 3.0})]))
    newer = [reading(s, ts=T + s * 1000) for s in range(2, 10_002)]
    ingest.send(d, *(batch(d, newer[i : i + 500]) for i in range(0, len(newer), 500)))
    assert 1 not in ingest.pipeline.ledger[d].seen  # pruned: beyond the 24 h window

    ingest.send(d, batch(d, [reading(1, ts=T - 48 * HOUR, probes={"product": 25.0})]))
    # A replay of the old seq at a new time is not a second reading either.
    ingest.send(d, batch(d, [reading(1, ts=T + 20_000_000, probes={"product": 3.0})]))
    # An identical replay of it is an idempotent repeat.
    ingest.send(d, batch(d, [reading(1, ts=T - 48 * HOUR, probes={"product": 3.0})]))

    assert celsius(ingest.influx, d, "product")[0] == (1, 3.0)
    assert len(celsius(ingest.influx, d, "product")) == 10_001
    assert dead(ingest.influx, d) == [
        ("conflicting_duplicate", 1, 1, 0),
        ("conflicting_duplicate", 1, 1, 0),
    ]
    assert ingest.pipeline.totals["duplicates"] == 1
    assert summary(books(ingest, d)) == (10_001, 10_001, 0, 0, 0, 2, True)


@pytest.mark.parametrize("restart", [False, True])
def test_a_conflicting_duplicate_of_a_held_reading_is_dead_lettered(
    ingest: Ingest, prefix: str, restart: bool
) -> None:
    """And after a restart the copy's dead letter (it counted nothing) does not make the
    held reading's seq a dead-lettered one: the held reading is stored at its release."""
    d = f"{prefix}-01"
    ingest.send(d, batch(d, [unsynced(1, probes={"air": 3.0})], boot=5))
    ingest.send(d, batch(d, [unsynced(1, probes={"air": 9.0})], boot=5))  # conflicting
    ingest.send(d, batch(d, [unsynced(1, probes={"air": 3.0})], boot=5))  # identical: nothing
    assert dead(ingest.influx, d) == [("conflicting_held_duplicate", 1, 1, 0)]
    # While held, seq 1 is held (not rejected, not missing) and its conflicting copy a copy.
    b = books(ingest, d)
    assert (b.sent, b.stored, b.held, b.rejected, b.missing, b.copies, b.agrees) == (
        1,
        0,
        1,
        0,
        0,
        1,
        True,
    )
    if restart:
        ingest.restart()
    ingest.send(d, batch(d, [reading(2, up=2000)], boot=5))  # sets the clock

    assert celsius(ingest.influx, d) == [(1, 3.0), (2, 3.5)]
    assert ingest.held.count() == 0
    assert summary(books(ingest, d)) == (2, 2, 0, 0, 0, 1, True)


# -- the identity ----------------------------------------------------------------------------


def test_a_dead_lettered_seq_is_rejected_not_also_missing(ingest: Ingest, prefix: str) -> None:
    d = f"{prefix}-01"
    readings = [reading(1), reading(2), reading(3, door=1), reading(4)]
    ingest.send(d, batch(d, readings))
    ingest.send(d, batch(d, [reading(5), reading(6, probes={"air": "warm"}), reading(8)]))

    assert dead(ingest.influx, d) == [("invalid_reading", 3, 1, 1), ("invalid_reading", 6, 1, 1)]
    assert gap_points(ingest.influx, d) == [("ingest", 7, 7, 1)]
    assert summary(books(ingest, d)) == (8, 5, 2, 1, 0, 0, True)
    ingest.send(d, batch(d, [reading(3, door=1)]))  # the same bad reading again: no change
    assert summary(books(ingest, d)) == (8, 5, 2, 1, 0, 1, True)


def test_a_dropped_range_overlapping_stored_seqs_counts_only_the_unseen(
    ingest: Ingest, prefix: str
) -> None:
    d = f"{prefix}-01"
    ingest.send(d, batch(d, [reading(s) for s in range(1, 11)]))
    ingest.send(d, batch(d, [reading(11), reading(12)], dropped=[{"from": 8, "to": 14}]))
    ingest.send(d, batch(d, [reading(15)]))

    assert gap_points(ingest.influx, d) == [("device", 8, 14, 2)]
    assert summary(books(ingest, d)) == (15, 13, 0, 2, 2, 0, True)


def test_a_gap_revealed_by_a_dead_letter_reloads_with_its_old_filler_after_a_restart(
    ingest: Ingest, prefix: str
) -> None:
    """The dead letter of seq 1 reveals gap 2..9 at its receive time (today); seq 5 fills it
    with a device time a year before, outside the window a restart reloads (24 h): the
    reloaded gap must still know 5 is stored, or the next change writes one too many."""
    d = f"{prefix}-01"
    ingest.send(d, batch(d, [reading(10)]))
    ingest.send(d, batch(d, [reading(1, door=1)]))
    ingest.send(d, batch(d, [reading(5)]))
    assert gap_points(ingest.influx, d) == [("ingest", 2, 9, 7)]
    ingest.restart()
    ingest.send(d, batch(d, [reading(3, door=1)]))  # primes the ledger: now - 24 h on

    assert ingest.pipeline.ledger[d].gaps[0].missing == [[2, 2], [4, 4], [6, 9]]
    assert gap_points(ingest.influx, d) == [("ingest", 2, 9, 6)]
    assert summary(books(ingest, d)) == (10, 2, 2, 6, 0, 0, True)


def test_devices_primed_together_after_a_restart_keep_their_own_books(
    ingest: Ingest, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart the fleet's first batches come together, and their devices' ledgers
    are primed together (history.load_histories: a few queries for many devices). Each
    device's history must be exactly what it is alone: B stores every seq A misses, C's
    readings lie 30 h before the others' (read apart), B's window starts later than A's
    (its older readings dropped); two devices and two seq spans a query, so every chunking
    is crossed."""
    monkeypatch.setattr(influx_adapter, "DEVICES_PER_QUERY", 2)
    monkeypatch.setattr(history, "_SPANS_PER_QUERY", 2)
    a, b, c = (f"{prefix}-0{i}" for i in (1, 2, 3))
    ingest.send(a, batch(a, [reading(10)]))
    ingest.send(a, batch(a, [reading(1, door=1)]))  # dead-lettered: reveals gap 2..9
    ingest.send(a, batch(a, [reading(5)]))
    ingest.send(a, batch(a, [reading(12)]))  # gap 11..11
    ingest.send(b, batch(b, [reading(s) for s in range(1, 13)]))
    ingest.send(b, batch(b, [unsynced(13)], boot=2))  # held for its clock
    ingest.send(c, batch(c, [reading(s, ts=T - 30 * HOUR + s * 1000) for s in (1, 4)]))
    wanted = {
        a: Wanted(T - 60_000, set()),
        b: Wanted(T + 6500, ingest.held.seqs_of([b])[b]),
        c: Wanted(T - 31 * HOUR, set()),
    }

    together = load_histories(ingest.influx, wanted)

    assert together == {d: load_histories(ingest.influx, {d: w})[d] for d, w in wanted.items()}
    assert {g.first: g.missing for g in together[a].gaps} == {2: [[2, 4], [6, 9]], 11: [[11, 11]]}
    assert (together[a].rejected, together[a].low, together[a].high) == ({1}, 1, 12)
    assert (sorted(together[b].seen), together[b].held) == (list(range(7, 13)), {13})
    assert sorted(together[c].seen) == [1, 4]

    ingest.restart()
    messages = [
        InboundMessage(telemetry_topic(d), batch(d, [r]), i, 1, 0, time.time_ns() + i)
        for i, (d, r) in enumerate(
            [(a, reading(3)), (b, reading(14)), (c, reading(5, ts=T - 30 * HOUR + 5000))]
        )
    ]
    work = ingest.pipeline.prepare(messages)
    ingest.pipeline.store(work)

    assert {d: ack.payload() for d, ack in work.acks.items()} == {
        a: b'{"from":1,"seq":1,"high":12}',
        b: b'{"from":1,"seq":14,"high":14}',
        c: b'{"from":1,"seq":1,"high":5}',
    }
    assert summary(books(ingest, a)) == (12, 4, 1, 7, 0, 0, True)
    assert summary(books(ingest, b)) == (14, 13, 0, 0, 0, 0, True)
    assert summary(books(ingest, c)) == (5, 3, 0, 2, 0, 0, True)


def test_a_backlog_reading_older_than_the_window_stays_out_of_its_reloaded_gap(
    ingest: Ingest, prefix: str
) -> None:
    """Gap 2..9 opens at T + 1 s; seq 5 arrives from a backlog 30 h older. Reloaded from the
    window (from T + 3 s - 24 h), 5 would be missing again."""
    d = f"{prefix}-01"
    ingest.send(d, batch(d, [reading(10)]), batch(d, [reading(1)]))
    ingest.send(d, batch(d, [reading(5, ts=T - 30 * HOUR)]))
    ingest.restart()
    ingest.send(d, batch(d, [reading(3), reading(11)]))

    assert gap_points(ingest.influx, d) == [("ingest", 2, 9, 6)]
    assert summary(books(ingest, d)) == (11, 5, 0, 6, 0, 0, True)


def test_a_held_seq_between_two_gaps_counts_when_dead_lettered_after_a_restart(
    ingest: Ingest, prefix: str
) -> None:
    """Held seq 3 (boot 2, no clock) fills gap 2..3, seq 5 opens gap 4..4. After a restart
    the books must still know 3 is held: released onto seq 5's device time, it is dead-
    lettered and counts as rejected (taken for a seq stored long ago, it counted 0)."""
    d = f"{prefix}-01"
    ingest.send(d, batch(d, [reading(1)]))
    ingest.send(d, batch(d, [unsynced(3)], boot=2))
    ingest.send(d, batch(d, [reading(5)]))
    ingest.restart()
    # Boot 2's clock: seq 3 (up 3 s) lands at T + 5 s, seq 5's device time.
    ingest.send(d, batch(d, [reading(6, ts=T + 8000, up=6000)], boot=2))

    assert dead(ingest.influx, d) == [("time_taken", 3, 1, 1)]
    assert sorted(gap_points(ingest.influx, d)) == [("ingest", 2, 2, 1), ("ingest", 4, 4, 1)]
    assert summary(books(ingest, d)) == (6, 3, 1, 2, 0, 0, True)


def test_a_held_seq_above_the_stored_ones_opens_no_false_gap_after_a_restart(
    ingest: Ingest, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    d = f"{prefix}-01"
    ingest.send(d, batch(d, [reading(1)]))
    ingest.send(d, batch(d, [unsynced(2)], boot=2))
    ingest.restart()
    with caplog.at_level(logging.WARNING, logger="ingest.pipeline"):
        ingest.send(d, batch(d, [reading(3)]))
    ingest.send(d, batch(d, [reading(4, up=4000)], boot=2))

    assert "seq gap" not in caplog.text
    assert gap_points(ingest.influx, d) == []
    assert summary(books(ingest, d)) == (4, 4, 0, 0, 0, 0, True)


def test_a_replayed_message_of_held_readings_writes_its_dropped_gap_once(
    ingest: Ingest, prefix: str
) -> None:
    d = f"{prefix}-01"
    ingest.send(d, batch(d, [reading(s) for s in range(1, 15)]))
    held = batch(d, [unsynced(20), unsynced(21)], boot=2, dropped=[{"from": 15, "to": 19}])
    ingest.send(d, held)
    ingest.send(d, held)  # MQTT redelivery
    ingest.restart()
    ingest.send(d, held)  # and after a restart

    assert gap_points(ingest.influx, d) == [("device", 15, 19, 5)]
    ingest.send(d, batch(d, [reading(22, up=22_000)], boot=2))
    assert gap_points(ingest.influx, d) == [("device", 15, 19, 5)]
    assert summary(books(ingest, d)) == (22, 17, 0, 5, 5, 0, True)


def test_held_readings_released_by_the_clock_open_no_false_gap(
    ingest: Ingest, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    d = f"{prefix}-01"
    ingest.send(d, batch(d, [unsynced(1), unsynced(2), unsynced(3)], boot=3))
    with caplog.at_level(logging.WARNING, logger="ingest.pipeline"):
        ingest.send(d, batch(d, [reading(4, up=4000)], boot=3))

    assert stored_seqs(ingest.influx, d) == [1, 2, 3, 4]
    assert gap_points(ingest.influx, d) == []
    assert "seq gap" not in caplog.text
    assert summary(books(ingest, d)) == (4, 4, 0, 0, 0, 0, True)


# -- bounds ----------------------------------------------------------------------------------


def test_derived_times_far_ahead_or_before_2020_are_dead_lettered(
    ingest: Ingest, prefix: str
) -> None:
    d = f"{prefix}-01"
    # Boot 3's clock: seq 3 at T, up 10^12 ms (31 years) -> boot 3 began in 1994.
    held = [unsynced(1, up=10**13 + 10**12), unsynced(2, up=1000)]
    ingest.send(d, batch(d, held, boot=3))
    ingest.send(d, batch(d, [reading(3, ts=T, up=10**12)], boot=3))

    assert dead(ingest.influx, d) == [("clock_ahead", 1, 1, 1), ("clock_behind", 2, 1, 1)]
    assert celsius(ingest.influx, d) == [(3, 3.5)]
    assert summary(books(ingest, d)) == (3, 1, 2, 0, 0, 0, True)


def test_a_device_clock_years_ahead_is_dead_lettered_not_stored_in_the_future(
    ingest: Ingest, prefix: str
) -> None:
    d = f"{prefix}-01"
    now = int(time.time() * 1000)
    ts_2099 = 4_070_908_800_000
    ingest.send(
        d,
        batch(d, [reading(1, ts=now - 1000), reading(2, ts=now + 60_000), reading(3, ts=ts_2099)]),
        received_ms=now,
    )

    assert [s for s, _ in celsius(ingest.influx, d)] == [1, 2]  # a minute ahead: allowed
    [(reason, seq, readings, counted)] = dead(ingest.influx, d)
    assert (reason, seq, readings, counted) == ("clock_ahead", 3, 1, 1)
    assert summary(books(ingest, d)) == (3, 2, 1, 0, 0, 0, True)


def test_readings_older_than_the_late_horizon_are_stored_and_flagged(
    ingest: Ingest, prefix: str
) -> None:
    d = f"{prefix}-01"
    now = int(time.time() * 1000)
    ingest.send(d, batch(d, [reading(1, ts=now - 49 * HOUR), reading(2, ts=now - HOUR)]))
    rows = ingest.influx.rows(
        f"SELECT seq, late FROM device_health WHERE device = {quote_string(d)}"
    )
    assert [(r["seq"], r["late"]) for r in rows] == [(1, True), (2, None)]
    assert ingest.pipeline.totals["late"] == 1


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("case-17-duplicate-probe-key.json", "duplicate_key"),
        ("case-17b-duplicate-ts-key.json", "duplicate_key"),
        ("case-18-uint64-seq.json", "invalid_reading"),
        ("case-18b-bool-seq.json", "invalid_reading"),
    ],
)
def test_field_cases_17_and_18_are_dead_lettered_with_their_real_reason(
    ingest: Ingest, name: str, reason: str, prefix: str
) -> None:
    d = f"{prefix}-07"
    body = (FIELD / name).read_bytes().replace(b'"van-07"', f'"{d}"'.encode())
    ingest.send(d, body)

    rows = ingest.influx.rows(
        f"SELECT reason, seq, readings FROM rejected WHERE device = {quote_string(d)}"
    )
    assert [r["reason"] for r in rows] == [reason]  # never storage_rejected
    assert rows[0]["readings"] == 1
    b = books(ingest, d)
    if name.startswith("case-18"):
        assert rows[0]["seq"] is None
        assert celsius(ingest.influx, d, "product") == [(13, 3.0)]
        assert summary(b) == (2, 1, 1, 0, 0, 0, True)  # 1 stored + 1 rejected
    else:
        assert rows[0]["seq"] == 12
        assert summary(b) == (1, 0, 1, 0, 0, 0, True)


def test_repeated_keys_are_dead_lettered_never_last_one_wins(ingest: Ingest, prefix: str) -> None:
    d = f"{prefix}-01"
    envelope = b'{"device":"%s","boot":1,"boot":7,"readings":[%s]}' % (
        d.encode(),
        json.dumps(reading(1)).encode(),
    )
    # Only reading 2's first probe is repeated (replace's count: 1).
    probe = batch(d, [reading(2), reading(3)]).replace(b'"air": 3.5', b'"air": 4.5, "air": 55.0', 1)
    ingest.send(d, envelope, probe)

    assert dead(ingest.influx, d) == [("duplicate_key", 1, 1, 1), ("duplicate_key", 2, 1, 1)]
    assert celsius(ingest.influx, d) == [(3, 3.5)]
    assert summary(books(ingest, d)) == (3, 1, 2, 0, 0, 0, True)


def test_nan_probe_value_is_that_probes_fault_and_the_rest_is_kept(
    ingest: Ingest, prefix: str
) -> None:
    d = f"{prefix}-01"
    ingest.send(
        d, batch(d, [reading(1, probes={"air": 0.5, "product": 2.5})]).replace(b"0.5", b"NaN")
    )
    rows = ingest.influx.rows(
        f"SELECT probe, celsius, fault, raw FROM temperature WHERE device = {quote_string(d)}"
    )
    assert sorted((r["probe"], r["celsius"], r["fault"], r["raw"]) for r in rows) == [
        ("air", None, "not_a_number", None),
        ("product", 2.5, None, None),
    ]
    assert summary(books(ingest, d)) == (1, 1, 0, 0, 0, 0, True)


def largest_batch(device: str, seq0: int = 1) -> bytes:
    """500 readings of 16 probes with GPS and every optional field (as in the issue)."""
    probes = {f"compartment-{i:02d}-product-probe-x": -12.345678901234567 for i in range(16)}
    gps = {"lat": 48.75694912345678, "lon": 2.351132123456789, "speed_kmh": 88.25, "hdop": 0.9}
    readings = [
        reading(s, probes=probes, gps=gps, door=False, battery_v=12.61, rssi_dbm=-71)
        for s in range(seq0, seq0 + 500)
    ]
    return batch(device, readings)


def test_the_contracts_largest_batch_is_accepted_and_a_larger_one_counted(
    ingest: Ingest, prefix: str
) -> None:
    d = f"{prefix}-01"
    big = largest_batch(d)
    assert 500_000 < len(big) <= MAX_BATCH_BYTES
    ingest.send(d, big)
    over = json.loads(largest_batch(d, 501))
    over["pad"] = "x" * (MAX_BATCH_BYTES - 400_000)
    ingest.send(d, json.dumps(over).encode())

    assert dead(ingest.influx, d) == [("oversize", None, 500, 500)]
    assert summary(books(ingest, d)) == (1000, 500, 500, 0, 0, 0, True)


def test_the_broker_takes_a_message_larger_than_the_contracts_largest_batch() -> None:
    conf = Path(__file__).parents[2] / "deploy" / "mosquitto" / "conf.d" / "limits.conf"
    [limit] = [
        int(line.split()[1])
        for line in conf.read_text().splitlines()
        if line.startswith("max_packet_size")
    ]
    assert limit >= MAX_BATCH_BYTES + 1024  # the topic and MQTT headers on top


# -- one write -------------------------------------------------------------------------------


class CountingInflux(InfluxClient):
    """The real client, counting its writes and queries."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.writes: list[bytes] = []
        self.queries: list[str] = []

    def write(self, body: bytes, precision: Any = "ms") -> None:
        self.writes.append(body)
        super().write(body, precision)

    def query(self, influxql: str) -> list[dict[str, Any]]:
        self.queries.append(influxql)
        return super().query(influxql)


@pytest.fixture
def counted(settings: Settings, tmp_path: Path) -> Iterator[tuple[CountingInflux, Ingest]]:
    """Ingest writing through a CountingInflux."""
    influx = CountingInflux(settings)
    yield influx, Ingest(influx, holding_area(tmp_path))
    influx.close()


def test_a_backlog_older_than_the_ledgers_window_is_loaded_once_not_asked_per_reading(
    counted: tuple[CountingInflux, Ingest], prefix: str
) -> None:
    influx, ingest = counted
    d = f"{prefix}-01"
    old = T - 72 * HOUR
    ingest.send(d, batch(d, [reading(s, ts=old + s * 1000) for s in range(1, 301)]))
    ingest.restart()
    ingest.send(d, batch(d, [reading(1000, ts=T)]))  # primes the window: T - 24 h .. T
    influx.queries.clear()
    # The device's spool replayed (seqs 1..300, three days old) and its next readings.
    replay = [reading(s, ts=old + s * 1000) for s in range(1, 301)]
    more = [reading(s, ts=old + s * 1000) for s in range(301, 400)]
    ingest.send(d, batch(d, replay), batch(d, more))

    assert len(influx.queries) == 2  # the window below, and the first seq
    assert ingest.pipeline.totals["duplicates"] == 300
    assert summary(books(ingest, d)) == (1000, 400, 0, 600, 0, 0, True)


def test_readings_and_their_seq_gap_are_one_write(
    counted: tuple[CountingInflux, Ingest], prefix: str
) -> None:
    influx, ingest = counted
    d = f"{prefix}-01"
    ingest.send(d, batch(d, [reading(1)]))
    influx.writes.clear()
    ingest.send(d, batch(d, [reading(5)]))

    [body] = influx.writes
    assert b"seq_gap," in body and b"device_health," in body
    assert gap_points(influx, d) == [("ingest", 2, 4, 3)]


# -- where the books are shown ---------------------------------------------------------------


def metric(api: Api, name: str) -> int:
    text = api.client.get("/metrics").text
    [value] = [line.split()[1] for line in text.splitlines() if line.startswith(f"{name} ")]
    return int(float(value))


def totals(api: Api, *names: str) -> dict[str, int]:
    """The fleet's books in /metrics: name (sent, stored, ...) -> coldtrace_books_<name>."""
    return {k: metric(api, f"coldtrace_books_{k}") for k in names}


def moved(api: Api, before: dict[str, int]) -> dict[str, int]:
    """How far the /metrics totals moved since ``before`` (totals())."""
    return {k: n - before[k] for k, n in totals(api, *before).items()}


def books_env(settings: Settings, database_url: str) -> dict[str, str]:
    """What `coldtrace books` reads: the session's InfluxDB, and the store of held readings."""
    return {
        "COLDTRACE_INFLUX_URL": settings.influx_url,
        "COLDTRACE_INFLUX_DATABASE": settings.influx_database,
        "COLDTRACE_DATABASE_URL": database_url,
    }


def books_everywhere(
    api: Api, env: dict[str, str], device: str, before: dict[str, int]
) -> dict[str, Any]:
    """The device's books from the API, checked equal to `coldtrace books --json`'s (with
    ``env``) and to what the /metrics totals moved by since ``before`` (moved())."""
    via_api: dict[str, Any] = api.ok("GET", f"/devices/{device}/books")
    done = run_coldtrace("books", device, "--json", **env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [via_api]
    assert moved(api, before) == {k: via_api[k] for k in before}
    return via_api


def test_books_over_the_api_for_staff_and_404_for_customers(
    api: Api, ingest: Ingest, prefix: str
) -> None:
    d = f"{prefix}-01"
    api.ok("POST", "/devices", json={"id": d})
    api.ok("POST", "/customers", json={"id": "acme", "name": "ACME labs"})
    before = totals(api, "sent", "stored", "rejected", "missing")
    ingest.send(d, batch(d, [reading(1), reading(3, door=1), reading(5)]))

    assert api.ok("GET", f"/devices/{d}/books") == {
        "device": d,
        "sent": 5,
        "stored": 2,
        "held": 0,
        "rejected": 1,
        "missing": 2,
        "dropped": 0,
        "copies": 0,
        "first_seq": 1,
        "last_seq": 5,
        "agrees": True,
    }
    # The /metrics totals moved by exactly this device's books.
    assert moved(api, before) == {
        "sent": 5,
        "stored": 2,
        "rejected": 1,
        "missing": 2,
    }
    since = "2025-11-24T16:00:05"  # T + 5 s: the readings from seq 5 on
    ranged = api.ok("GET", f"/devices/{d}/books", params={"since": since})
    assert (ranged["sent"], ranged["stored"], ranged["first_seq"], ranged["agrees"]) == (
        1,
        1,
        5,
        None,
    )
    empty = api.client.get(
        f"/api/v1/devices/{d}/books", params={"since": since, "until": since}, headers=api.admin
    )  # all zeros, as for a device that never spoke
    assert (empty.status_code, empty.json()["detail"]) == (
        422,
        "since is not before until: no device time lies between them",
    )
    for role in ("quality", "dispatcher"):
        assert api.ok("GET", f"/devices/{d}/books", api.key(role))["stored"] == 2
    acme = api.key("customer", "acme")
    for device in (d, "no-such-device"):
        r = api.client.get(f"/api/v1/devices/{device}/books", headers=acme)
        assert r.status_code == 404, r.text
    assert (
        api.client.get("/api/v1/devices/no-such-device/books", headers=api.admin).status_code == 404
    )


def test_coldtrace_books_prints_the_table_and_json(
    settings: Settings, ingest: Ingest, prefix: str
) -> None:
    d, quiet = f"{prefix}-01", f"{prefix}-02"
    ingest.send(d, batch(d, [reading(1), reading(2, door=1), reading(4)]))
    env = books_env(settings, ingest.url)

    done = run_coldtrace("books", d, quiet, **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "DEVICE        SENT  STORED  HELD  REJECTED  MISSING  DROPPED  COPIES  FIRST_SEQ"
        "  LAST_SEQ  AGREES",
        f"{d}     4       2     0         1        1        0       0          1         4  yes   ",
        f"{quiet}     0       0     0         0        0        0       0           "
        "            yes   ",
    ]
    # a device with nothing at all (a mistyped id looks the same) is pointed out
    assert done.stderr == (
        f"note: {quiet}: nothing from this device in InfluxDB; check its id "
        "(coldtrace devices list)\n"
    )
    as_json = run_coldtrace("books", d, "--json", "--since", "2025-11-24T16:00:02Z", **env)
    [books] = json.loads(as_json.stdout)
    assert (books["stored"], books["first_seq"], books["agrees"]) == (1, 4, None)

    bad = run_coldtrace("books", d, "--since", "yesterday", **env)
    assert bad.returncode == 2 and "is not an ISO 8601 time" in bad.stderr
    down = run_coldtrace(
        "books", d, COLDTRACE_INFLUX_URL="http://127.0.0.1:9", COLDTRACE_DATABASE_URL=ingest.url
    )
    assert down.returncode == 2
    assert down.stderr.strip().startswith("error: InfluxDB at http://127.0.0.1:9 did not answer")
    assert "Traceback" not in down.stderr


def test_the_demos_books_count_held_readings_as_held(ingest: Ingest, prefix: str) -> None:
    """`coldtrace demo`'s table per van (coldtrace/demo.py over ingest/report.py): stored 1,
    2 and 7, 3 and 4 held for boot 2's clock, 6 dead-lettered, 5 missing; the 7 readings
    acknowledged are all accounted for, none lost (held ones counted nowhere, they were 2)."""
    d = f"{prefix}-01"
    ingest.send(d, batch(d, [reading(1), reading(2)]))
    ingest.send(d, batch(d, [unsynced(3), unsynced(4)], boot=2))
    ingest.send(d, batch(d, [reading(6, door=1)]))  # dead letter
    ingest.send(d, batch(d, [reading(7)]))
    found = landed(ingest.influx, ingest.held, [d])
    assert found[d].books == books(ingest, d)
    assert demo.books(Counter({d: 7}), found) == [
        {
            "van": d,
            "sent": 7,
            "stored": 3,
            "held": 2,
            "rejected": 1,
            "missing": 1,
            "lost": 0,
            "product_min_c": "2.5",
            "product_max_c": "2.5",
        }
    ]


def test_after_a_restart_the_cli_the_api_and_metrics_give_the_same_books(
    api: Api, settings: Settings, ingest: Ingest, prefix: str
) -> None:
    """A gap revealed at receive time, filled by a year-old reading and a held one, reloaded
    at a restart and changed after it: every place that shows the books says the same."""
    d = f"{prefix}-01"
    api.ok("POST", "/devices", json={"id": d})
    before = totals(api, "sent", "stored", "rejected", "missing")
    ingest.send(d, batch(d, [reading(10)]))
    ingest.send(d, batch(d, [reading(1, door=1)]))  # dead letter: gap 2..9 at receive time
    ingest.send(d, batch(d, [reading(5)]))
    ingest.send(d, batch(d, [unsynced(7)], boot=2))  # held for boot 2's clock
    ingest.restart()
    ingest.send(d, batch(d, [reading(3, door=1)]))
    ingest.send(d, batch(d, [reading(8, up=8000)], boot=2))  # sets the clock: 7 is stored

    via_all = books_everywhere(api, books_env(settings, ingest.url), d, before)
    expected = {"sent": 10, "stored": 4, "rejected": 2, "missing": 4}  # missing: 2, 4, 6, 9
    assert {k: via_all[k] for k in before} == expected
    assert (via_all["first_seq"], via_all["last_seq"], via_all["agrees"]) == (1, 10, True)


def test_held_readings_count_as_held_in_the_books_until_their_clock_is_known(
    api: Api, settings: Settings, influx: InfluxClient, database_url: str, prefix: str
) -> None:
    """Stored 1 and 5, 3 held for boot 2's clock: 3 is held, not missing (2 and 4 are), the
    same in the API, `coldtrace books` and /metrics; once boot 2's clock is known 3 is stored
    and the books still agree. Ingest holds in the API's database, as deployed."""
    ingest = Ingest(influx, database_url)
    d = f"{prefix}-01"
    api.ok("POST", "/devices", json={"id": d})
    names = ("sent", "stored", "held", "rejected", "missing")
    before = totals(api, *names)
    env = books_env(settings, database_url)
    ingest.send(d, batch(d, [reading(1)]))
    ingest.send(d, batch(d, [unsynced(3)], boot=2))
    ingest.send(d, batch(d, [reading(5)]))
    assert ingest.held.seqs(d) == {3}
    assert sorted(gap_points(influx, d)) == [("ingest", 2, 2, 1), ("ingest", 4, 4, 1)]
    held = {"sent": 5, "stored": 2, "held": 1, "rejected": 0, "missing": 2, "dropped": 0}
    assert books_everywhere(api, env, d, before) == {
        "device": d,
        **held,
        "copies": 0,
        "first_seq": 1,
        "last_seq": 5,
        "agrees": True,
    }

    # Over a device-time range a held seq (no time yet) counts between its first and last
    # stored seq: seqs 1 and 5 before T + 6 s, seq 5 alone from T + 5 s.
    until = api.ok("GET", f"/devices/{d}/books", params={"until": "2025-11-24T16:00:06"})
    assert [until[k] for k in (*names, "agrees")] == [5, 2, 1, 0, 2, None]
    since = api.ok("GET", f"/devices/{d}/books", params={"since": "2025-11-24T16:00:05"})
    assert [since[k] for k in (*names, "agrees")] == [1, 1, 0, 0, 0, None]

    # Boot 2's clock: seq 6 at T + 9 s, up 6 s -> seq 3 (up 3 s) at T + 6 s, a free time.
    ingest.send(d, batch(d, [reading(6, ts=T + 9000, up=6000)], boot=2))
    assert ingest.held.seqs(d) == set()
    assert stored_seqs(influx, d) == [1, 3, 5, 6]
    assert books_everywhere(api, env, d, before) == {
        "device": d,
        "sent": 6,
        "stored": 4,
        "held": 0,
        "rejected": 0,
        "missing": 2,
        "dropped": 0,
        "copies": 0,
        "first_seq": 1,
        "last_seq": 6,
        "agrees": True,
    }

"""The ledger: dedup by (device, seq) and seq gaps opened, filled and reported."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from coldtrace.contract import Reading
from coldtrace.records import PlacedReading
from ingest.ledger import (
    HOUR_MS,
    MAX_OPEN_GAPS,
    DeviceHistory,
    DeviceLedger,
    GapChange,
    Ledger,
    SeqGap,
    Verdict,
)

DEV = "van-01"
T = 1_700_000_000_000


def ts_of(seq: int) -> int:
    return T + seq * 60_000


def placed(seq: int, ts: int | None = None) -> PlacedReading:
    ts = ts_of(seq) if ts is None else ts
    return PlacedReading(DEV, 1, Reading(seq=seq, ts=ts, up=seq, probes={"air": 3.0}), ts, False)


def fresh(window_ms: int = 24 * HOUR_MS) -> DeviceLedger:
    return DeviceLedger(DeviceHistory({}, None, []), window_ms)


def record(ledger: DeviceLedger, *seqs: int) -> list[GapChange]:
    changes: list[GapChange] = []
    for s in seqs:
        changes.extend(ledger.record(DEV, placed(s), 1000 + s))
    return changes


def summary(changes: list[GapChange]) -> list[tuple[str, int, int, int, str]]:
    return [(c.device, c.gap.first, c.gap.last, c.missing, c.gap.source) for c in changes]


# -- dedup -----------------------------------------------------------------------------------


def test_verdicts_new_duplicate_conflict() -> None:
    ledger = fresh()
    assert ledger.check(7, 111, ts_of(7)) is Verdict.NEW

    ledger.record(DEV, placed(7), 111)

    assert ledger.check(7, 111, ts_of(7)) is Verdict.DUPLICATE
    assert ledger.check(7, 222, ts_of(7)) is Verdict.CONFLICT
    assert ledger.check(8, 111, ts_of(8)) is Verdict.NEW


def test_verdicts_from_primed_history() -> None:
    ledger = DeviceLedger(DeviceHistory({5: (555, ts_of(5))}, 5, []), HOUR_MS)

    assert ledger.check(5, 555, ts_of(5)) is Verdict.DUPLICATE
    assert ledger.check(5, 556, ts_of(5)) is Verdict.CONFLICT
    assert ledger.check(4, 555, ts_of(4)) is Verdict.NEW
    assert record(ledger, 6) == []  # continues from the primed high-water mark
    assert record(ledger, 8) == [GapChange(DEV, SeqGap(7, 7, ts_of(8), "ingest", [[7, 7]]), 1)]


def test_seen_older_than_the_window_is_forgotten_after_pruning() -> None:
    ledger = fresh(window_ms=60_000)  # one reading a minute: keeps the last 2
    for s in range(10_000):
        ledger.record(DEV, placed(s), 1)

    # Forgotten, not new: only InfluxDB can say whether a copy is a repeat or a conflict.
    assert ledger.check(0, 1, ts_of(0)) is Verdict.UNKNOWN
    assert ledger.check(9_997, 1, ts_of(9_997)) is Verdict.UNKNOWN
    assert ledger.check(0, 1, ts_of(20_000)) is Verdict.UNKNOWN  # an old seq at a new time
    ledger.learn(0, 1, ts_of(0))  # what InfluxDB answered
    assert ledger.check(0, 1, ts_of(0)) is Verdict.DUPLICATE
    assert ledger.check(0, 2, ts_of(20_000)) is Verdict.CONFLICT
    assert ledger.check(10_000, 1, ts_of(9_999)) is Verdict.TIME_TAKEN
    assert ledger.check(10_000, 1, ts_of(10_000)) is Verdict.NEW
    assert ledger.check(9_998, 1, ts_of(9_998)) is Verdict.DUPLICATE
    assert ledger.check(9_999, 1, ts_of(9_999)) is Verdict.DUPLICATE


def test_the_window_in_memory_stays_under_a_quarter_more_than_the_window() -> None:
    ledger = fresh(window_ms=80_000 * 60_000)  # 80,000 readings (one a minute)
    peak = 0
    for s in range(200_000):
        ledger.record(DEV, placed(s), 1)
        peak = max(peak, len(ledger.seen))

    # Pruned when a quarter of the window (20,000 readings) came since the last prune: at
    # most the 80,001 kept by a prune (seqs 19,999..99,999 at the 100,000th reading) and the
    # 19,999 that come before the next prune (the 20,000th triggers it).
    assert peak == 100_000
    # The last prune, at the 197,656th reading, kept seqs 117,655 and up.
    assert len(ledger.seen) == len(ledger.times) == 82_345
    assert min(ledger.seen) == 117_655


# -- gaps detected by ingest -----------------------------------------------------------------


def test_in_order_seqs_open_no_gap() -> None:
    ledger = fresh()
    assert record(ledger, 0, 1, 2, 3) == []
    assert ledger.gaps == []
    assert ledger.high == 3


def test_first_seq_seen_opens_no_gap() -> None:
    ledger = fresh()
    assert record(ledger, 500) == []
    assert ledger.high == 500


def test_a_jump_opens_a_gap() -> None:
    ledger = fresh()
    record(ledger, 0, 1, 2)

    changes = record(ledger, 10)

    gap = SeqGap(3, 9, ts_of(10), "ingest", [[3, 9]])
    assert changes == [GapChange(DEV, gap, 7)]
    assert ledger.gaps == [gap]
    assert gap.missing_count == 7
    assert ledger.high == 10


def test_filling_the_middle_splits_the_gap() -> None:
    ledger = fresh()
    record(ledger, 2, 10)

    changes = record(ledger, 5)

    assert summary(changes) == [(DEV, 3, 9, 6, "ingest")]
    assert ledger.gaps == [SeqGap(3, 9, ts_of(10), "ingest", [[3, 4], [6, 9]])]
    assert ledger.high == 10


def test_filling_an_edge_shrinks_the_missing_range() -> None:
    ledger = fresh()
    record(ledger, 2, 10)

    assert summary(record(ledger, 3)) == [(DEV, 3, 9, 6, "ingest")]
    assert summary(record(ledger, 9)) == [(DEV, 3, 9, 5, "ingest")]
    assert ledger.gaps[0].missing == [[4, 8]]


def test_filling_completely_emits_missing_zero_and_closes_the_gap() -> None:
    ledger = fresh()
    record(ledger, 2, 6)  # gap 3..5

    changes = record(ledger, 4, 3, 5)

    assert summary(changes) == [
        (DEV, 3, 5, 2, "ingest"),
        (DEV, 3, 5, 1, "ingest"),
        (DEV, 3, 5, 0, "ingest"),
    ]
    assert ledger.gaps == []
    # The span and time of the gap stay what they were when it opened.
    assert changes[-1].gap.opened_ts == ts_of(6)


def test_a_late_seq_outside_any_gap_changes_nothing() -> None:
    ledger = fresh()
    record(ledger, 2, 3, 4, 8)  # gap 5..7

    assert record(ledger, 3) == []
    assert ledger.gaps == [SeqGap(5, 7, ts_of(8), "ingest", [[5, 7]])]


def test_two_gaps_are_tracked_separately() -> None:
    ledger = fresh()
    record(ledger, 0, 3, 6)  # gaps 1..2 and 4..5

    assert summary(record(ledger, 4)) == [(DEV, 4, 5, 1, "ingest")]
    assert [(g.first, g.last, g.missing) for g in ledger.gaps] == [
        (1, 2, [[1, 2]]),
        (4, 5, [[5, 5]]),
    ]


def test_at_most_max_open_gaps_are_kept_oldest_goes_first() -> None:
    ledger = fresh()
    record(ledger, *range(0, 2 * (MAX_OPEN_GAPS + 1) + 1, 2))  # 1001 gaps of one seq

    assert len(ledger.gaps) == MAX_OPEN_GAPS
    assert (ledger.gaps[0].first, ledger.gaps[-1].last) == (3, 2001)


# -- gaps reported by the device -------------------------------------------------------------


def test_report_dropped_right_after_the_high_water_mark() -> None:
    ledger = fresh()
    record(ledger, 0, 1, 2, 3, 4)

    changes = ledger.report_dropped(DEV, 5, 9, T)

    reported = SeqGap(5, 9, T, "device", [[5, 9]])
    assert changes == [GapChange(DEV, reported, 5)]
    assert ledger.gaps == [reported]  # kept: a seq arriving after all fills it
    assert ledger.report_dropped(DEV, 5, 9, T + 1) == []  # a replayed report changes nothing
    assert ledger.high == 9
    assert record(ledger, 10) == []


def test_report_dropped_above_the_high_water_mark_also_opens_an_ingest_gap() -> None:
    ledger = fresh()
    record(ledger, 0, 1, 2, 3, 4)

    changes = ledger.report_dropped(DEV, 8, 12, T)

    lost = SeqGap(5, 7, T, "ingest", [[5, 7]])
    assert changes == [
        GapChange(DEV, lost, 3),
        GapChange(DEV, SeqGap(8, 12, T, "device", [[8, 12]]), 5),
    ]
    assert ledger.gaps == [lost, SeqGap(8, 12, T, "device", [[8, 12]])]
    assert ledger.high == 12
    assert record(ledger, 13) == []
    # The lost seqs can still arrive late and fill the ingest gap.
    assert summary(record(ledger, 6)) == [(DEV, 5, 7, 2, "ingest")]


def test_report_dropped_closes_part_of_an_open_ingest_gap() -> None:
    ledger = fresh()
    record(ledger, 2, 10)  # gap 3..9

    changes = ledger.report_dropped(DEV, 5, 7, T)

    assert summary(changes) == [(DEV, 3, 9, 4, "ingest"), (DEV, 5, 7, 3, "device")]
    assert ledger.gaps == [
        SeqGap(3, 9, ts_of(10), "ingest", [[3, 4], [8, 9]]),
        SeqGap(5, 7, T, "device", [[5, 7]]),
    ]
    assert ledger.high == 10


def test_report_dropped_covering_a_whole_ingest_gap_closes_it() -> None:
    ledger = fresh()
    record(ledger, 2, 6)  # gap 3..5

    changes = ledger.report_dropped(DEV, 3, 5, T)

    assert summary(changes) == [(DEV, 3, 5, 0, "ingest"), (DEV, 3, 5, 3, "device")]
    assert ledger.gaps == [SeqGap(3, 5, T, "device", [[3, 5]])]


def test_of_two_overlapping_reports_the_later_point_holds_the_seqs_both_miss() -> None:
    """Whichever arrives first: the order a restart reloads them in (history)."""
    late, early = (10, 15, T + 16_000), (8, 12, T + 13_000)
    for order in ([late, early], [early, late]):
        ledger = fresh()
        record(ledger, 1)
        for first, last, ts in order:
            ledger.report_dropped(DEV, first, last, ts)

        reports = {
            (g.first, g.last): {s for lo, hi in g.missing for s in range(lo, hi + 1)}
            for g in ledger.gaps
            if g.source == "device"
        }
        assert reports == {(10, 15): set(range(10, 16)), (8, 12): {8, 9}}
        assert [g.missing for g in ledger.gaps if g.source == "ingest"] == [[[2, 7]]]


def test_report_dropped_on_a_device_never_seen() -> None:
    ledger = fresh()

    changes = ledger.report_dropped(DEV, 5, 9, T)

    assert summary(changes) == [(DEV, 5, 9, 5, "device")]
    assert ledger.high == 9


# -- the acknowledgement (contract v1.1) -----------------------------------------------------


def acked(ledger: DeviceLedger) -> tuple[int, int, int] | None:
    ack = ledger.acked()
    return None if ack is None else (ack.first, ack.seq, ack.high)


def test_the_ack_runs_from_the_lowest_seq_to_below_the_first_missing_one() -> None:
    ledger = fresh()
    assert ledger.acked() is None
    record(ledger, 3, 4, 5)
    assert acked(ledger) == (3, 5, 5)
    record(ledger, 9, 12)  # gaps 6..8 and 10..11
    assert acked(ledger) == (3, 5, 12)
    record(ledger, 6, 7, 8)
    assert acked(ledger) == (3, 9, 12)
    ledger.report_dropped(DEV, 10, 11, T)  # reported dropped: accounted for
    assert acked(ledger) == (3, 12, 12)
    record(ledger, 1)  # below the lowest: 2 is missing now
    assert acked(ledger) == (1, 1, 12)


def test_held_readings_are_covered_and_open_no_gap_when_placed() -> None:
    ledger = fresh()
    record(ledger, 1, 2)
    assert ledger.hold(DEV, [3, 4, 5], T) == []
    assert acked(ledger) == (1, 5, 5)
    assert record(ledger, 6, 3, 4, 5) == []  # the clock is set: placed, no false gap
    assert summary(ledger.hold(DEV, [9], T)) == [(DEV, 7, 8, 2, "ingest")]
    assert acked(ledger) == (1, 6, 9)


# -- the Ledger of all devices ---------------------------------------------------------------


def test_ledger_primes_and_forgets_devices() -> None:
    ledger = Ledger(window_h=2)
    assert ledger.window_ms == 7_200_000
    assert not ledger.knows(DEV)

    ledger.prime(DEV, DeviceHistory({1: (11, T)}, 1, []))
    ledger.prime("van-02", DeviceHistory({}, None, []))

    assert ledger.knows(DEV)
    assert ledger[DEV].check(1, 11, ts_of(1)) is Verdict.DUPLICATE
    assert ledger[DEV].window_ms == 7_200_000

    ledger.forget({DEV, "never-seen"})
    assert not ledger.knows(DEV)
    assert ledger.knows("van-02")


# -- property: every seq between the lowest and highest delivered is stored or in a gap -------

N = 40
deliveries = st.lists(st.integers(0, N), min_size=1, max_size=3 * N)


def deliver(seqs: list[int]) -> DeviceLedger:
    """As ingest does: record a reading only when its (seq, fingerprint) is new."""
    ledger = fresh()
    for s in seqs:
        fp = 1000 + s
        verdict = ledger.check(s, fp, ts_of(s))
        if verdict is Verdict.NEW:
            ledger.record(DEV, placed(s), fp)
        else:
            assert verdict is Verdict.DUPLICATE
    return ledger


def never_delivered(seqs: list[int]) -> int:
    return len(set(range(min(seqs), max(seqs) + 1)) - set(seqs))


def open_missing(ledger: DeviceLedger) -> int:
    return sum(g.missing_count for g in ledger.gaps)


@settings(max_examples=300, deadline=None, database=None)
@given(deliveries)
def test_missing_is_exactly_the_never_delivered_when_the_lowest_comes_first(
    seqs: list[int],
) -> None:
    seqs = [min(seqs), *seqs]
    ledger = deliver(seqs)

    assert open_missing(ledger) == never_delivered(seqs)
    assert ledger.high == max(seqs)
    missing = {s for g in ledger.gaps for lo, hi in g.missing for s in range(lo, hi + 1)}
    assert missing == set(range(min(seqs), max(seqs) + 1)) - set(seqs)


@settings(max_examples=300, deadline=None, database=None)
@example([2, 0])  # 1 is never delivered and never reported
@given(deliveries)
def test_missing_is_exactly_the_never_delivered_in_any_order(seqs: list[int]) -> None:
    assert open_missing(deliver(seqs)) == never_delivered(seqs)


# -- dead-lettered seqs and reported drops in the books (issue 11) ---------------------------


def test_a_dead_lettered_seq_fills_its_gap_instead_of_being_missing_too() -> None:
    ledger = fresh()
    record(ledger, 1, 2)
    assert ledger.record_rejected(DEV, 3, T) == (True, [])  # no gap: 3 is accounted for
    assert record(ledger, 4) == []
    assert summary(record(ledger, 7)) == [(DEV, 5, 6, 2, "ingest")]
    new, changes = ledger.record_rejected(DEV, 5, T)
    assert (new, summary(changes)) == (True, [(DEV, 5, 6, 1, "ingest")])
    assert ledger.record_rejected(DEV, 5, T) == (False, [])  # dead-lettered twice: once
    assert ledger.record_rejected(DEV, 4, T) == (False, [])  # a refused copy of a stored seq
    assert ledger.check(3, 1, ts_of(3)) is Verdict.REFUSED_BEFORE  # its first fate stands


def test_a_dropped_range_overlapping_stored_seqs_counts_only_the_unseen_ones() -> None:
    ledger = fresh()
    record(ledger, 1, 2, 3, 8)  # gap 4..7
    ledger.record_rejected(DEV, 9, T)

    changes = ledger.report_dropped(DEV, 2, 11, T)

    # 2, 3 and 8 stored, 9 dead-lettered; 4..7 move from the ingest gap; 10, 11 never seen.
    assert summary(changes) == [(DEV, 4, 7, 0, "ingest"), (DEV, 2, 11, 6, "device")]
    assert ledger.gaps == [SeqGap(2, 11, T, "device", [[4, 7], [10, 11]])]
    assert ledger.high == 11


def test_a_second_report_overlapping_the_first_takes_over_its_seqs() -> None:
    ledger = fresh()
    record(ledger, 1)
    ledger.report_dropped(DEV, 2, 5, T)

    changes = ledger.report_dropped(DEV, 4, 7, T + 1)

    assert summary(changes) == [(DEV, 2, 5, 2, "device"), (DEV, 4, 7, 4, "device")]
    assert sum(g.missing_count for g in ledger.gaps) == 6  # 2..7, each seq once


def test_a_reading_with_another_seqs_time_is_time_taken() -> None:
    ledger = fresh()
    ledger.record(DEV, placed(2, ts=T), 5)
    assert ledger.check(3, 5, T) is Verdict.TIME_TAKEN
    assert ledger.check(2, 5, T) is Verdict.DUPLICATE

"""BootClocks: readings with ts null are placed from another reading of the same boot."""

from __future__ import annotations

from coldtrace.contract import Reading
from coldtrace.records import PlacedReading
from ingest.clock import BootClocks

T = 1_700_000_000_000  # a synced device time, epoch ms


def r(seq: int, ts: int | None, up: int) -> Reading:
    return Reading(seq=seq, ts=ts, up=up, probes={"air": 3.0})


def times(placed: list[PlacedReading]) -> list[tuple[int, int, bool]]:
    return [(p.reading.seq, p.ts, p.derived) for p in placed]


def test_ts_null_placed_from_a_reference_in_the_same_batch() -> None:
    clocks = BootClocks()
    readings = [r(1, None, 4_000), r(2, T, 64_000), r(3, None, 124_000)]

    placed, held = clocks.place("van-01", 1, readings)

    # ts = ts_ref + up - up_ref
    assert times(placed) == [
        (1, T - 60_000, True),
        (2, T, False),
        (3, T + 60_000, True),
    ]
    assert held == []
    assert [(p.device, p.boot) for p in placed] == [("van-01", 1)] * 3
    assert [p.reading for p in placed] == readings
    assert clocks.offset(("van-01", 1)) == T - 64_000


def test_readings_with_ts_keep_their_own_ts_and_are_not_derived() -> None:
    clocks = BootClocks()
    placed, held = clocks.place("van-01", 1, [r(1, T, 1_000), r(2, T + 61_234, 60_000)])

    # The second reading's ts is not re-derived from the first one's offset.
    assert times(placed) == [(1, T, False), (2, T + 61_234, False)]
    assert held == []


def test_held_when_the_boot_has_no_reference() -> None:
    clocks = BootClocks()
    readings = [r(1, None, 4_000), r(2, None, 64_000)]

    placed, held = clocks.place("van-01", 1, readings)

    assert placed == []
    assert held == readings
    assert clocks.offset(("van-01", 1)) is None


def test_held_readings_placed_once_the_offset_is_learned() -> None:
    clocks = BootClocks()
    early = [r(1, None, 4_000), r(2, None, 64_000)]
    _, held = clocks.place("van-01", 1, early)

    placed_now, held_now = clocks.place("van-01", 1, [r(3, T, 124_000)])
    assert times(placed_now) == [(3, T, False)]
    assert held_now == []

    # What ingest does with the held readings once the boot's clock is known.
    released, still_held = clocks.place("van-01", 1, held)
    assert times(released) == [(1, T - 120_000, True), (2, T - 60_000, True)]
    assert still_held == []


def test_another_boot_is_not_affected() -> None:
    clocks = BootClocks()
    clocks.place("van-01", 1, [r(1, T, 10_000)])

    placed, held = clocks.place("van-01", 2, [r(2, None, 5_000)])

    assert placed == []
    assert held == [r(2, None, 5_000)]
    assert clocks.offset(("van-01", 2)) is None


def test_another_device_with_the_same_boot_number_is_not_affected() -> None:
    clocks = BootClocks()
    clocks.place("van-01", 1, [r(1, T, 10_000)])

    placed, held = clocks.place("van-02", 1, [r(1, None, 5_000)])

    assert (placed, held) == ([], [r(1, None, 5_000)])


def test_first_offset_is_kept_for_a_stable_replay() -> None:
    clocks = BootClocks()
    clocks.place("van-01", 1, [r(1, T, 10_000)])  # offset T - 10_000

    # The clock was corrected later: this reading suggests an offset 5 s later.
    placed, _ = clocks.place("van-01", 1, [r(2, None, 20_000), r(3, T + 15_000, 20_000)])

    assert times(placed) == [(2, T + 10_000, True), (3, T + 15_000, False)]
    assert clocks.offset(("van-01", 1)) == T - 10_000

    # A replay of that batch places it exactly as before.
    again, _ = clocks.place("van-01", 1, [r(2, None, 20_000), r(3, T + 15_000, 20_000)])
    assert again == placed


def test_first_reference_in_a_batch_wins() -> None:
    clocks = BootClocks()
    placed, _ = clocks.place(
        "van-01", 1, [r(1, None, 0), r(2, T, 1_000), r(3, T + 9_000, 2_000), r(4, None, 3_000)]
    )

    assert times(placed) == [
        (1, T - 1_000, True),
        (2, T, False),
        (3, T + 9_000, False),
        (4, T + 2_000, True),
    ]


def test_learn_an_offset_from_history() -> None:
    clocks = BootClocks()
    clocks.learn(("van-01", 1), T)

    placed, held = clocks.place("van-01", 1, [r(5, None, 2_500)])

    assert times(placed) == [(5, T + 2_500, True)]
    assert held == []


def test_learn_does_not_replace_a_known_offset() -> None:
    clocks = BootClocks()
    clocks.place("van-01", 1, [r(1, T, 0)])

    clocks.learn(("van-01", 1), T + 99_000)

    assert clocks.offset(("van-01", 1)) == T
    placed, _ = clocks.place("van-01", 1, [r(2, None, 1_000)])
    assert times(placed) == [(2, T + 1_000, True)]


def test_offset_is_unknown_for_an_unseen_boot() -> None:
    assert BootClocks().offset(("van-01", 1)) is None

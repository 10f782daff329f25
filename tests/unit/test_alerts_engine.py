"""The engine judges the set of readings, not their arrival: order, repeats and batching
never change the breaches, and the changes it reports add up to what it finally holds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.engine import ProbeEngine
from alerts.rules import (
    MINUTE_MS,
    BreachClosed,
    BreachOpened,
    BreachRecord,
    BreachUpdated,
    BreachWithdrawn,
    Event,
    ProbeRules,
    Sample,
    door_rules,
)
from coldtrace.profiles import load_profiles

T0 = 1_784_007_600_000
CHILLED = ProbeRules(load_profiles()["chilled"])


FROZEN = ProbeRules(load_profiles()["deep-frozen"])  # with loading suppression by the door


def series_strategy(
    low: float = -1.0, high: float = 10.0, min_size: int = 1
) -> st.SearchStrategy[list[Sample]]:
    step = st.integers(min_value=1, max_value=8)  # minutes between readings
    temperature = st.floats(min_value=low, max_value=high).map(lambda v: round(v, 1))
    value = st.one_of(st.none(), temperature)
    door = st.one_of(st.none(), st.booleans())
    return st.lists(st.tuples(step, value, door), min_size=min_size, max_size=150).map(
        lambda rows: [
            Sample(T0 + sum(r[0] for r in rows[: i + 1]) * MINUTE_MS, i, v, d)
            for i, (_, v, d) in enumerate(rows)
        ]
    )


def fold(view: dict[tuple[str, int], BreachRecord], changes: list[Event]) -> None:
    for e in changes:
        if isinstance(e, BreachWithdrawn):
            del view[e.breach.key]
        else:
            view[e.breach.key] = e.breach


def reference(samples: list[Sample], rules: ProbeRules = CHILLED) -> list[BreachRecord]:
    engine = ProbeEngine(rules)
    engine.add(samples)
    return engine.breaches()


@settings(max_examples=150, deadline=None)
@given(series_strategy(), st.randoms(use_true_random=False), st.data())
def test_arrival_order_repeats_and_batches_do_not_change_breaches(samples, rnd, data) -> None:
    check_arrival_independence(samples, rnd, data, CHILLED)


@settings(max_examples=100, deadline=None)
@given(series_strategy(-20.0, -13.0, min_size=40), st.randoms(use_true_random=False), st.data())
def test_same_with_loading_suppression(samples, rnd, data) -> None:
    check_arrival_independence(samples, rnd, data, FROZEN)


def check_arrival_independence(samples, rnd, data, rules: ProbeRules) -> None:
    expected = reference(samples, rules)
    arrivals = samples + data.draw(st.lists(st.sampled_from(samples), max_size=20))
    rnd.shuffle(arrivals)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(arrivals)), max_size=10)))
    engine = ProbeEngine(rules)
    seen: dict[tuple[str, int], BreachRecord] = {}
    for a, b in zip([0, *cuts], [*cuts, len(arrivals)], strict=True):
        fold(seen, engine.add(arrivals[a:b]))
    assert engine.breaches() == expected
    assert sorted(seen.values(), key=lambda x: (x.start, x.rule)) == expected


@settings(max_examples=50, deadline=None)
@given(series_strategy())
def test_replaying_everything_again_reports_nothing(samples) -> None:
    engine = ProbeEngine(CHILLED)
    engine.add(samples)
    assert engine.add(list(reversed(samples))) == []


def excursion(minutes: range, value: float) -> list[Sample]:
    return [Sample(T0 + m * MINUTE_MS, m, value) for m in minutes]


def test_backlog_arriving_late_is_merged_and_flagged_late() -> None:
    engine = ProbeEngine(CHILLED)
    before = excursion(range(0, 10), 3.0)
    hot = excursion(range(10, 40), 6.0)
    after = excursion(range(40, 60), 3.0)
    assert engine.add(before + after) == []
    changes = engine.add(hot)  # the device's spool of minutes 10..39 arrives last
    assert [type(e) for e in changes] == [BreachOpened, BreachClosed]
    assert all(e.late for e in changes)
    (breach,) = engine.breaches()
    assert (breach.start, breach.end) == (T0 + 10 * MINUTE_MS, T0 + 40 * MINUTE_MS)


def test_a_late_reading_in_range_withdraws_a_breach_it_disproves() -> None:
    engine = ProbeEngine(CHILLED)
    first = engine.add(excursion(range(0, 14, 2), 6.0) + excursion(range(16, 20, 2), 6.0))
    assert [type(e) for e in first] == [BreachOpened, BreachUpdated]
    # the reading of minute 14 arrives late and is in range: no 15 minutes out in a row
    changes = engine.add(excursion(range(14, 15), 2.0))
    assert [type(e) for e in changes] == [BreachWithdrawn]
    assert engine.breaches() == []


def test_known_breaches_are_not_reported_again_after_a_restart() -> None:
    samples = excursion(range(0, 30), 6.0)
    first = ProbeEngine(CHILLED)
    first.add(samples)
    restarted = ProbeEngine(CHILLED, known=first.breaches())  # as the store holds them
    assert restarted.add(samples) == []
    assert [type(e) for e in restarted.add(excursion(range(30, 31), 3.0))] == [BreachClosed]


def test_readings_behind_the_horizon_are_counted_not_evaluated() -> None:
    engine = ProbeEngine(CHILLED, horizon_ms=60 * MINUTE_MS)
    engine.add(excursion(range(0, 1000, 5), 3.0))  # 200 readings over 1000 minutes
    assert engine.add(excursion(range(1, 30, 5), 9.0)) == []
    assert engine.too_late == 6
    # kept: the last hour (12 readings) and up to one checkpoint interval (32) before it
    assert 12 <= len(engine.samples) <= 12 + 32


def test_a_late_reading_re_runs_from_the_checkpoint_before_it() -> None:
    # 100 readings a minute, 6 C from minute 20 to 49: the excursion spans the checkpoint
    # after the 32nd reading; the reading of minute 40 arrives last.
    series = excursion(range(0, 20), 3.0) + excursion(range(20, 50), 6.0)
    series += excursion(range(50, 100), 3.0)
    late = series.pop(40)
    engine = ProbeEngine(CHILLED)
    engine.add(series)
    (before,) = engine.breaches()
    assert engine.add([late]) == []  # a value like its neighbours: nothing changes
    assert engine.breaches() == [before] == reference([*series, late])
    assert (before.start, before.end) == (T0 + 20 * MINUTE_MS, T0 + 50 * MINUTE_MS)


@settings(max_examples=50, deadline=None)
@given(series_strategy(min_size=1), st.data())
def test_run_rule_by_rule_equals_update_reading_by_reading(samples, data) -> None:
    marks = sorted(set(data.draw(st.lists(st.integers(0, len(samples) - 1), max_size=5))))
    state, events, marked = CHILLED.initial(), [], []
    for i, s in enumerate(samples):
        state, ev = CHILLED.update(state, s)
        events.append(ev)
        if i in marks:
            marked.append(state)
    assert CHILLED.run(CHILLED.initial(), samples, marks) == (state, events, marked)


def test_a_breach_closed_where_its_stretch_ends_keeps_its_peak_and_degree_minutes() -> None:
    """Chilled (critical above +8 C): 5 C from minute 10, 9 C at minute 20 (critical at
    once: the breach opens escalated), 12 C from 21 to 29; the delivery ends at minute 30.
    The closed breach carries the peak and degree-minutes of all its readings, not those
    of the reading that escalated it (9 C, 10 degree-minutes)."""
    engine = ProbeEngine(CHILLED)
    engine.add(
        excursion(range(0, 10), 3.0)
        + excursion(range(10, 20), 5.0)
        + excursion(range(20, 21), 9.0)
        + excursion(range(21, 30), 12.0)
    )
    (closed,) = engine.close_at(T0 + 30 * MINUTE_MS)
    assert isinstance(closed, BreachClosed)
    b = closed.breach
    assert (b.start, b.end, b.severity) == (T0 + 10 * MINUTE_MS, T0 + 30 * MINUTE_MS, "critical")
    # 1 K for minutes 10..19, 5 K for minute 20, 8 K for minutes 21..28 (to the last reading)
    assert (b.peak, b.degree_minutes) == (12.0, 10 + 5 + 8 * 8)
    assert engine.breaches() == [b]


def figures(changes: list[Event]) -> list[tuple[str, int, float | None, float, int | None]]:
    return [
        (type(e).__name__, e.at, e.breach.peak, e.breach.degree_minutes, e.breach.end)
        for e in changes
    ]


def test_an_open_breach_is_reported_with_its_figures_as_of_the_newest_reading() -> None:
    """Chilled (0..4 C, 15 min delay): 6 C from minute 0 opens the excursion at minute 15 with
    15 min x 2 C = 30 C*min; the batch's last reading (minute 19) brings it to 38. Each later
    batch updates it once; a late reading revises it; the first reading back in range closes
    it with every reading's figures."""
    engine = ProbeEngine(CHILLED)
    m = MINUTE_MS
    assert figures(engine.add(excursion(range(0, 20), 6.0))) == [
        ("BreachOpened", T0 + 15 * m, 6.0, 30.0, None),
        ("BreachUpdated", T0 + 19 * m, 6.0, 38.0, None),
    ]
    # 38 + 1 min x 2 C (minute 19 holds to 20) + 4 min x 3 C = 52
    assert figures(engine.add(excursion(range(20, 25), 7.0))) == [
        ("BreachUpdated", T0 + 24 * m, 7.0, 52.0, None),
    ]
    assert engine.add(excursion(range(20, 25), 7.0)) == []  # a repeat changes nothing
    # 7.5 C at minute 22.5, late: 52 - 0.5 x 3 + 0.5 x 3.5 = 52.25, peak 7.5
    late = engine.add([Sample(T0 + 22 * m + m // 2, 1000, 7.5)])
    assert figures(late) == [("BreachRevised", T0 + 24 * m, 7.5, 52.25, None)]
    # back in range at minute 25: 52.25 + 1 min x 3 C = 55.25
    assert figures(engine.add(excursion(range(25, 26), 3.0))) == [
        ("BreachClosed", T0 + 25 * m, 7.5, 55.25, T0 + 25 * m),
    ]
    (closed,) = engine.breaches()
    assert (closed.peak, closed.degree_minutes) == (7.5, 55.25)


def door(minutes: range, is_open: bool) -> list[Sample]:
    return [Sample(T0 + m * MINUTE_MS, m, None, is_open) for m in minutes]


def door_engine(known: list[BreachRecord] | None = None) -> ProbeEngine:
    rules = door_rules(load_profiles()["chilled"])  # the door may stay open 10 min
    assert rules is not None
    return ProbeEngine(rules, known=known or [])


def lengths(changes: list[Event]) -> list[tuple[str, int, int, int | None, int | None]]:
    return [
        (type(e).__name__, e.at, e.breach.start, e.breach.through, e.breach.end) for e in changes
    ]


def test_a_door_left_open_is_reported_lasting_longer_each_batch() -> None:
    """Chilled: the door may stay open 10 min. Open from minute 0, reported opened at minute
    10 and running to minute 12 (the batch's last reading); each later batch runs it to its
    newest reading once; a repeat or a late reading inside it changes nothing; shut at
    minute 41, it closes there."""
    engine = door_engine()
    m = MINUTE_MS
    assert lengths(engine.add(door(range(0, 13), True))) == [
        ("BreachOpened", T0 + 10 * m, T0, T0 + 10 * m, None),
        ("BreachUpdated", T0 + 12 * m, T0, T0 + 12 * m, None),
    ]
    assert lengths(engine.add(door(range(13, 41), True))) == [
        ("BreachUpdated", T0 + 40 * m, T0, T0 + 40 * m, None),
    ]
    assert engine.add(door(range(30, 41), True)) == []  # a repeat
    assert engine.add([Sample(T0 + 20 * m + m // 2, 1000, None, True)]) == []  # late, open
    (open_door,) = engine.breaches()
    assert (open_door.rule, open_door.start, open_door.through) == ("door_open", T0, T0 + 40 * m)
    assert lengths(engine.add(door(range(41, 42), False))) == [
        ("BreachClosed", T0 + 41 * m, T0, None, T0 + 41 * m),
    ]


def test_an_open_door_known_as_it_stands_is_not_reported_again_after_a_restart() -> None:
    m = MINUTE_MS
    first = door_engine()
    first.add(door(range(0, 21), True))
    restarted = door_engine(known=first.breaches())  # as the store holds it
    assert restarted.add(door(range(0, 21), True)) == []
    assert lengths(restarted.add(door(range(21, 25), True))) == [
        ("BreachUpdated", T0 + 24 * m, T0, T0 + 24 * m, None),
    ]

"""Each rule on hand-made series with hand-computed expectations (minutes from T0)."""

from __future__ import annotations

import pytest

from alerts.rules import (
    MINUTE_MS,
    BreachClosed,
    BreachEscalated,
    BreachOpened,
    ConditionRun,
    Cumulative,
    Events,
    Excursion,
    JumpingProbe,
    Mkt,
    Rule,
    Sample,
    StuckProbe,
    door_rules,
    mkt_celsius,
    no_temperature,
    rules_for,
)
from coldtrace.profiles import load_profiles

T0 = 1_784_007_600_000  # 2026-07-14T05:40:00Z


def at(minute: float) -> int:
    return T0 + round(minute * MINUTE_MS)


def run(rule: Rule, series: list[tuple[float, float | None]]) -> list[Events]:
    state = rule.initial()
    out = []
    for i, (minute, value) in enumerate(series):
        state, events = rule.update(state, Sample(at(minute), i, value))
        out.append(events)
    return out


def flat(events: list[Events]) -> list[tuple[str, int, int | None, str]]:
    return [
        (type(e).__name__, e.breach.start, e.breach.end, e.breach.severity)
        for ev in events
        for e in ev
    ]


HIGH_4 = Excursion("excursion_high", 4.0, 1.0, 0.2, 15 * MINUTE_MS, 4.0, 60 * MINUTE_MS)


def test_mkt_published_example() -> None:
    # 5 C for 6 h, 7 C for 10 h, 11 C for 1.5 h, 6 C for 30 h -> 6.31 C
    assert mkt_celsius([(5, 6), (7, 10), (11, 1.5), (6, 30)]) == pytest.approx(6.31, abs=0.005)


def test_mkt_of_a_constant_is_that_constant() -> None:
    assert mkt_celsius([(4.0, 1), (4.0, 3)]) == pytest.approx(4.0)


def test_excursion_shorter_than_the_delay_is_no_breach() -> None:
    series = [(0, 3.0), (1, 5.0), (10, 6.0), (14, 5.0), (15, 3.0)]
    assert flat(run(HIGH_4, series)) == []


def test_excursion_starts_at_first_out_reading_and_ends_at_first_back() -> None:
    series = [(0, 3.0), (1, 5.0), (6, 6.0), (16, 5.0), (20, 3.9), (21, 3.0)]
    events = run(HIGH_4, series)
    # opened at minute 16 (15 min after minute 1), dated from minute 1
    assert events[3] == (BreachOpened(events[3][0].breach, at(16)),)
    assert flat(events) == [
        ("BreachOpened", at(1), None, "major"),
        ("BreachClosed", at(1), at(20), "major"),
    ]
    closed = events[5][0].breach
    # excess held: 1 C x 5 min + 2 C x 10 min + 1 C x 4 min = 29 degree-minutes
    assert closed.degree_minutes == pytest.approx(29.0)
    assert closed.peak == 6.0


def test_value_hovering_on_the_limit_keeps_one_breach() -> None:
    # 3.9 and 3.85 are back in range but within the 0.2 C hysteresis: no close, no new breach
    series = [(0, 4.5), (10, 3.9), (12, 4.4), (20, 3.85), (22, 4.3), (30, 3.7)]
    assert flat(run(HIGH_4, series)) == [
        ("BreachOpened", at(0), None, "major"),
        ("BreachClosed", at(0), at(30), "major"),
    ]


def test_end_is_first_reading_back_even_when_hysteresis_is_passed_later() -> None:
    series = [(0, 5.0), (16, 5.0), (17, 3.9), (18, 3.5)]
    assert flat(run(HIGH_4, series))[-1] == ("BreachClosed", at(0), at(17), "major")


def test_escalates_past_the_critical_limit_and_after_the_critical_duration() -> None:
    past_limit = [(0, 5.0), (15, 5.0), (20, 8.5), (25, 3.0)]
    assert flat(run(HIGH_4, past_limit)) == [
        ("BreachOpened", at(0), None, "major"),
        ("BreachEscalated", at(0), None, "critical"),
        ("BreachClosed", at(0), at(25), "critical"),
    ]
    too_long = [(0, 5.0), (15, 5.0), (59, 5.0), (60, 5.0)]
    events = run(HIGH_4, too_long)
    assert events[3] and isinstance(events[3][0], BreachEscalated)


def test_past_the_critical_limit_opens_at_once() -> None:
    assert flat(run(HIGH_4, [(0, 3.0), (1, 9.0)])) == [("BreachOpened", at(1), None, "critical")]


def test_lower_limit() -> None:
    low = Excursion("excursion_low", 2.0, -1.0, 0.2, 10 * MINUTE_MS, 2.0, None)
    events = run(low, [(0, 1.0), (10, 0.5), (12, 2.5)])
    assert flat(events) == [
        ("BreachOpened", at(0), None, "major"),
        ("BreachClosed", at(0), at(12), "major"),
    ]
    # 1 C below x 10 min + 1.5 C below x 2 min = 13
    assert events[2][0].breach.degree_minutes == pytest.approx(13.0)
    assert events[2][0].breach.peak == 0.5


def test_cumulative_budget_does_not_reset_when_back_in_range() -> None:
    rule = Cumulative("cumulative", 8.0, None, 30 * MINUTE_MS, 24 * 60 * MINUTE_MS)
    # 20 min above 8, back in range, then 15 min above 8: 35 min > 30 found at minute 115
    series = [(0, 9.0), (20, 5.0), (100, 9.0), (110, 9.0), (115, 9.0), (200, 5.0)]
    assert flat(run(rule, series)) == [("BreachOpened", at(115), None, "major")]


def test_cumulative_closes_when_time_leaves_the_window() -> None:
    rule = Cumulative("cumulative", 8.0, None, 30 * MINUTE_MS, 60 * MINUTE_MS)
    series = [(0, 9.0), (40, 5.0), (70, 5.0), (95, 5.0)]
    # 40 min out at minute 40 (open); at 70 the window (10..70) holds 30 min: not over budget
    assert flat(run(rule, series)) == [
        ("BreachOpened", at(40), None, "major"),
        ("BreachClosed", at(40), at(70), "major"),
    ]


def test_mkt_rule_alerts_above_its_limit_over_the_window() -> None:
    rule = Mkt("mkt", 8.0, 24 * 60 * MINUTE_MS)
    # 10 C for 2.5 h, then 5 C: MKT is 10 once one bucket (1 h) is covered, and drops to 8
    # once 10 C for 2.5 h and 5 C for x h average to 8 kinetically.
    series = [(m, 10.0) for m in range(0, 121, 30)] + [(m, 5.0) for m in range(150, 600, 30)]
    events = flat(run(rule, series))
    assert events[0] == ("BreachOpened", at(60), None, "major")
    closed_at = events[1][2]
    assert events[1][0] == "BreachClosed" and closed_at is not None
    minutes = (closed_at - T0) / MINUTE_MS
    assert mkt_celsius([(10.0, 150), (5.0, minutes - 150)]) <= 8.0
    assert mkt_celsius([(10.0, 150), (5.0, minutes - 180)]) > 8.0


def test_probe_fault_after_its_delay_and_closed_by_a_real_value() -> None:
    rule = ConditionRun("probe_fault", 10 * MINUTE_MS, no_temperature)
    series: list[tuple[float, float | None]] = [(0, 3.0), (1, None), (5, None), (11, None)]
    series.append((12, 3.0))
    assert flat(run(rule, series)) == [
        ("BreachOpened", at(1), None, "major"),
        ("BreachClosed", at(1), at(12), "major"),
    ]
    assert flat(run(rule, [(0, None), (5, None), (6, 2.0)])) == []


def test_stuck_probe() -> None:
    rule = StuckProbe("probe_stuck", 60 * MINUTE_MS)
    series = [(0, 3.1), (10, 3.0), (40, 3.0), (70, 3.0), (80, 3.2)]
    assert flat(run(rule, series)) == [
        ("BreachOpened", at(10), None, "major"),
        ("BreachClosed", at(10), at(80), "major"),
    ]


def test_every_shipped_profile_builds_its_rules() -> None:
    profiles = load_profiles()
    expected = {"chilled", "fresh-fish", "cook-chill", "deep-frozen", "frozen", "hot-meals"}
    assert expected | {"pharma", "crt"} == set(profiles)
    names = {pid: [r.name for r in rules_for(p)] for pid, p in profiles.items()}
    assert names["deep-frozen"] == ["excursion_high", "probe_fault", "probe_stuck", "probe_jump"]
    assert names["hot-meals"][0] == "excursion_low"
    assert "mkt" in names["pharma"] and "mkt" in names["crt"]


def test_deep_frozen_tolerates_a_brief_rise_but_not_above_minus_15() -> None:
    (high, *_) = rules_for(load_profiles()["deep-frozen"])
    brief = [(0, -19.0), (5, -16.0), (20, -17.0), (25, -18.5)]
    assert flat(run(high, brief)) == []
    assert flat(run(high, [(0, -19.0), (5, -14.5)])) == [("BreachOpened", at(5), None, "critical")]


def test_closed_event_type() -> None:
    events = run(HIGH_4, [(0, 5.0), (15, 5.0), (16, 3.0)])
    assert isinstance(events[2][0], BreachClosed)


def run_door(rule: Rule, series: list[tuple[float, float | None, bool | None]]) -> list[Events]:
    state = rule.initial()
    out = []
    for i, (minute, value, door) in enumerate(series):
        state, events = rule.update(state, Sample(at(minute), i, value, door))
        out.append(events)
    return out


def test_door_open_too_long() -> None:
    (rule,) = door_rules(load_profiles()["chilled"]).rules  # 10 min
    series: list[tuple[float, float | None, bool | None]] = [
        (0, None, False),
        (1, None, True),
        (5, None, None),  # a reading without the contact says nothing
        (11, None, True),
        (12, None, False),
    ]
    assert flat(run_door(rule, series)) == [
        ("BreachOpened", at(1), None, "major"),
        ("BreachClosed", at(1), at(12), "major"),
    ]
    assert flat(run_door(rule, [(0, None, True), (9, None, True), (10, None, False)])) == []


def lasting(
    rule: Rule, series: list[tuple[float, float | None, bool | None]]
) -> list[tuple[list[str], int | None, int | None]]:
    """After each sample: its events, the through of the record they carry (the last one),
    and the through of the open breach as it stands (``current``; None: none open)."""
    state = rule.initial()
    out = []
    for i, (minute, value, door) in enumerate(series):
        state, events = rule.update(state, Sample(at(minute), i, value, door))
        now = rule.current(state)
        told = events[-1].breach.through if events else None
        out.append(([type(e).__name__ for e in events], told, None if now is None else now.through))
    return out


def test_an_open_door_breach_runs_up_to_the_newest_reading_with_the_door_open() -> None:
    """Chilled: the door may stay open 10 min. Open from minute 0, the breach opens at minute
    10 running to there; a reading without the contact (minute 15) says nothing; it has run
    to minute 22 when a reading says open again, and closes at minute 30 (door shut)."""
    (rule,) = door_rules(load_profiles()["chilled"]).rules
    series: list[tuple[float, float | None, bool | None]] = [
        (0, None, True),
        (4, None, True),
        (10, None, True),
        (15, None, None),
        (22, None, True),
        (30, None, False),
    ]
    assert lasting(rule, series) == [
        ([], None, None),
        ([], None, None),
        (["BreachOpened"], at(10), at(10)),
        ([], None, at(10)),
        ([], None, at(22)),
        (["BreachClosed"], None, None),
    ]
    closed = run_door(rule, series)[-1][0].breach
    assert (closed.start, closed.end, closed.through) == (at(0), at(30), None)


def test_a_probe_fault_runs_up_to_its_newest_reading_without_a_value() -> None:
    rule = ConditionRun("probe_fault", 10 * MINUTE_MS, no_temperature)
    series: list[tuple[float, float | None, bool | None]] = [
        (0, None, None),
        (10, None, None),
        (14, None, None),
        (20, 3.0, None),
    ]
    assert lasting(rule, series) == [
        ([], None, None),
        (["BreachOpened"], at(10), at(10)),
        ([], None, at(14)),
        (["BreachClosed"], None, None),
    ]


def test_a_stuck_probe_runs_up_to_its_newest_repeat_of_the_value() -> None:
    """Stuck from minute 0 at 3.0 C (60 min): open at minute 60; a fault (minute 75) says
    nothing of the value, the repeat at minute 90 runs it there; 3.1 C closes it."""
    rule = StuckProbe("probe_stuck", 60 * MINUTE_MS)
    series: list[tuple[float, float | None, bool | None]] = [
        (0, 3.0, None),
        (60, 3.0, None),
        (75, None, None),
        (90, 3.0, None),
        (100, 3.1, None),
    ]
    assert lasting(rule, series) == [
        ([], None, None),
        (["BreachOpened"], at(60), at(60)),
        ([], None, at(60)),
        ([], None, at(90)),
        (["BreachClosed"], None, None),
    ]


def test_an_excursion_back_within_its_hysteresis_runs_up_to_its_first_reading_back() -> None:
    """Limit 4 C, hysteresis 0.2: back at 4.0 and 3.9 C (within it) it would end at minute
    20 if it closed, so it runs to there; out again at minute 30, it runs to minute 30."""
    series: list[tuple[float, float | None, bool | None]] = [
        (0, 5.0, None),
        (15, 5.0, None),
        (20, 4.0, None),
        (25, 3.9, None),
        (30, 5.0, None),
        (35, 3.0, None),
    ]
    assert lasting(HIGH_4, series) == [
        ([], None, None),
        (["BreachOpened"], at(15), at(15)),
        ([], None, at(20)),
        ([], None, at(20)),
        ([], None, at(30)),
        (["BreachClosed"], None, None),
    ]


FROZEN_LOADING = Excursion(
    "excursion_high", -18.0, 1.0, 0.5, 30 * MINUTE_MS, 3.0, None, 10 * MINUTE_MS
)


def test_excursion_while_loading_is_recorded_suppressed() -> None:
    # door open minutes 0..30, closed at 31; out of range 5..40 (within the 10 min grace)
    series = [(m, -16.0 if 5 <= m <= 40 else -19.0, m <= 30) for m in range(0, 46)]
    events = [e for ev in run_door(FROZEN_LOADING, series) for e in ev]
    assert [(type(e).__name__, e.breach.suppressed) for e in events] == [
        ("BreachOpened", True),
        ("BreachClosed", True),
    ]
    assert (events[1].breach.start, events[1].breach.end) == (at(5), at(41))


def test_loading_excursion_alarms_once_out_past_the_grace() -> None:
    series = [(m, -16.0 if 5 <= m <= 60 else -19.0, m <= 30) for m in range(0, 62)]
    events = [e for ev in run_door(FROZEN_LOADING, series) for e in ev]
    assert [(type(e).__name__, e.breach.suppressed, e.at) for e in events] == [
        ("BreachOpened", True, at(35)),
        ("BreachOpened", False, at(41)),  # first out-of-range reading 11 min after closing
        ("BreachClosed", False, at(61)),
    ]
    assert {e.breach.start for e in events} == {at(5)}


def test_critical_while_loading_alarms_at_once() -> None:
    series = [(0, -19.0, True), (1, -14.0, True)]
    assert flat(run_door(FROZEN_LOADING, series)) == [("BreachOpened", at(1), None, "critical")]
    events = run_door(FROZEN_LOADING, series)
    assert events[1][0].breach.suppressed is False


def test_configured_window_suppresses_without_a_door() -> None:
    rule = HIGH_4  # no loading grace: only configured windows suppress
    series = [Sample(at(m), m, 6.0 if 5 <= m < 30 else 3.0, None, 0 <= m < 40) for m in range(45)]
    state, events = rule.initial(), []
    for x in series:
        state, ev = rule.update(state, x)
        events.extend(ev)
    assert [(type(e).__name__, e.breach.suppressed) for e in events] == [
        ("BreachOpened", True),
        ("BreachClosed", True),
    ]


def test_impossible_jump_from_a_spike_to_the_first_plausible_reading() -> None:
    rule = JumpingProbe("probe_jump", 5.0)
    # a spike (+12 C in 1 min), the fall back (also a jump), then calm; then a slow rise of
    # 9 C over 2 minutes is plausible (4.5 C/min)
    series = [(0, 3.0), (1, 15.0), (2, 3.0), (3, 3.1), (5, 12.1)]
    events = run(rule, series)
    assert flat(events) == [
        ("BreachOpened", at(1), None, "major"),
        ("BreachClosed", at(1), at(3), "major"),
    ]
    assert events[3][0].breach.peak == 15.0
    # readings seconds apart are judged over a minute: 4 C in 10 s is not a jump
    assert flat(run(rule, [(0, 3.0), (1 / 6, 7.0)])) == []


# -- suppression windows, rule by rule: recorded as suppressed, alarming only outside -----


def run_samples(rule: Rule, samples: list[Sample]) -> list[tuple[str, int, int | None, bool]]:
    state, out = rule.initial(), []
    for x in samples:
        state, events = rule.update(state, x)
        out.extend(
            (type(e).__name__, e.breach.start, e.breach.end, e.breach.suppressed) for e in events
        )
    return out


def test_issue_example_every_chilled_rule_records_a_defrost_as_suppressed() -> None:
    # chilled (0..4 C, cumulative 30 min over 4 C in 24 h), a configured window 16:00-17:00
    # (minutes 0..60 here), 5.5 C from minute 5 to 45, read every minute
    samples = [Sample(at(m), m, 5.5 if 5 <= m <= 45 else 3.0, None, 0 <= m < 60) for m in range(90)]
    found = {
        rule.name: run_samples(rule, samples) for rule in rules_for(load_profiles()["chilled"])
    }
    assert found["excursion_high"] == [
        ("BreachOpened", at(5), None, True),
        ("BreachClosed", at(5), at(46), True),
    ]
    # 31 min out by minute 36 (the value at 5 holds until 6, ...): over the 30 min budget
    assert found["cumulative"] == [("BreachOpened", at(36), None, True)]
    assert all(
        events == []
        for name, events in found.items()
        if name not in ("excursion_high", "cumulative")
    )


def test_excursion_low_in_a_configured_window_is_suppressed() -> None:
    rule = Excursion("excursion_low", 0.0, -1.0, 0.2, 15 * MINUTE_MS, None, None)
    samples = [Sample(at(m), m, -1.0 if 5 <= m < 30 else 2.0, None, m < 40) for m in range(45)]
    assert run_samples(rule, samples) == [
        ("BreachOpened", at(5), None, True),
        ("BreachClosed", at(5), at(30), True),
    ]


CUMULATIVE_8 = Cumulative("cumulative", 8.0, None, 30 * MINUTE_MS, 24 * 60 * MINUTE_MS)


def test_cumulative_alarms_once_time_outside_the_window_alone_exceeds_the_budget() -> None:
    # 9 C from minute 0 to 80; minutes 0..40 in a configured window: 40 min out by minute 40
    # (recorded, suppressed); the time outside the window passes 30 min at minute 71
    samples = [Sample(at(m), m, 9.0 if m < 80 else 5.0, None, m < 40) for m in range(0, 90)]
    assert run_samples(CUMULATIVE_8, samples) == [
        ("BreachOpened", at(31), None, True),
        ("BreachOpened", at(31), None, False),  # the same breach, now alarming, at minute 71
    ]
    state = CUMULATIVE_8.initial()
    for x in samples[:72]:
        state, _ = CUMULATIVE_8.update(state, x)
    assert (state.total, state.loud) == (71 * MINUTE_MS, 31 * MINUTE_MS)


def test_cumulative_while_loading_is_suppressed_and_alarms_past_the_grace() -> None:
    rule = Cumulative(
        "cumulative", -18.0, None, 30 * MINUTE_MS, 24 * 60 * MINUTE_MS, 10 * MINUTE_MS
    )
    # door open minutes 0..30, -16 C minutes 0..40: within the grace (closed at 31, grace 10)
    loading = [(m, -16.0 if m <= 40 else -19.0, m <= 30) for m in range(0, 50)]
    events = [e for ev in run_door(rule, loading) for e in ev]
    assert [
        (type(e).__name__, e.breach.start, e.breach.end, e.breach.suppressed) for e in events
    ] == [
        ("BreachOpened", at(31), None, True),
    ]
    # the same, still warm an hour after the door closed: 30 min past the grace by minute 71
    late = [(m, -16.0, m <= 30) for m in range(0, 80)]
    events = [e for ev in run_door(rule, late) for e in ev]
    assert [(type(e).__name__, e.breach.start, e.breach.suppressed, e.at) for e in events] == [
        ("BreachOpened", at(31), True, at(31)),
        ("BreachOpened", at(31), False, at(72)),
    ]


MKT_8 = Mkt("mkt", 8.0, 24 * 60 * MINUTE_MS, 10 * MINUTE_MS)


def test_mkt_of_a_configured_window_is_recorded_suppressed() -> None:
    # 10 C for 2.5 h in a configured window, then 5 C outside it: the MKT is over 8 C from
    # the first covered bucket (minute 60) until it falls back, and never counts as an alarm
    samples = [
        Sample(at(m), m, 10.0 if m <= 150 else 5.0, None, m <= 150) for m in range(0, 601, 30)
    ]
    found = run_samples(MKT_8, samples)
    assert [(name, start, suppressed) for name, start, _, suppressed in found] == [
        ("BreachOpened", at(60), True),
        ("BreachClosed", at(60), True),
    ]
    # the same temperatures without the window alarm
    loud = [Sample(x.ts, x.seq, x.celsius) for x in samples]
    assert [(n, s) for n, _, _, s in run_samples(MKT_8, loud)] == [
        ("BreachOpened", False),
        ("BreachClosed", False),
    ]


def test_mkt_while_loading_is_suppressed_until_the_time_past_the_grace_is_warm() -> None:
    # door open minutes 0..150 at 10 C: suppressed; still 10 C after the 10 min grace, the
    # time outside loading covers a bucket (60 min) at minute 221 and its MKT is 10 C
    series = [(m, 10.0, m <= 150) for m in range(0, 241)]
    events = [e for ev in run_door(MKT_8, series) for e in ev]
    assert [(type(e).__name__, e.breach.start, e.breach.suppressed, e.at) for e in events] == [
        ("BreachOpened", at(60), True, at(60)),
        ("BreachOpened", at(60), False, at(221)),
    ]

"""The evaluation behind certificates and `coldtrace analyze` (alerts/evaluation.py), on
readings whose figures are computed by hand below. Profile `chilled`: 0..+4 C, a breach after
15 min out of range, a probe may give no temperature for 10 min (fault_delay_min)."""

from __future__ import annotations

import math

import pytest

from alerts.evaluation import (
    Disagreement,
    Gap,
    LiveBreach,
    Position,
    evaluate,
    locate,
)
from alerts.rules import Sample
from coldtrace.profiles import load_profiles

MIN = 60_000
T0 = 1_767_600_000_000  # 2026-01-05T08:00:00Z
CHILLED = load_profiles()["chilled"]
A, B, C = ("van", "a"), ("van", "b"), ("van", "c")


def minutes(values: dict[int, float | None]) -> list[Sample]:
    """One sample at T0 + each minute, seq = the minute."""
    return [Sample(T0 + m * MIN, m, v) for m, v in values.items()]


def probe_a() -> list[Sample]:
    """3.0 C for minutes 0..29, 5.0 C for 30..49 (20 min above +4 C), 3.0 C for 50..60."""
    return minutes({m: 5.0 if 30 <= m < 50 else 3.0 for m in range(61)})


def probe_b() -> list[Sample]:
    """3.0 C for minutes 0..20 and 45..60: nothing in between (25 min)."""
    return minutes({m: 3.0 for m in [*range(21), *range(45, 61)]})


def test_figures_are_time_weighted_with_mkt() -> None:
    e = evaluate({A: probe_a()}, CHILLED, {}, T0, T0 + 60 * MIN)
    [a] = e.probes
    assert (a.readings, a.faults, a.first, a.last) == (61, 0, T0, T0 + 60 * MIN)
    assert (a.min_c, a.max_c) == (3.0, 5.0)
    # each reading holds one minute (the last one, at the window's end, none):
    # (30 min x 3.0 + 20 x 5.0 + 10 x 3.0) / 60 min = 220 / 60; per reading it would be 3.66
    assert a.mean_c == 3.67
    assert (a.in_range_min, a.out_of_range_min, a.in_range_pct) == (40.0, 20.0, 66.67)
    # MKT = (dH/R) / -ln((40 e^(-dH/R/276.15) + 20 e^(-dH/R/278.15)) / 60) - 273.15
    h_over_r = 83_144.0 / 8.314462618
    mean = (40 * math.exp(-h_over_r / 276.15) + 20 * math.exp(-h_over_r / 278.15)) / 60
    assert a.mkt_c == round(h_over_r / -math.log(mean) - 273.15, 2) == 3.72
    [b] = e.breaches
    r = b.record
    assert (b.probe, r.rule, r.severity, r.suppressed) == ("a", "excursion_high", "major", False)
    # from the first reading above +4 C to the first one back (1.0 C inside: past hysteresis)
    assert (r.start, r.end, b.duration_min) == (T0 + 30 * MIN, T0 + 50 * MIN, 20.0)
    assert (r.peak, r.degree_minutes, b.mkt_c) == (5.0, 20.0, 5.0)  # 20 readings x 1.0 C x 1 min
    assert (e.verdict, e.gaps, e.silent) == ("not_compliant", [], [])
    assert e.reasons == ["excursion_high on van/a from 2026-01-05T08:30:00Z"]
    assert (e.readings, e.mkt_c, e.out_of_range_min) == (61, 3.72, 20.0)


def test_a_gap_longer_than_the_profile_allows() -> None:
    e = evaluate({B: probe_b()}, CHILLED, {}, T0, T0 + 60 * MIN)
    assert e.gaps == [Gap("van", "b", T0 + 20 * MIN, T0 + 45 * MIN)]
    assert e.gaps[0].minutes == 25.0
    [b] = e.probes
    # covered: minutes 0..20 and 45..60, 35 min all in range; the gap counts for nothing
    assert (b.in_range_min, b.out_of_range_min, b.in_range_pct, b.mean_c) == (
        35.0,
        0.0,
        100.0,
        3.0,
    )
    assert (e.verdict, e.breaches) == ("incomplete", [])
    assert e.reasons == ["no temperature from van/b 2026-01-05T08:20:00Z..2026-01-05T08:45:00Z"]
    # 10 minutes without a reading is what the profile allows: no gap
    ten = minutes({m: 3.0 for m in [*range(21), *range(30, 61)]})
    assert evaluate({B: ten}, CHILLED, {}, T0, T0 + 60 * MIN).verdict == "compliant"
    # the time before a probe's first reading is a gap too once longer than 10 minutes
    late = minutes({m: 3.0 for m in range(11, 61)})
    assert evaluate({B: late}, CHILLED, {}, T0, T0 + 60 * MIN).gaps == [
        Gap("van", "b", T0, T0 + 11 * MIN)
    ]


def test_impossible_values_are_faults_and_a_silent_probe_is_incomplete() -> None:
    # 85.0 (DS18B20 power-on) for minutes 20..31: no temperature for 12 min
    c = [Sample(T0 + m * MIN, m, 85.0 if 20 <= m < 32 else 3.0) for m in range(61)]
    e = evaluate({C: c, A: [], B: probe_b()}, CHILLED, {}, T0, T0 + 60 * MIN)
    assert [(p.probe, p.readings, p.faults) for p in e.probes] == [
        ("c", 49, 12),
        ("a", 0, 0),
        ("b", 37, 0),
    ]
    assert [(b.probe, b.record.rule, b.record.start, b.record.end) for b in e.breaches] == [
        ("c", "probe_fault", T0 + 20 * MIN, T0 + 32 * MIN)
    ]
    assert e.silent == [A]
    assert e.gaps == [
        Gap("van", "c", T0 + 19 * MIN, T0 + 32 * MIN),
        Gap("van", "b", T0 + 20 * MIN, T0 + 45 * MIN),
    ]
    assert e.verdict == "incomplete"
    assert "van/a never reported" in e.reasons


def test_suppression_windows_and_where_a_breach_began() -> None:
    fixes = [Position(T0, 48.75, 2.35), Position(T0 + 25 * MIN, 48.8, 2.4)]
    window = {"van": [(T0 + 25 * MIN, T0 + 55 * MIN)]}
    e = locate(evaluate({A: probe_a()}, CHILLED, window, T0, T0 + 60 * MIN), {"van": fixes})
    [b] = e.breaches
    assert b.record.suppressed and b.where == fixes[1]
    assert e.verdict == "compliant"


@pytest.mark.parametrize("offset_s", [0, 60, -60])
def test_live_breaches_are_compared_within_one_sampling_interval(offset_s: int) -> None:
    live = [
        LiveBreach("van", "a", "excursion_high", T0 + 30 * MIN + offset_s * 1000, id=7),
        LiveBreach("van", "", "device_silent", T0 + 5 * MIN, id=8),  # device-level: as it is
    ]
    e = evaluate({A: probe_a()}, CHILLED, {}, T0, T0 + 60 * MIN, live=live)
    assert (e.disagreements, e.matched) == ([], {("van", "a", "excursion_high", T0 + 30 * MIN): 7})
    assert e.verdict == "not_compliant"


def test_a_disagreement_is_never_compliant() -> None:
    late = [LiveBreach("van", "a", "excursion_high", T0 + 31 * MIN + 1, id=7)]
    e = evaluate({A: probe_a()}, CHILLED, {}, T0, T0 + 60 * MIN, live=late)
    assert e.disagreements == [
        Disagreement("evaluation", "van", "a", "excursion_high", T0 + 30 * MIN),
        Disagreement("live", "van", "a", "excursion_high", T0 + 31 * MIN + 1, 7),
    ]
    assert e.verdict == "not_compliant"  # the readings show the excursion either way
    phantom = [LiveBreach("van", "b", "excursion_high", T0 + 5 * MIN, id=9)]
    quiet = minutes({m: 3.0 + (m % 2) / 10 for m in range(61)})
    e = evaluate({B: quiet}, CHILLED, {}, T0, T0 + 60 * MIN, live=phantom)
    assert e.verdict == "incomplete"
    assert e.reasons == [
        "excursion_high on van/b from 2026-01-05T08:05:00Z found by the live rules stage only"
    ]


def test_a_door_left_open_counts_where_the_profile_limits_it() -> None:
    door = [LiveBreach("van", "", "door_open", T0 + 5 * MIN, id=3)]
    quiet = minutes({m: 3.0 + (m % 2) / 10 for m in range(61)})
    assert evaluate({B: quiet}, CHILLED, {}, T0, T0 + 60 * MIN, live=door).verdict == (
        "not_compliant"
    )
    crt = load_profiles()["crt"]  # no door limit: the door is no rule of it
    warm = minutes({m: 20.0 + (m % 2) / 10 for m in range(61)})
    assert evaluate({B: warm}, crt, {}, T0, T0 + 60 * MIN, live=door).verdict == "compliant"


def test_a_live_breach_across_a_data_gap_pairs_with_both_pieces() -> None:
    # 5.0 C from minute 30 to 49, nothing from 50 to 61 (13 min: a data gap), 5.0 C again
    # from 62 to 80, 3.0 C after: the live stage saw one breach from 30; the evaluation ends
    # it at 49 (where the record stops) and finds it again from 62 (the first reading after)
    values = {m: 3.0 for m in range(30)}
    values |= {m: 5.0 for m in [*range(30, 50), *range(62, 81)]}
    values |= {m: 3.0 for m in range(81, 91)}
    live = [LiveBreach("van", "a", "excursion_high", T0 + 30 * MIN, id=7)]
    e = evaluate({A: minutes(values)}, CHILLED, {}, T0, T0 + 90 * MIN, live=live)
    pieces = [(b.record.rule, b.record.start, b.record.end) for b in e.breaches]
    assert pieces == [
        ("excursion_high", T0 + 30 * MIN, T0 + 49 * MIN),
        ("excursion_high", T0 + 62 * MIN, T0 + 81 * MIN),
    ]
    assert e.gaps == [Gap("van", "a", T0 + 49 * MIN, T0 + 62 * MIN)]
    assert e.disagreements == []
    assert e.matched == {
        ("van", "a", "excursion_high", T0 + 30 * MIN): 7,
        ("van", "a", "excursion_high", T0 + 62 * MIN): 7,
    }
    # a breach after a gap that does not begin at the first reading after it is a new one
    values |= {62: 3.0, 63: 3.0}
    e = evaluate({A: minutes(values)}, CHILLED, {}, T0, T0 + 90 * MIN, live=live)
    assert [d.start for d in e.disagreements] == [T0 + 64 * MIN]

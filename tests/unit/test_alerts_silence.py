"""device_silent with an injected clock (minutes from T0; gap 15 min)."""

from __future__ import annotations

from alerts.rules import MINUTE_MS, BreachClosed, BreachOpened
from alerts.silence import RULE, SilenceState, heard, tick

T0 = 1_784_007_600_000
GAP = 15 * MINUTE_MS


def at(minute: int) -> int:
    return T0 + minute * MINUTE_MS


def test_silent_after_the_gap_and_closed_by_the_next_reading() -> None:
    state, events = heard(SilenceState(), at(0))
    assert events == ()
    state, events = tick(state, at(15), GAP)  # exactly the gap: not yet
    assert events == ()
    state, events = tick(state, at(16), GAP)
    assert [type(e) for e in events] == [BreachOpened]
    opened = events[0].breach
    assert (opened.rule, opened.start, opened.end, events[0].at) == (RULE, at(0), None, at(16))
    state, events = tick(state, at(30), GAP)  # still silent: reported once
    assert events == ()
    # the device comes back with a backlog whose newest reading is minute 29
    state, events = heard(state, at(29))
    assert [type(e) for e in events] == [BreachClosed]
    assert (events[0].breach.start, events[0].breach.end) == (at(0), at(29))
    assert tick(state, at(40), GAP)[1] == ()


def test_a_device_never_heard_of_is_not_silent() -> None:
    assert tick(SilenceState(), at(1000), GAP) == (SilenceState(), ())


def test_an_older_reading_does_not_move_last_heard_back() -> None:
    state, _ = heard(SilenceState(), at(10))
    state, _ = heard(state, at(2))
    assert state.last_ts == at(10)

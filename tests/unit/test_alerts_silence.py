"""device_silent with an injected clock (minutes from T0; gap 15 min), for a device on a
delivery in transit since minute 0 unless a test says otherwise."""

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
    state, events = tick(state, at(15), GAP, at(0))  # exactly the gap: not yet
    assert events == ()
    state, events = tick(state, at(16), GAP, at(0))
    assert [type(e) for e in events] == [BreachOpened]
    opened = events[0].breach
    assert (opened.rule, opened.start, opened.end, events[0].at) == (RULE, at(0), None, at(16))
    state, events = tick(state, at(30), GAP, at(0))  # still silent: reported once
    assert events == ()
    # the device comes back with a backlog whose newest reading is minute 29
    state, events = heard(state, at(29))
    assert [type(e) for e in events] == [BreachClosed]
    assert (events[0].breach.start, events[0].breach.end) == (at(0), at(29))
    assert tick(state, at(40), GAP, at(0))[1] == ()


def test_a_device_never_heard_of_is_not_silent() -> None:
    assert tick(SilenceState(), at(1000), GAP, at(0)) == (SilenceState(), ())


def test_an_older_reading_does_not_move_last_heard_back() -> None:
    state, _ = heard(SilenceState(), at(10))
    state, _ = heard(state, at(2))
    assert state.last_ts == at(10)


def test_a_device_on_no_delivery_in_transit_is_never_silent() -> None:
    state, _ = heard(SilenceState(), at(0))
    for minute in (16, 60, 24 * 60):
        assert tick(state, at(minute), GAP, None) == (state, ())


def test_silence_counts_from_when_the_device_went_on_its_delivery() -> None:
    # heard last at minute 0 in the depot; its delivery starts at minute 100
    state, _ = heard(SilenceState(), at(0))
    assert tick(state, at(115), GAP, at(100))[1] == ()
    state, events = tick(state, at(116), GAP, at(100))
    assert [(type(e), e.breach.start) for e in events] == [(BreachOpened, at(100))]
    # a late reading from before the delivery still ends it, with no negative duration
    state, events = heard(state, at(50))
    assert [(type(e), e.breach.start, e.breach.end) for e in events] == [
        (BreachClosed, at(100), at(100))
    ]


def test_the_silence_ends_when_the_delivery_is_over() -> None:
    state, _ = heard(SilenceState(), at(0))
    state, events = tick(state, at(20), GAP, at(0))
    assert [type(e) for e in events] == [BreachOpened]
    # delivered: the stage learns it at minute 40 and the device is on no delivery any more
    state, events = tick(state, at(40), GAP, None)
    assert [(type(e), e.breach.start, e.breach.end, e.at) for e in events] == [
        (BreachClosed, at(0), at(40), at(40))
    ]
    assert state == SilenceState(at(0))
    assert tick(state, at(60), GAP, None)[1] == ()
    # on its next delivery (from minute 90), silent again from then, a breach of its own
    state, events = tick(state, at(106), GAP, at(90))
    assert [(type(e), e.breach.start) for e in events] == [(BreachOpened, at(90))]

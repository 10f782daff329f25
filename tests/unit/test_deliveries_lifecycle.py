"""The delivery state machine and when a delivered delivery may close."""

from __future__ import annotations

import pytest

from coldtrace.deliveries.lifecycle import Action, State, TransitionRefused, close_due, next_state

HAPPY_PATH = [
    (State.planned, Action.start, State.in_transit),
    (State.in_transit, Action.deliver, State.delivered),
    (State.delivered, Action.close, State.closed),
    (State.planned, Action.cancel, State.cancelled),
    (State.in_transit, Action.cancel, State.cancelled),
]


@pytest.mark.parametrize(("state", "action", "target"), HAPPY_PATH)
def test_allowed_transitions(state: State, action: Action, target: State) -> None:
    assert next_state(state, action) is target


def test_every_other_transition_is_refused_with_what_is_allowed() -> None:
    allowed = {(s, a) for s, a, _ in HAPPY_PATH}
    refused = [(s, a) for s in State for a in Action if (s, a) not in allowed]
    assert len(refused) == len(State) * len(Action) - len(HAPPY_PATH)
    for state, action in refused:
        with pytest.raises(TransitionRefused) as info:
            next_state(state, action)
        assert state.value in str(info.value)
    with pytest.raises(TransitionRefused, match="only when in_transit, planned"):
        next_state(State.delivered, Action.cancel)


def test_closed_and_cancelled_are_final() -> None:
    for state in (State.closed, State.cancelled):
        for action in Action:
            with pytest.raises(TransitionRefused):
                next_state(state, action)


HOUR = 3_600_000


def test_close_due_once_a_later_reading_arrived() -> None:
    delivered = 10 * HOUR
    assert close_due(delivered, delivered + 1, delivered + 1, grace_s=6 * 3600)
    assert close_due(delivered, delivered, delivered, grace_s=6 * 3600)
    assert not close_due(delivered, delivered - 1, delivered + HOUR, grace_s=6 * 3600)
    assert not close_due(delivered, None, delivered + HOUR, grace_s=6 * 3600)


def test_close_due_after_the_grace_period_without_readings() -> None:
    delivered = 10 * HOUR
    assert not close_due(delivered, None, delivered + 6 * HOUR - 1, grace_s=6 * 3600)
    assert close_due(delivered, None, delivered + 6 * HOUR, grace_s=6 * 3600)

"""The delivery state machine: planned -> in_transit -> delivered -> closed, or cancelled.

Pure: a transition is checked against the current state only; who asked and when is recorded
by the caller (the audit log).
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    planned = "planned"
    in_transit = "in_transit"
    delivered = "delivered"
    closed = "closed"
    cancelled = "cancelled"


class Action(StrEnum):
    start = "start"
    deliver = "deliver"
    close = "close"
    cancel = "cancel"


# Closing needs the final readings in (or the grace period over); a delivery that left cannot
# be un-left, so cancel stops at delivered.
TRANSITIONS: dict[Action, tuple[frozenset[State], State]] = {
    Action.start: (frozenset({State.planned}), State.in_transit),
    Action.deliver: (frozenset({State.in_transit}), State.delivered),
    Action.close: (frozenset({State.delivered}), State.closed),
    Action.cancel: (frozenset({State.planned, State.in_transit}), State.cancelled),
}


class TransitionRefused(Exception):
    def __init__(self, action: Action, state: State) -> None:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[action][0]))
        super().__init__(
            f"cannot {action.value} a delivery that is {state.value} (only when {allowed})"
        )
        self.action = action
        self.state = state


def next_state(state: State, action: Action) -> State:
    sources, target = TRANSITIONS[action]
    if state not in sources:
        raise TransitionRefused(action, state)
    return target


def close_due(delivered_ms: int, last_reading_ms: int | None, now_ms: int, grace_s: int) -> bool:
    """A delivered delivery may close once a reading from after its end arrived (the logger's
    backlog reached us) or once the grace period has passed."""
    if last_reading_ms is not None and last_reading_ms >= delivered_ms:
        return True
    return now_ms - delivered_ms >= grace_s * 1000

"""Silent device: nothing heard from a device for longer than a gap. The one rule that needs
wall time, so the caller passes ``now`` (an injected clock). The silence is a breach of rule
``device_silent`` (probe ``""``) starting at the device time of the last reading heard and
ending at the newest reading of the batch that broke it; the backfilled readings themselves
are judged by the probe rules as usual. Pure: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerts.rules import NO_EVENTS, BreachClosed, BreachOpened, BreachRecord, Events

RULE = "device_silent"


@dataclass(frozen=True, slots=True)
class SilenceState:
    last_ts: int | None = None  # device time of the newest reading heard
    silent: BreachRecord | None = None


def heard(state: SilenceState, newest_ts: int) -> tuple[SilenceState, Events]:
    """Readings arrived; ``newest_ts`` is the newest device time among them."""
    last = newest_ts if state.last_ts is None else max(state.last_ts, newest_ts)
    if state.silent is None:
        return SilenceState(last), NO_EVENTS
    b = state.silent
    closed = BreachRecord(RULE, b.start, last, b.severity, None, 0.0, None)
    return SilenceState(last), (BreachClosed(closed, last),)


def tick(state: SilenceState, now_ms: int, gap_ms: int) -> tuple[SilenceState, Events]:
    if state.last_ts is None or state.silent is not None or now_ms - state.last_ts <= gap_ms:
        return state, NO_EVENTS
    breach = BreachRecord(RULE, state.last_ts, None, "major", None, 0.0, None)
    return SilenceState(state.last_ts, breach), (BreachOpened(breach, now_ms),)

"""Silent device: nothing heard from a device for longer than a gap while it is on an active
delivery. The one rule that needs wall time, so the caller passes ``now`` (an injected clock)
and since when the device has been on a delivery in transit (``on_delivery_since``, None when
it is on none now). The silence is a breach of rule ``device_silent`` (probe ``""``) starting
at the later of the last reading heard and the moment the device went on its delivery (a
logger switched off in the depot overnight was not silent on the delivery it joins in the
morning), and ending at the newest reading of the batch that broke it; the backfilled readings
themselves are judged by the probe rules as usual. Pure: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerts.rules import NO_EVENTS, BreachClosed, BreachOpened, BreachRecord, Events

RULE = "device_silent"


@dataclass(frozen=True, slots=True)
class SilenceState:
    last_ts: int | None = None  # device time of the newest reading heard
    silent: BreachRecord | None = None


def _closed(state: SilenceState, end: int) -> tuple[SilenceState, Events]:
    b = state.silent
    if b is None:
        return state, NO_EVENTS
    end = max(end, b.start)  # a late reading older than the silence still ends it
    closed = BreachRecord(RULE, b.start, end, b.severity, None, 0.0, None)
    return SilenceState(state.last_ts), (BreachClosed(closed, end),)


def heard(state: SilenceState, newest_ts: int) -> tuple[SilenceState, Events]:
    """Readings arrived; ``newest_ts`` is the newest device time among them."""
    last = newest_ts if state.last_ts is None else max(state.last_ts, newest_ts)
    return _closed(SilenceState(last, state.silent), last)


def tick(
    state: SilenceState, now_ms: int, gap_ms: int, on_delivery_since: int | None
) -> tuple[SilenceState, Events]:
    if on_delivery_since is None:
        # A quality manager answers for the goods while they travel: once the delivery is
        # delivered (or cancelled, or the logger moved off the compartment) a logger that
        # stays quiet is no breach, so an open silence ends now, when that is learnt.
        return _closed(state, now_ms)
    if state.last_ts is None or state.silent is not None:
        return state, NO_EVENTS
    quiet_since = max(state.last_ts, on_delivery_since)
    if now_ms - quiet_since <= gap_ms:
        return state, NO_EVENTS
    breach = BreachRecord(RULE, quiet_since, None, "major", None, 0.0, None)
    return SilenceState(state.last_ts, breach), (BreachOpened(breach, now_ms),)

"""Cold-chain rules, each a pure ``update(state, sample) -> (state, events)`` on device time.

Nothing here reads the wall clock or does I/O: the same rules judge a live stream (ingest),
a replay, and a logger file (``coldtrace analyze``). States are immutable, so the engine can
keep the state after every sample and re-evaluate from any point when late readings arrive.

Time between two samples is charged to the earlier one (sample-and-hold): the value at
``t_i`` holds until ``t_(i+1)``. Degree-minutes are the integral of the excess over the limit
on that basis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, NamedTuple, Protocol

from coldtrace.profiles import Profile

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
# Mean kinetic temperature: activation energy delta-H = 83.144 kJ/mol (USP <1160>, WHO TRS 961)
# over the gas constant R = 8.3144626 J/(mol K) gives delta-H / R = 10,000 K.
DELTA_H_J_PER_MOL: Final = 83_144.0
GAS_CONSTANT: Final = 8.314462618
H_OVER_R: Final = DELTA_H_J_PER_MOL / GAS_CONSTANT
KELVIN: Final = 273.15
# A rolling MKT window is kept as this many buckets; MKT is judged once one bucket is covered.
MKT_BUCKETS: Final = 24

Severity = Literal["major", "critical"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One probe value at one device time; ``celsius`` None when the probe gave none."""

    ts: int  # epoch ms, device clock
    seq: int  # orders two samples of the same ts, and identifies a replayed one
    celsius: float | None
    door: bool | None = None  # the reading's door contact, when the device has one
    suppress: bool = False  # a configured window (defrost, loading) covers this reading


@dataclass(frozen=True, slots=True)
class BreachRecord:
    rule: str
    start: int  # device time of the first reading of the breach
    end: int | None  # device time of the first reading back in range; None while open
    severity: Severity
    peak: float | None  # the worst value (for mkt: the highest MKT)
    degree_minutes: float
    limit_c: float | None
    # Recorded, not alarmed: every out-of-range reading fell in a configured suppression
    # window or while loading (door open, or within the grace after it closed), and it never
    # became critical.
    suppressed: bool = False
    # While open: the device time of the newest reading it still held at, which its figures
    # and its duration so far run up to (an excursion back within its hysteresis: the first
    # reading back, where it ends if it closes). A door left open has no other figure that
    # moves. None once closed (``end`` says it) and for device_silent (judged on wall time).
    through: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.rule, self.start)

    def ended(self, end: int) -> BreachRecord:
        """The breach closed at ``end`` (device ms) with its figures as they stand."""
        return replace(self, end=end, through=None)


@dataclass(frozen=True, slots=True)
class BreachChange:
    """What the rules say of a breach: ``at`` is the device time of the reading that revealed
    the change; ``late`` that readings older than the newest revealed it."""

    breach: BreachRecord
    at: int
    late: bool = False


@dataclass(frozen=True, slots=True)
class BreachOpened(BreachChange):
    pass


@dataclass(frozen=True, slots=True)
class BreachEscalated(BreachChange):
    pass


@dataclass(frozen=True, slots=True)
class BreachClosed(BreachChange):
    pass


@dataclass(frozen=True, slots=True)
class BreachRevised(BreachChange):
    """Late readings changed a breach already reported (its end, peak or degree-minutes)."""

    late: bool = True


@dataclass(frozen=True, slots=True)
class BreachUpdated(BreachChange):
    """An open breach's figures as of the newest reading (its peak, degree-minutes or
    ``through`` moved since it was last reported); the engine reports it at most once per
    batch per breach. Stored, never notified: only opened, escalated, closed and withdrawn
    notify."""


@dataclass(frozen=True, slots=True)
class BreachWithdrawn(BreachChange):
    """Late readings showed a reported breach never happened (e.g. a gap in its middle)."""

    late: bool = True


Event = (
    BreachOpened | BreachEscalated | BreachClosed | BreachUpdated | BreachRevised | BreachWithdrawn
)
Events = tuple[Event, ...]
NO_EVENTS: Final[Events] = ()


Window = tuple[int, int]  # [start, end) in epoch ms


def in_windows(windows: list[Window], ts: int) -> bool:
    return any(start <= ts < end for start, end in windows)


# -- suppression windows ---------------------------------------------------------------------
# A temperature rule records, but does not alarm on, what happens inside a suppression window:
# a configured one (defrost, loading: ``Sample.suppress``) or, when the profile sets a loading
# grace, while the door is open and within the grace after it closed. Probe-health rules
# (fault, stuck, jump) are never suppressed: a failed probe during a defrost is still failed.


def door_seen(grace_ms: int | None, door_open_at: int | None, x: Sample) -> int | None:
    """The device time the door was last seen open (only tracked with a loading grace)."""
    return x.ts if grace_ms is not None and x.door else door_open_at


def quiet(grace_ms: int | None, door_open_at: int | None, x: Sample) -> bool:
    """Whether ``x`` falls in a suppression window; ``door_open_at`` already counts ``x``."""
    return x.suppress or (
        grace_ms is not None and door_open_at is not None and x.ts - door_open_at <= grace_ms
    )


class Rule(Protocol):
    @property
    def name(self) -> str: ...

    def initial(self) -> Any: ...

    def update(self, state: Any, sample: Sample) -> tuple[Any, Events]: ...

    def current(self, state: Any) -> BreachRecord | None: ...


# -- single excursion ------------------------------------------------------------------------


class ExcursionState(NamedTuple):
    run_start: int | None = None  # first out-of-range reading of the current run
    prev_ts: int = 0
    prev_excess: float = 0.0
    peak_excess: float = 0.0
    degree_minutes: float = 0.0
    back_at: int | None = None  # first reading back in range, until past the hysteresis
    breach: BreachRecord | None = None
    door_open_at: int | None = None  # last reading with the door open (loading)
    alarming: bool = False  # the run had an out-of-range reading outside loading


EXCURSION_IDLE: Final = ExcursionState()


@dataclass(frozen=True, slots=True)
class Excursion:
    """Out of range continuously for at least ``delay_ms`` (or at once past the critical
    limit). The breach starts at the first out-of-range reading and ends at the first reading
    back in range, provided the value then gets ``hysteresis`` inside the limit before leaving
    the range again; a value hovering on the limit therefore keeps one breach open.
    A breach whose out-of-range readings all fall in configured suppression windows, or (with
    ``grace_ms`` set) while the door is open or within the grace after it closed, is recorded
    as suppressed; it alarms (is opened again, unsuppressed) as soon as one does not, or it
    turns critical."""

    name: str
    limit: float
    sign: float  # +1: upper limit, -1: lower limit; excess = sign * (value - limit)
    hysteresis: float
    delay_ms: int
    critical_excess: float | None
    critical_after_ms: int | None
    grace_ms: int | None = None

    def initial(self) -> ExcursionState:
        return EXCURSION_IDLE

    def update(self, s: ExcursionState, x: Sample) -> tuple[ExcursionState, Events]:
        if x.celsius is None:
            return s, NO_EVENTS
        excess = self.sign * (x.celsius - self.limit)
        door_open_at = door_seen(self.grace_ms, s.door_open_at, x)
        if s.run_start is None:
            if excess <= 0:
                if door_open_at == s.door_open_at:
                    return s, NO_EVENTS
                return ExcursionState(door_open_at=door_open_at), NO_EVENTS
            run_start, peak, dm, back_at, breach, alarming = x.ts, excess, 0.0, None, None, False
        else:
            run_start, breach, alarming = s.run_start, s.breach, s.alarming
            dm = s.degree_minutes + max(s.prev_excess, 0.0) * (x.ts - s.prev_ts) / MINUTE_MS
            peak = max(s.peak_excess, excess)
            if excess > 0:
                back_at = None
            elif excess > -self.hysteresis:
                back_at = s.back_at if s.back_at is not None else x.ts
            else:
                idle = ExcursionState(door_open_at=door_open_at)
                if breach is None:
                    return idle, NO_EVENTS
                end = s.back_at if s.back_at is not None else x.ts
                closed = self._record(breach.start, None, breach.severity, peak, dm, breach)
                return idle, (BreachClosed(closed.ended(end), x.ts),)
        if excess > 0 and not alarming:
            alarming = not quiet(self.grace_ms, door_open_at, x)
        critical = (self.critical_excess is not None and peak > self.critical_excess) or (
            self.critical_after_ms is not None and x.ts - run_start >= self.critical_after_ms
        )
        suppressed = not (alarming or critical)
        through = x.ts if back_at is None else back_at
        events: Events = NO_EVENTS
        if breach is None:
            if excess > 0 and (critical or x.ts - run_start >= self.delay_ms):
                severity: Severity = "critical" if critical else "major"
                breach = self._record(run_start, through, severity, peak, dm, suppressed=suppressed)
                events = (BreachOpened(breach, x.ts),)
        elif breach.suppressed and not suppressed:  # loading is over and it is still out
            severity = "critical" if critical else "major"
            breach = self._record(run_start, through, severity, peak, dm)
            events = (BreachOpened(breach, x.ts),)
        elif critical and breach.severity == "major":
            breach = self._record(run_start, through, "critical", peak, dm)
            events = (BreachEscalated(breach, x.ts),)
        state = ExcursionState(
            run_start, x.ts, excess, peak, dm, back_at, breach, door_open_at, alarming
        )
        return state, events

    def current(self, s: ExcursionState) -> BreachRecord | None:
        """The open breach as it stands at the last reading: its peak and degree-minutes
        so far (the events carry them as they were when it opened or escalated)."""
        b = s.breach
        if b is None:
            return None
        through = s.prev_ts if s.back_at is None else s.back_at
        return self._record(b.start, through, b.severity, s.peak_excess, s.degree_minutes, b)

    def _record(
        self,
        start: int,
        through: int | None,
        severity: Severity,
        peak_excess: float,
        dm: float,
        was: BreachRecord | None = None,
        suppressed: bool = False,
    ) -> BreachRecord:
        """An open breach's record (``BreachRecord.ended`` closes it)."""
        peak = round(self.limit + self.sign * peak_excess, 6)
        if was is not None:
            suppressed = was.suppressed
        return BreachRecord(
            self.name, start, None, severity, peak, round(dm, 6), self.limit, suppressed, through
        )


# -- cumulative time out of range ------------------------------------------------------------


class CumulativeState(NamedTuple):
    prev_ts: int = 0
    prev_out: bool = False
    prev_quiet: bool = False  # the previous reading fell in a suppression window
    # Out-of-range time still inside the window: (start, end, alarms), ``alarms`` False for
    # time charged to a reading in a suppression window.
    spans: tuple[tuple[int, int, bool], ...] = ()
    total: int = 0  # ms in spans
    loud: int = 0  # ms in spans that alarm
    breach: BreachRecord | None = None
    door_open_at: int | None = None  # last reading with the door open (loading)


@dataclass(frozen=True, slots=True)
class Cumulative:
    """Total time beyond the limits within a rolling window exceeds a budget. Coming back in
    range does not reset it: only time leaving the window does. The breach starts at the
    reading that found the budget exceeded and ends at the one that found it within again.
    It is recorded as suppressed while the time outside suppression windows alone stays
    within the budget, and opened again, alarming, once that time exceeds it too."""

    name: str
    above: float | None
    below: float | None
    budget_ms: int
    window_ms: int
    grace_ms: int | None = None

    def initial(self) -> CumulativeState:
        return CumulativeState()

    def update(self, s: CumulativeState, x: Sample) -> tuple[CumulativeState, Events]:
        v = x.celsius
        if v is None:
            return s, NO_EVENTS
        out = (self.above is not None and v > self.above) or (
            self.below is not None and v < self.below
        )
        spans, total, loud = s.spans, s.total, s.loud
        cutoff = x.ts - self.window_ms
        expiring = bool(spans) and spans[0][0] < cutoff
        if not out and not s.prev_out and not expiring and s.breach is None:
            # nothing moves: prev_ts only matters after an out reading or while a breach is
            # open (it runs up to the newest reading); the door may move
            if self.grace_ms is None or not x.door:
                return s, NO_EVENTS
            return s._replace(door_open_at=x.ts), NO_EVENTS
        grace = self.grace_ms
        door_open_at = s.door_open_at if grace is None else door_seen(grace, s.door_open_at, x)
        if s.prev_out:
            dt, alarms = x.ts - s.prev_ts, not s.prev_quiet
            total += dt
            if alarms:
                loud += dt
            if spans and spans[-1][1] == s.prev_ts and spans[-1][2] == alarms:
                spans = (*spans[:-1], (spans[-1][0], x.ts, alarms))
            else:
                spans = (*spans, (s.prev_ts, x.ts, alarms))
        if expiring:
            kept = []
            for a, b, alarms in spans:
                if b <= cutoff:
                    gone = b - a
                elif a < cutoff:
                    gone = cutoff - a
                    kept.append((cutoff, b, alarms))
                else:
                    kept.append((a, b, alarms))
                    continue
                total -= gone
                if alarms:
                    loud -= gone
            spans = tuple(kept)
        breach, events = s.breach, NO_EVENTS
        suppressed = loud <= self.budget_ms
        if breach is None and total > self.budget_ms:
            breach = self._record(x.ts, x.ts, suppressed)
            events = (BreachOpened(breach, x.ts),)
        elif breach is not None and total <= self.budget_ms:
            closed = self._record(breach.start, None, breach.suppressed).ended(x.ts)
            breach, events = None, (BreachClosed(closed, x.ts),)
        elif breach is not None and breach.suppressed and not suppressed:
            breach = self._record(breach.start, x.ts, False)
            events = (BreachOpened(breach, x.ts),)
        now_quiet = x.suppress if grace is None else quiet(grace, door_open_at, x)
        state = CumulativeState(x.ts, out, now_quiet, spans, total, loud, breach, door_open_at)
        return state, events

    def current(self, s: CumulativeState) -> BreachRecord | None:
        """The open breach, running up to the newest reading."""
        b = s.breach
        return None if b is None else self._record(b.start, s.prev_ts, b.suppressed)

    def _record(self, start: int, through: int | None, suppressed: bool) -> BreachRecord:
        """An open breach's record (``BreachRecord.ended`` closes it)."""
        limit = self.above if self.above is not None else self.below
        return BreachRecord(self.name, start, None, "major", None, 0.0, limit, suppressed, through)


# -- mean kinetic temperature ----------------------------------------------------------------


def mkt_celsius(pairs: list[tuple[float, float]]) -> float:
    """Mean kinetic temperature of (celsius, weight) pairs, weights being durations."""
    total = sum(w for _, w in pairs)
    if total <= 0:
        raise ValueError("MKT needs a positive total duration")
    mean = sum(w * math.exp(-H_OVER_R / (c + KELVIN)) for c, w in pairs) / total
    return H_OVER_R / -math.log(mean) - KELVIN


class MktState(NamedTuple):
    prev_ts: int | None = None
    prev_term: float = 0.0
    prev_quiet: bool = False  # the previous reading fell in a suppression window
    # The bucket being filled: its index, covered ms and sum of ms * exp(-dH/RT), each also
    # for the time outside suppression windows alone ("loud"); then the earlier buckets still
    # inside the window, and their totals (kept, not re-summed).
    bucket: int = 0
    weight: int = 0
    terms: float = 0.0
    loud_weight: int = 0
    loud_terms: float = 0.0
    closed: tuple[tuple[int, int, float, int, float], ...] = ()
    closed_weight: int = 0
    closed_terms: float = 0.0
    closed_loud_weight: int = 0
    closed_loud_terms: float = 0.0
    peak: float = -KELVIN
    breach: BreachRecord | None = None
    door_open_at: int | None = None  # last reading with the door open (loading)


def _mkt_of(terms: float, weight: int) -> float:
    return H_OVER_R / -math.log(terms / weight) - KELVIN


@dataclass(frozen=True, slots=True)
class Mkt:
    """MKT over a rolling window (kept in MKT_BUCKETS buckets) above the profile's limit.
    The breach is recorded as suppressed while the MKT of the time outside suppression
    windows alone (judged once it covers a bucket too) stays within the limit, and opened
    again, alarming, once it does not."""

    name: str
    limit: float
    window_ms: int
    grace_ms: int | None = None

    def initial(self) -> MktState:
        return MktState()

    def update(self, s: MktState, x: Sample) -> tuple[MktState, Events]:
        if x.celsius is None:
            return s, NO_EVENTS
        term = math.exp(-H_OVER_R / (x.celsius + KELVIN))
        grace = self.grace_ms
        if grace is None:
            door_open_at, now_quiet = None, x.suppress
        else:
            door_open_at = door_seen(grace, s.door_open_at, x)
            now_quiet = quiet(grace, door_open_at, x)
        if s.prev_ts is None:
            first = s._replace(
                prev_ts=x.ts, prev_term=term, prev_quiet=now_quiet, door_open_at=door_open_at
            )
            return first, NO_EVENTS
        size = self.window_ms // MKT_BUCKETS
        idx, dt = s.prev_ts // size, x.ts - s.prev_ts
        bucket, weight, terms, loud_weight, loud_terms = (
            s.bucket,
            s.weight,
            s.terms,
            s.loud_weight,
            s.loud_terms,
        )
        closed = s.closed
        closed_weight, closed_terms = s.closed_weight, s.closed_terms
        closed_loud_weight, closed_loud_terms = s.closed_loud_weight, s.closed_loud_terms
        if idx != bucket:
            if weight:
                closed = (*closed, (bucket, weight, terms, loud_weight, loud_terms))
                closed_weight, closed_terms = closed_weight + weight, closed_terms + terms
                closed_loud_weight += loud_weight
                closed_loud_terms += loud_terms
            bucket, weight, terms, loud_weight, loud_terms = idx, 0, 0.0, 0, 0.0
        weight += dt
        terms += dt * s.prev_term
        if not s.prev_quiet:
            loud_weight += dt
            loud_terms += dt * s.prev_term
        oldest = x.ts // size - MKT_BUCKETS
        if closed and closed[0][0] <= oldest:
            closed = tuple(b for b in closed if b[0] > oldest)
            closed_weight = sum(b[1] for b in closed)
            closed_terms = sum(b[2] for b in closed)
            closed_loud_weight = sum(b[3] for b in closed)
            closed_loud_terms = sum(b[4] for b in closed)
        if bucket <= oldest:  # a gap longer than the window
            weight, terms, loud_weight, loud_terms = 0, 0.0, 0, 0.0
        total = closed_weight + weight
        peak, breach, events = s.peak, s.breach, NO_EVENTS
        if total >= size:
            mkt = H_OVER_R / -math.log((closed_terms + terms) / total) - KELVIN
            loud_total = closed_loud_weight + loud_weight
            # the MKT of the time outside suppression windows, needed only near a breach
            alarms = (
                (breach is None and mkt > self.limit) or (breach is not None and breach.suppressed)
            ) and (
                loud_total >= size
                and _mkt_of(closed_loud_terms + loud_terms, loud_total) > self.limit
            )
            if breach is None and mkt > self.limit:
                peak = mkt
                breach = self._record(x.ts, x.ts, mkt, not alarms)
                events = (BreachOpened(breach, x.ts),)
            elif breach is not None:
                peak = max(peak, mkt)
                if mkt <= self.limit:
                    closed_breach = self._record(breach.start, None, peak, breach.suppressed)
                    events = (BreachClosed(closed_breach.ended(x.ts), x.ts),)
                    breach = None
                elif breach.suppressed and alarms:
                    breach = self._record(breach.start, x.ts, peak, False)
                    events = (BreachOpened(breach, x.ts),)
        state = MktState(
            x.ts,
            term,
            now_quiet,
            bucket,
            weight,
            terms,
            loud_weight,
            loud_terms,
            closed,
            closed_weight,
            closed_terms,
            closed_loud_weight,
            closed_loud_terms,
            peak,
            breach,
            door_open_at,
        )
        return state, events

    def current(self, s: MktState) -> BreachRecord | None:
        """The open breach with the highest MKT so far, running up to the newest reading."""
        b = s.breach
        return None if b is None else self._record(b.start, s.prev_ts, s.peak, b.suppressed)

    def _record(
        self, start: int, through: int | None, peak: float, suppressed: bool
    ) -> BreachRecord:
        """An open breach's record (``BreachRecord.ended`` closes it)."""
        return BreachRecord(
            self.name, start, None, "major", round(peak, 3), 0.0, self.limit, suppressed, through
        )


# -- probe health ----------------------------------------------------------------------------


class RunState(NamedTuple):
    since: int | None = None  # first sample of the current run
    value: float | None = None
    breach: BreachRecord | None = None  # as it opened
    through: int | None = None  # the newest sample it still held at, once open


RUN_IDLE: Final = RunState()


def no_temperature(x: Sample) -> bool:
    return x.celsius is None


def door_open(x: Sample) -> bool | None:
    return x.door


@dataclass(frozen=True, slots=True)
class ConditionRun:
    """A condition holding on consecutive samples for at least ``delay_ms``: the probe gave
    no temperature (failed, disconnected, impossible value), or the door stayed open. Ends
    at the first sample where it no longer holds; samples that cannot tell (None) are skipped."""

    name: str
    delay_ms: int
    condition: Callable[[Sample], bool | None]

    def initial(self) -> RunState:
        return RUN_IDLE

    def update(self, s: RunState, x: Sample) -> tuple[RunState, Events]:
        holds = self.condition(x)
        if holds is None:
            return s, NO_EVENTS
        if not holds:
            if s.breach is None:
                return RUN_IDLE, NO_EVENTS
            return RUN_IDLE, (BreachClosed(s.breach.ended(x.ts), x.ts),)
        if s.breach is not None:
            return s._replace(through=x.ts), NO_EVENTS
        since = x.ts if s.since is None else s.since
        if x.ts - since >= self.delay_ms:
            breach = BreachRecord(self.name, since, None, "major", None, 0.0, None, False, x.ts)
            return RunState(since, None, breach, x.ts), (BreachOpened(breach, x.ts),)
        return (s if s.since is not None else RunState(since)), NO_EVENTS

    def current(self, s: RunState) -> BreachRecord | None:
        """The open breach, running up to the newest sample it held at."""
        return running(s.breach, s.through)


@dataclass(frozen=True, slots=True)
class StuckProbe:
    """The probe repeated exactly the same value for at least ``stuck_ms``: a real product
    temperature read at 0.0625 C resolution always wobbles; ends at the first other value."""

    name: str
    stuck_ms: int

    def initial(self) -> RunState:
        return RUN_IDLE

    def update(self, s: RunState, x: Sample) -> tuple[RunState, Events]:
        if x.celsius is None:
            return s, NO_EVENTS
        if x.celsius != s.value or s.since is None:
            if s.breach is None:
                return RunState(x.ts, x.celsius), NO_EVENTS
            return RunState(x.ts, x.celsius), (BreachClosed(s.breach.ended(x.ts), x.ts),)
        if s.breach is not None:
            return s._replace(through=x.ts), NO_EVENTS
        if x.ts - s.since >= self.stuck_ms:
            breach = BreachRecord(
                self.name, s.since, None, "major", s.value, 0.0, None, False, x.ts
            )
            return RunState(s.since, s.value, breach, x.ts), (BreachOpened(breach, x.ts),)
        return s, NO_EVENTS

    def current(self, s: RunState) -> BreachRecord | None:
        """The open breach, running up to the newest sample that still repeated its value."""
        return running(s.breach, s.through)


def running(b: BreachRecord | None, through: int | None) -> BreachRecord | None:
    """An open breach whose only moving figure is its length, as it stands: running up to
    ``through``, the newest sample it held at (its record, kept as it opened, says where
    that was then)."""
    return b if b is None or b.through == through else replace(b, through=through)


class LastState(NamedTuple):
    ts: int | None = None  # the previous sample with a temperature
    value: float = 0.0
    breach: BreachRecord | None = None


@dataclass(frozen=True, slots=True)
class JumpingProbe:
    """A change faster than a product can physically change (``max_rate`` C per minute, over
    at least a minute): a loose probe, a probe out of the product, interference. The breach
    starts at the first jump and ends at the first reading that follows its predecessor
    plausibly again; ``peak`` is the implausible value that opened it."""

    name: str
    max_rate: float

    def initial(self) -> LastState:
        return LastState()

    def update(self, s: LastState, x: Sample) -> tuple[LastState, Events]:
        v = x.celsius
        if v is None:
            return s, NO_EVENTS
        if s.ts is None:
            return LastState(x.ts, v), NO_EVENTS
        jump = abs(v - s.value) > self.max_rate * max((x.ts - s.ts) / MINUTE_MS, 1.0)
        if jump:
            if s.breach is None:
                breach = BreachRecord(self.name, x.ts, None, "major", v, 0.0, None, False, x.ts)
                return LastState(x.ts, v, breach), (BreachOpened(breach, x.ts),)
            return LastState(x.ts, v, s.breach), NO_EVENTS
        if s.breach is not None:
            return LastState(x.ts, v), (BreachClosed(s.breach.ended(x.ts), x.ts),)
        return LastState(x.ts, v), NO_EVENTS

    def current(self, s: LastState) -> BreachRecord | None:
        """The open breach, running up to the newest reading (a jump, while it is open)."""
        return running(s.breach, s.ts)


# -- a profile's rule set --------------------------------------------------------------------


def _ms(minutes: float) -> int:
    return round(minutes * MINUTE_MS)


def rules_for(profile: Profile) -> list[Rule]:
    after = None if profile.critical_after_min is None else _ms(profile.critical_after_min)
    grace = None if profile.loading_grace_min is None else _ms(profile.loading_grace_min)
    rules: list[Rule] = []
    for name, limit, sign, critical in (
        ("excursion_high", profile.high_c, 1.0, profile.critical_high_c),
        ("excursion_low", profile.low_c, -1.0, profile.critical_low_c),
    ):
        if limit is not None:
            crit_excess = None if critical is None else sign * (critical - limit)
            rules.append(
                Excursion(
                    name,
                    limit,
                    sign,
                    profile.hysteresis_c,
                    _ms(profile.delay_min),
                    crit_excess,
                    after,
                    grace,
                )
            )
    if (c := profile.cumulative) is not None:
        rules.append(
            Cumulative(
                "cumulative",
                c.above_c,
                c.below_c,
                _ms(c.budget_min),
                round(c.window_h * HOUR_MS),
                grace,
            )
        )
    if (m := profile.mkt) is not None:
        rules.append(Mkt("mkt", m.limit_c, round(m.window_h * HOUR_MS), grace))
    rules.append(ConditionRun("probe_fault", _ms(profile.fault_delay_min), no_temperature))
    rules.append(StuckProbe("probe_stuck", _ms(profile.stuck_min)))
    if profile.max_rate_c_per_min is not None:
        rules.append(JumpingProbe("probe_jump", profile.max_rate_c_per_min))
    return rules


ProbeState = tuple[Any, ...]


class RuleSet:
    """Several rules as one pure update; the state is the tuple of theirs."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._updates = [r.update for r in rules]

    def initial(self) -> ProbeState:
        return tuple(r.initial() for r in self.rules)

    def update(self, state: ProbeState, sample: Sample) -> tuple[ProbeState, Events]:
        # The hot loop of evaluation: bound methods, no zip(strict=...), one tuple.
        events: Events = NO_EVENTS
        new_state: list[Any] = []
        append = new_state.append
        for i, update in enumerate(self._updates):
            ns, ev = update(state[i], sample)
            append(ns)
            if ev:
                events += ev
        return tuple(new_state), events

    def current(self, state: ProbeState) -> list[BreachRecord]:
        """The breaches open after the samples that led to ``state``, as they stand then
        (peak and degree-minutes up to the last reading)."""
        return [
            b
            for rule, st in zip(self.rules, state, strict=True)
            if (b := rule.current(st)) is not None
        ]

    def run(
        self, state: ProbeState, samples: list[Sample], marks: list[int]
    ) -> tuple[ProbeState, list[Events], list[ProbeState]]:
        """``update`` over many samples, rule by rule (the same result, without building a
        composite state per sample): the final state, each sample's events, and the state
        after each sample whose index is in ``marks`` (ascending)."""
        n = len(samples)
        events: list[Events] = [NO_EVENTS] * n
        marked: list[list[Any]] = [[] for _ in marks]
        final: list[Any] = []
        bounds = [*marks, n - 1] if not marks or marks[-1] != n - 1 else marks
        for r, update in enumerate(self._updates):
            st = state[r]
            start = 0
            for j, end in enumerate(bounds):
                for i in range(start, end + 1):
                    st, ev = update(st, samples[i])
                    if ev:
                        events[i] = events[i] + ev
                if j < len(marks):
                    marked[j].append(st)
                start = end + 1
            final.append(st)
        return tuple(final), events, [tuple(m) for m in marked]


class ProbeRules(RuleSet):
    """All temperature and probe rules of one profile, for one probe."""

    def __init__(self, profile: Profile) -> None:
        super().__init__(rules_for(profile))


def door_rules(profile: Profile) -> RuleSet | None:
    """The device-level door rule of a profile (samples carry the door, not temperatures)."""
    if profile.door_open_max_min is None:
        return None
    return RuleSet([ConditionRun("door_open", _ms(profile.door_open_max_min), door_open)])

"""Event-time evaluation of one (device, probe), whatever order its readings arrive in.

Samples are kept sorted by (ts, seq), with the rule state after every 32nd one. A sample
older than the newest is merged in place and the rules re-run from the checkpoint before
it, so the outcome depends only on the set of samples, never on arrival order, batching or
repeats (a known (ts, seq) is ignored). Breaches are keyed by (rule, start); what the
engine reports are the changes of that keyed view: opened, escalated, closed, updated (an
open breach's peak, degree-minutes and ``through`` as of the newest reading, at most once per
batch: a door left open is reported lasting longer each batch), and,
when late data rewrote history, revised or withdrawn. Samples older than ``horizon_ms`` before
the newest are compacted away; a sample arriving older than that is counted, not evaluated.
Pure: no clock, no I/O.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import replace

from alerts.rules import (
    BreachClosed,
    BreachEscalated,
    BreachOpened,
    BreachRecord,
    BreachRevised,
    BreachUpdated,
    BreachWithdrawn,
    Event,
    Events,
    ProbeState,
    RuleSet,
    Sample,
)

Key = tuple[str, int]  # (rule, start)
CHECKPOINT_EVERY = 32
SEVERITY_RANK = {"major": 0, "critical": 1}


class ProbeEngine:
    def __init__(
        self,
        rules: RuleSet,
        horizon_ms: int | None = None,
        known: Iterable[BreachRecord] = (),
    ) -> None:
        """``known``: breaches already reported (e.g. loaded from the store after a restart),
        so re-deriving them reports nothing new."""
        self.rules = rules
        self.horizon_ms = horizon_ms
        self.samples: list[Sample] = []
        self.order: list[tuple[int, int]] = []  # (ts, seq) of each sample, for bisect
        self.events: list[Events] = []  # what each sample made the rules say
        # The rule state after every CHECKPOINT_EVERY-th sample (keyed by that sample's
        # (ts, seq)): a late sample is merged by re-running from the one just before it.
        self.ck_keys: list[tuple[int, int]] = []
        self.ck_states: list[ProbeState] = []
        self.since_ck = 0
        self.base: ProbeState = rules.initial()  # the state before samples[0]
        self.state: ProbeState = self.base  # the state after the newest sample
        self.floor: tuple[int, int] | None = None  # (ts, seq) of the last compacted sample
        self.settled: dict[Key, BreachRecord] = {}  # last word on breaches of compacted samples
        self.view: dict[Key, BreachRecord] = {b.key: b for b in known}
        self.too_late = 0
        self.until: int | None = None  # where the stretch it judges ended (close_at)

    @property
    def newest(self) -> int | None:
        return self.order[-1][0] if self.order else None

    def close_at(self, end: int) -> list[Event]:
        """The stretch it judges ended at ``end`` (another profile judges the probe from
        then on): breaches still open close there, now and whenever late samples re-derive
        them, so a late sample never reopens them."""
        self.until = end
        changes: list[Event] = []
        current = self._current()
        for key, b in list(self.view.items()):
            if b.end is None:
                self.view[key] = self._now(b, current)
                changes.append(BreachClosed(self.view[key], end))
        return changes

    def add(self, samples: Iterable[Sample]) -> list[Event]:
        """Merge samples in, re-evaluate what they affect, return the changes of the view."""
        fresh: dict[tuple[int, int], Sample] = {}
        order = self.order
        newest = order[-1] if order else None
        for s in samples:
            k = (s.ts, s.seq)
            if newest is not None and k <= newest:  # not plain news: check floor and repeats
                if self.floor is not None and k <= self.floor:
                    self.too_late += 1
                    continue
                i = bisect_left(order, k)
                if i < len(order) and order[i] == k:
                    continue  # a repeat: same device time and seq
            fresh.setdefault(k, s)
        if not fresh:
            return []
        first = min(fresh)
        late = newest is not None and first < newest
        if late:  # re-run from the last checkpoint before the first new sample
            ci = bisect_left(self.ck_keys, first)
            if ci:
                state = self.ck_states[ci - 1]
                pos = bisect_left(order, self.ck_keys[ci - 1]) + 1
            else:
                state, pos = self.base, 0
            del self.ck_keys[ci:], self.ck_states[ci:]
            self.since_ck = 0
            fresh.update(zip(order[pos:], self.samples[pos:], strict=True))
            old_events = self.events[pos:]
            del self.samples[pos:], order[pos:], self.events[pos:]
        else:
            state, pos = self.state, len(order)
            old_events = []
        keys = sorted(fresh)
        tail = [fresh[k] for k in keys]
        first_mark = CHECKPOINT_EVERY - self.since_ck - 1
        marks = list(range(first_mark, len(tail), CHECKPOINT_EVERY))
        state, events, marked = self.rules.run(state, tail, marks)
        self.samples.extend(tail)
        order.extend(keys)
        self.events.extend(events)
        for i, ck_state in zip(marks, marked, strict=True):
            self.ck_keys.append(keys[i])
            self.ck_states.append(ck_state)
        self.since_ck = (self.since_ck + len(tail)) % CHECKPOINT_EVERY
        self.state = state
        # After its stretch ended every sample is late, and open breaches are closed there.
        changes = self._changes(old_events, self.events[pos:], late or self.until is not None)
        self._refresh(changes)
        self._compact()
        return changes

    def _refresh(self, changes: list[Event]) -> None:
        """Bring the open breaches of the view to their figures as of the newest reading,
        appending one ``BreachUpdated`` per breach whose peak, degree-minutes or ``through``
        moved: a quality manager watching an excursion in progress, or a door left open,
        sees how bad and how long it is now, not as it was when it opened (its events carry
        the figures of that moment)."""
        if not any(b.end is None for b in self.view.values()):
            return  # the common case: nothing open, no need to ask the rules
        current = self._current()
        at = self.order[-1][0]
        for key, b in list(self.view.items()):
            now = current.get(key)
            if b.end is None and now is not None and now != b:
                self.view[key] = now
                changes.append(BreachUpdated(now, at))

    def _changes(self, old: list[Events], new: list[Events], late: bool) -> list[Event]:
        at = self.order[-1][0]
        changes: list[Event] = []
        if not late:  # plain append: the new events are the changes, in order
            current: dict[Key, BreachRecord] | None = None
            for e in (e for ev in new for e in ev):
                known = self.view.get(e.breach.key)
                if known == e.breach:
                    continue  # already known (restart)
                if known is not None and e.breach.end is None:
                    current = self._current() if current is None else current
                    if known == self._now(e.breach, current):
                        continue  # known as it stands now (restart of an open breach)
                self.view[e.breach.key] = e.breach
                changes.append(e)
            return changes
        affected = [e.breach.key for ev in old for e in ev] + [
            e.breach.key for ev in new for e in ev
        ]
        current = self._current()
        for key in dict.fromkeys(affected):
            before = self.view.get(key)
            derived = self._latest(key)
            after = derived if derived is None else self._now(derived, current)
            if after == before:
                continue
            if after is None:
                assert before is not None
                del self.view[key]
                changes.append(BreachWithdrawn(before, at))
                continue
            self.view[key] = after
            assert derived is not None  # after is derived as it stands now
            if before is None:  # new to the view: report its own transitions in order
                told = [replace(e, late=True) for ev in new for e in ev if e.breach.key == key]
                changes.extend(told)
                if derived.end is None and after.end is not None:  # open where its stretch ended
                    changes.append(BreachClosed(after, after.end, late=True))
                elif told and told[-1].breach != after:  # it kept going after its last event
                    changes.append(BreachUpdated(after, at))
                continue
            alarms = before.suppressed and not after.suppressed
            escalated = SEVERITY_RANK[after.severity] > SEVERITY_RANK[before.severity]
            closed = before.end is None and after.end is not None
            if alarms:  # loading is over and it was still out: report it opened
                changes.append(BreachOpened(after, at, late=True))
            elif escalated:
                changes.append(BreachEscalated(after, at, late=True))
            if closed:
                changes.append(BreachClosed(after, at, late=True))
            if not (alarms or escalated or closed):  # end moved, reopened, peak or dm changed
                changes.append(BreachRevised(after, at))
        return changes

    def _current(self) -> dict[Key, BreachRecord]:
        """The breaches open at the newest reading, with their figures up to it."""
        return {b.key: b for b in self.rules.current(self.state)}

    def _now(self, b: BreachRecord, current: dict[Key, BreachRecord]) -> BreachRecord:
        """A breach as it stands at the newest reading: an open one with its peak and
        degree-minutes up to there (its events carry them as they were when it opened or
        escalated, which would understate a breach that kept warming), closed where its
        stretch ended if it did."""
        if b.end is not None:
            return b
        b = current.get(b.key, b)
        return b if self.until is None else b.ended(self.until)

    def _latest(self, key: Key) -> BreachRecord | None:
        """The breach as the events now say it is (None: no event names it any more)."""
        for ev in reversed(self.events):
            for e in reversed(ev):
                if e.breach.key == key:
                    return e.breach
        return self.settled.get(key)

    def _compact(self) -> None:
        """Forget samples older than the horizon, up to the last checkpoint before it."""
        if self.horizon_ms is None or not self.order:
            return
        cutoff = self.order[-1][0] - self.horizon_ms
        ci = bisect_left(self.ck_keys, (cutoff, -1))
        if ci == 0:
            return
        key = self.ck_keys[ci - 1]
        n = bisect_left(self.order, key) + 1
        for ev in self.events[:n]:
            for e in ev:
                self.settled[e.breach.key] = e.breach
        self.base, self.floor = self.ck_states[ci - 1], key
        del self.samples[:n], self.order[:n], self.events[:n]
        del self.ck_keys[:ci], self.ck_states[:ci]
        # Closed breaches wholly behind the horizon can no longer change: forget them.
        for table in (self.settled, self.view):
            for k in [k for k, b in table.items() if b.end is not None and b.end < cutoff]:
                del table[k]

    def breaches(self) -> list[BreachRecord]:
        """The current view, oldest first."""
        return sorted(self.view.values(), key=lambda b: (b.start, b.rule))

"""The judge registry: which engine judges which probe under which profile.

Each probe is judged by the product profile of the delivery under way in the compartment it
measures (else that compartment's default), and by the settings' profile while it measures
no compartment; a device's door by the settings' profile only. Where those stretches of
device time begin and end, and their profile, come from ``piece_at`` (given by the entry
point: coldtrace.deliveries.attach.profile_piece_at, asked at most every PIECE_REFRESH_MS per
probe), or ``pieces_at`` for the probes a batch builds engines for (profile_pieces_at).

One engine (alerts/engine.py) per (device, probe, stretch): on its creation it is rebuilt
from the stored breaches of its stretch and the stored readings (``history``), so a restart
in the middle of an excursion neither loses it nor opens it twice; a breach still open where
its stretch ends (the delivery starts or ends) is closed there, and late readings of a
stretch that is over never reopen it. Breaches stored under a profile their stretch no
longer has (a delivery's profile edited, or judged before the registry asked again) are
judged again by the stretch's profile: found again, or withdrawn. The engines a batch creates
(a fleet's, after a restart) read those breaches and readings for all its devices together
first (``prime``). Every change goes to ``emit``. No thread, no I/O of its own: samples in,
events out.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from alerts.engine import ProbeEngine
from alerts.readings import DOOR
from alerts.rules import (
    HOUR_MS,
    MINUTE_MS,
    BreachWithdrawn,
    Event,
    ProbeRules,
    RuleSet,
    Sample,
    door_rules,
)
from alerts.silence import RULE as SILENT_RULE
from alerts.store import record_of
from coldtrace.breaches import Breach
from coldtrace.profiles import Profile
from coldtrace.records import FAR_FUTURE_MS

# Which profile a probe is judged by changes when a delivery starts or ends: the registry
# asks again about a probe at most this often (rules share the cores with ingest).
PIECE_REFRESH_MS = 10_000
Piece = tuple[int, int, str | None]  # [start, end) of device time (ms), the profile there
PieceAt = Callable[[str, str, int], Piece]  # (device, probe, device ms) -> its stretch
PiecesAt = Callable[[list[tuple[str, str, int]]], list[Piece]]  # PieceAt of each, in order
Emit = Callable[[str, str, str, list[Event]], None]  # (device, probe, profile id, changes)
Contained = Callable[..., None]  # (device, probe, work, *args): Containment.run


class History(Protocol):
    """The stored readings an engine is rebuilt from (alerts/readings.StoredReadings)."""

    def samples(
        self, device: str, since: int, until: int | None = None, probe: str | None = None
    ) -> dict[str, list[Sample]]: ...

    def samples_of_devices(
        self, since: Mapping[str, int]
    ) -> dict[str, dict[str, list[Sample]]]: ...

    def heard_since(self, device: str, probe: str, since: int) -> bool: ...


@dataclass
class Judge:
    """The engine of one probe (or door) over one stretch of one profile."""

    profile: Profile
    end: int  # where its stretch ends (exclusive): breaches still open there close there
    engine: ProbeEngine


def lookback_ms(profile: Profile) -> int:
    """How much history rebuilds the state of every rule of the profile."""
    minutes = [profile.delay_min, profile.fault_delay_min, profile.stuck_min]
    minutes.append(profile.critical_after_min or 0)
    if profile.cumulative:
        minutes.append(profile.cumulative.window_h * 60)
    if profile.mkt:
        minutes.append(profile.mkt.window_h * 60)
    return round(max(minutes) * MINUTE_MS) + HOUR_MS


class JudgeRegistry:
    """``profiles``: id -> profile; ``settings_profile(device)``: the settings' profile of a
    device (None: none); ``known(devices)``: each one's stored breaches that may still change;
    ``horizon_ms``: how late a reading may arrive and still be judged; ``clock``: wall clock
    (s)."""

    def __init__(
        self,
        profiles: dict[str, Profile],
        settings_profile: Callable[[str], Profile | None],
        piece_at: PieceAt,
        pieces_at: PiecesAt,
        known: Callable[[Collection[str]], dict[str, list[Breach]]],
        history: History,
        emit: Emit,
        horizon_ms: int,
        clock: Callable[[], float],
    ) -> None:
        self.profiles = profiles
        self.settings_profile = settings_profile
        self.piece_at = piece_at
        self.pieces_at = pieces_at
        self.known = known
        self.history = history
        self.emit = emit
        self.horizon_ms = horizon_ms
        self.clock = clock
        # (device, probe or DOOR) -> start of its stretch -> its judge
        self.engines: dict[tuple[str, str], dict[int, Judge]] = {}
        # (device, probe) -> (clock ms when asked, the stretches known then)
        self.pieces: dict[tuple[str, str], tuple[int, list[Piece]]] = {}
        self.judged_by: dict[str, str] = {}  # device -> profile its probes were last judged by
        # Read by ``prime`` for the engines a batch creates, until ``release``: (device, probe
        # or DOOR) -> the device's stored breaches, taken by its first engine built; device ->
        # (from when, its stored samples per probe and DOOR from then on).
        self.primed_breaches: dict[tuple[str, str], list[Breach]] = {}
        self.primed_samples: dict[str, tuple[int, dict[str, list[Sample]]]] = {}

    def judge(self, device: str, key: str, samples: list[Sample]) -> None:
        """Each sample of one probe (or the door, key DOOR) to the engine of the stretch of
        one profile it falls in."""
        if key == DOOR:
            door = self._piece_of(device, key, 0)
            if door is not None:
                self._feed(device, key, door, samples)
            return
        samples = sorted(samples, key=lambda s: (s.ts, s.seq))
        i = 0
        while i < len(samples):
            piece = self._piece(device, key, samples[i].ts)
            j = bisect_left(samples, piece[1], lo=i, key=lambda s: s.ts)
            self._feed(device, key, piece, samples[i:j])
            i = j
        self._close_ended(device, key)

    def prime(self, batch: Mapping[str, Mapping[str, list[Sample]]], run: Contained) -> None:
        """Before a batch is judged (device -> probe or DOOR -> samples): read what the
        engines it creates are rebuilt from, the stored breaches and readings, for all its
        devices together (a few queries, not a few per probe: after a restart a fleet's
        first batches come together and each of its probes needs an engine). ``run`` plans
        each probe contained (Containment.run), as judging it is. What is read serves the
        first engine each probe builds until ``release``; others read their own."""
        fresh = {
            (device, key): min(s.ts for s in samples)
            for device, keys in batch.items()
            for key, samples in keys.items()
            if samples and (device, key) not in self.engines
        }
        # their stretches in one lookup, not one per probe (the door's is the settings')
        asks = [
            (d, k, ts) for (d, k), ts in fresh.items() if k != DOOR and not self._known(d, k, ts)
        ]
        for (device, key, _), piece in zip(asks, self.pieces_at(asks) if asks else [], strict=True):
            self._keep(device, key, piece)
        planned: dict[tuple[str, str], tuple[Piece, Profile, int]] = {}

        def plan(device: str, key: str, oldest: int) -> None:
            piece = self._piece_of(device, key, oldest)
            profile = None if piece is None else self._profile(device, piece)
            if piece is not None and profile is not None and self._rules(key, profile) is not None:
                planned[(device, key)] = (piece, profile, oldest)

        for (device, key), oldest in fresh.items():
            run(device, key, plan, device, key, oldest)
        if not planned:  # judged by no engine (no profile here): nothing to rebuild
            return
        breaches = self.known({device for device, _ in planned})
        since: dict[str, int] = {}

        def reach(device: str, key: str, piece: Piece, profile: Profile, oldest: int) -> None:
            self.primed_breaches[(device, key)] = breaches[device]
            *_, lo = self._rebuild_plan(device, key, piece, profile, oldest, breaches[device])
            since[device] = min(since.get(device, lo), lo)

        for (device, key), (piece, profile, oldest) in planned.items():
            run(device, key, reach, device, key, piece, profile, oldest)
        stored = self.history.samples_of_devices(since)
        self.primed_samples = {d: (since[d], samples) for d, samples in stored.items()}

    def release(self) -> None:
        """Drop what ``prime`` read: the next batch's engines read what is stored by then."""
        self.primed_breaches.clear()
        self.primed_samples.clear()

    def forget(self, device: str, key: str) -> None:
        """Drop a probe's engines and stretches (rebuilt from the store and InfluxDB when
        needed again)."""
        self.engines.pop((device, key), None)
        self.pieces.pop((device, key), None)

    def retire_idle(self) -> None:
        """Drop the engines with nothing inside the late-data horizon (a device gone quiet,
        or a probe's stretch of a delivery long over): memory stays bounded by the active
        fleet; an engine needed again is primed again (store and InfluxDB), so nothing it
        had open is lost or opened twice."""
        cutoff = int(self.clock() * 1000) - self.horizon_ms
        for key, judges in list(self.engines.items()):
            for start in [s for s, j in judges.items() if (j.engine.newest or 0) < cutoff]:
                del judges[start]
            if not judges:
                del self.engines[key]
                self.pieces.pop(key, None)

    def count(self) -> int:
        """Engines alive now."""
        return sum(len(judges) for judges in self.engines.values())

    def too_late(self) -> int:
        """Readings the live engines dropped as older than the late-data horizon."""
        return sum(j.engine.too_late for judges in self.engines.values() for j in judges.values())

    def _piece(self, device: str, probe: str, ts: int) -> Piece:
        """The stretch around ``ts`` and its profile, asked at most every PIECE_REFRESH_MS
        per probe."""
        known = self._known(device, probe, ts)
        if known is not None:
            return known
        piece = self.piece_at(device, probe, ts)
        self._keep(device, probe, piece)
        return piece

    def _asked(self, device: str, probe: str) -> tuple[int, list[Piece]]:
        """When the probe's stretches were last asked about (clock ms) and those known then,
        ([] when that was PIECE_REFRESH_MS ago or more: to be asked again)."""
        now_ms = int(self.clock() * 1000)
        asked, known = self.pieces.get((device, probe), (now_ms, []))
        return (asked, known) if 0 <= now_ms - asked < PIECE_REFRESH_MS else (now_ms, [])

    def _known(self, device: str, probe: str, ts: int) -> Piece | None:
        return next((p for p in self._asked(device, probe)[1] if p[0] <= ts < p[1]), None)

    def _keep(self, device: str, probe: str, piece: Piece) -> None:
        asked, known = self._asked(device, probe)
        self.pieces[(device, probe)] = (asked, [*known, piece])

    def _piece_of(self, device: str, key: str, ts: int) -> Piece | None:
        """The stretch around ``ts`` of a probe, or of the door (None: no door rules)."""
        if key != DOOR:
            return self._piece(device, key, ts)
        # A door belongs to no probe, so to no compartment: judged by the settings' profile
        # only (a van's door rules do not depend on what it carries).
        door_profile = self.settings_profile(device)
        return None if door_profile is None else (0, FAR_FUTURE_MS, door_profile.id)

    def _profile(self, device: str, piece: Piece) -> Profile | None:
        # no profile where it measures no compartment, or an unknown one: the settings'
        return self.profiles.get(piece[2] or "") or self.settings_profile(device)

    @staticmethod
    def _rules(key: str, profile: Profile) -> RuleSet | None:
        return door_rules(profile) if key == DOOR else ProbeRules(profile)

    def _feed(self, device: str, key: str, piece: Piece, samples: list[Sample]) -> None:
        start, end, _ = piece
        profile = self._profile(device, piece)
        if profile is None:
            return
        judges = self.engines.setdefault((device, key), {})
        judge = judges.get(start)
        if judge is None or judge.profile is not profile:  # new, or its delivery re-planned
            judge = self._new_judge(device, key, piece, profile, samples[0].ts)
            if judge is None:
                return
        judge.end = end  # a delivery in transit ends when it is delivered
        if key != DOOR:
            self.judged_by[device] = profile.id
        events = judge.engine.add(samples)
        if events:
            self.emit(device, key, profile.id, events)

    def _new_judge(
        self, device: str, key: str, piece: Piece, profile: Profile, oldest: int
    ) -> Judge | None:
        """The engine of one probe's stretch (or of the device's door, key DOOR), rebuilt
        from the store's breaches and InfluxDB's readings of that stretch, so state is as if
        the stage had never stopped."""
        start, end, _ = piece
        rules = self._rules(key, profile)
        if rules is None:
            return None
        breaches = self.primed_breaches.pop((device, key), None)
        if breaches is None:
            breaches = self.known([device])[device]
        mine, stale, since = self._rebuild_plan(device, key, piece, profile, oldest, breaches)
        engine = ProbeEngine(rules, self.horizon_ms, known=[record_of(b) for b in mine])
        judge = Judge(profile, end, engine)
        self.engines.setdefault((device, key), {})[start] = judge
        if key != DOOR and end < FAR_FUTURE_MS and self.history.heard_since(device, key, end):
            engine.close_at(end)  # over (e.g. after a restart): late samples reopen nothing
        until = None if end >= FAR_FUTURE_MS else end - 1
        events = engine.add(self._stored(device, key, since, until))
        if events:
            self.emit(device, key, profile.id, events)
        for b in stale:
            if (b.rule, b.start_ts) not in engine.view:
                at = max(b.start_ts, engine.newest or b.start_ts)
                self.emit(device, key, b.profile, [BreachWithdrawn(record_of(b), at)])
        return judge

    def _rebuild_plan(
        self,
        device: str,
        key: str,
        piece: Piece,
        profile: Profile,
        oldest: int,
        breaches: list[Breach],
    ) -> tuple[list[Breach], list[Breach], int]:
        """What rebuilds the engine of a stretch whose first new sample is at ``oldest``, of
        the device's stored ``breaches``: those of the stretch judged by its profile, those
        judged by another (stale: judged again), and from when (device ms) readings are
        read."""
        start, end, _ = piece
        stretch = [
            b
            for b in breaches
            if b.probe == key and b.rule != SILENT_RULE and start <= b.start_ts < end
        ]
        mine = [b for b in stretch if b.profile == profile.id]
        # Judged by another profile: the stretch's profile changed since (the delivery's
        # profile was edited, or the registry judged by what it knew before asking again).
        # Judged again here; withdrawn unless this profile finds them too.
        stale = [
            b
            for b in stretch
            if key != DOOR
            and b.profile != profile.id
            and (b.end_ts is None or b.end_ts >= oldest - self.horizon_ms)
        ]
        redo = [b.start_ts for b in mine if b.state == "open"] + [b.start_ts for b in stale]
        return mine, stale, max(start, min([*redo, oldest]) - lookback_ms(profile))

    def _stored(self, device: str, key: str, since: int, until: int | None) -> list[Sample]:
        """A probe's (or the door's) stored samples from ``since`` to ``until`` (device ms,
        inclusive): from what ``prime`` read when it reaches back that far, else read now."""
        primed = self.primed_samples.get(device)
        if primed is None or primed[0] > since:
            probe = None if key == DOOR else key
            return self.history.samples(device, since, until, probe).get(key, [])
        last = FAR_FUTURE_MS if until is None else until
        return [s for s in primed[1].get(key, []) if since <= s.ts <= last]

    def _close_ended(self, device: str, probe: str) -> None:
        """Breaches still open where their stretch ended (the probe has readings past it)
        close there: from then on the probe is judged by another profile."""
        judges = self.engines.get((device, probe))
        if not judges:  # no profile judges it (e.g. on no compartment, no settings profile)
            return
        newest = max((j.engine.newest or 0 for j in judges.values()), default=0)
        starts = sorted(judges)
        for start, after in zip(starts, [*starts[1:], FAR_FUTURE_MS], strict=True):
            judge = judges[start]
            # Stretches tile device time: one ends where the next begins at the latest (a
            # delivery in transit was open-ended when its stretch was last asked about).
            judge.end = min(judge.end, after)
            if judge.end > newest:
                continue
            if (judge.engine.newest or 0) >= judge.end:
                # It judged readings past its end, its stretch as known before the store was
                # asked again: rebuilt from its stretch alone (the next judge has those).
                oldest = judge.engine.samples[0].ts if judge.engine.samples else start
                piece = (start, judge.end, judge.profile.id)
                self._new_judge(device, probe, piece, judge.profile, oldest)
                continue
            events = judge.engine.close_at(judge.end)
            if events:
                self.emit(device, probe, judge.profile.id, events)

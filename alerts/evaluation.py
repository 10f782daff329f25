"""The evaluation of a stretch of stored readings against a product profile: the one
implementation behind ``coldtrace analyze`` (a logger file) and a delivery's certificate
(its compartment probes' readings, read back from InfluxDB). Pure: no clock, no I/O.

Each probe's samples run through the same ``ProbeEngine`` and ``ProbeRules`` the live rules
stage uses, after the same conversion (``evaluate`` applies it to whatever it is given): an
impossible value (85.0, -127.0, out of the plausible range: ``coldtrace.contract.probe_fault``)
is a probe fault, not a temperature, and a reading inside a configured suppression window
(defrost, loading) is flagged as such (``alerts.rules.in_windows``).

Figures are time-weighted on the rules' sample-and-hold basis (alerts/rules.py): a
temperature holds from its reading until the next one, the last one until the end of the
probe's span. A hold longer than the profile's ``fault_delay_min`` is a **data gap** and
counts for none of the figures: ``fault_delay_min`` is how long the profile lets a probe go
without a temperature before the rules call it a fault, so the record vouches for the product
no longer than that after a reading (the same bound for a probe that gave faults and for one
whose readings are missing), or one and a half logging intervals for a probe that logs less
often (``_hold_bound``). The rules run afresh after each data gap, so no rule counts the
time of a gap as in or out of range either. The time before a probe's first reading in its
span is a gap when it is longer than that bound, and uncovered either way (no value is
known yet).

Windows are ``[start, end]`` in epoch ms, both included, as delivery windows are everywhere
in deliveries/ (``deliveries.window.Segment``).
"""

from __future__ import annotations

import statistics
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import pairwise
from typing import Final, Literal

from alerts.engine import ProbeEngine
from alerts.rules import MINUTE_MS, BreachRecord, ProbeRules, Sample, Window, in_windows
from alerts.rules import mkt_celsius as _mkt_of_pairs
from coldtrace.contract import probe_fault
from coldtrace.profiles import Profile

ProbeKey = tuple[str, str]  # (device, probe); device "" for a column of a logger file
Verdict = Literal["compliant", "not_compliant", "incomplete"]
COMPLIANT: Final = "compliant"
NOT_COMPLIANT: Final = "not_compliant"
INCOMPLETE: Final = "incomplete"

# Rules about the product's temperature: one such breach (not suppressed) makes a delivery
# not compliant. The probe rules say the record cannot vouch for the product there: the
# delivery is incomplete unless a temperature breach already makes it not compliant.
TEMPERATURE_RULES: Final = frozenset({"excursion_high", "excursion_low", "cumulative", "mkt"})
PROBE_RULES: Final = frozenset({"probe_fault", "probe_stuck", "probe_jump"})
# Device-level live breaches (probe ""): a door left open past the profile's limit breaks
# the profile's rules (counted when the profile sets door_open_max_min); a device silent on
# the delivery (alerts/silence.py) means the record could not vouch for the goods then.
DOOR_RULE: Final = "door_open"
SILENCE_RULE: Final = "device_silent"
# When a probe has fewer than two readings there is no interval to take the median of.
DEFAULT_INTERVAL_MS: Final = MINUTE_MS


@dataclass(frozen=True, slots=True)
class Position:
    """A GPS fix: epoch ms, decimal degrees."""

    ts: int
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class LiveBreach:
    """A breach the live rules stage stored (alerts/store.py), as the evaluation compares it:
    ``probe`` "" for a device-level rule (device_silent, door_open)."""

    device: str
    probe: str
    rule: str
    start: int  # epoch ms, device time
    suppressed: bool = False
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """No temperature from ``device``/``probe`` over (start, end) for longer than the profile
    allows (epoch ms: the last reading before, the next one or the span's edge)."""

    device: str
    probe: str
    start: int
    end: int

    @property
    def minutes(self) -> float:
        return round((self.end - self.start) / MINUTE_MS, 2)


@dataclass(frozen=True, slots=True)
class ProbeFigures:
    """One probe's figures over its span. Temperatures in C, durations in minutes, ``None``
    where the probe gave no temperature. ``readings``: samples with a temperature; ``faults``:
    samples without one; ``first``/``last``: epoch ms of its first and last sample."""

    device: str
    probe: str
    readings: int
    faults: int
    first: int | None
    last: int | None
    min_c: float | None
    max_c: float | None
    mean_c: float | None  # time-weighted over the covered time
    in_range_min: float
    out_of_range_min: float
    in_range_pct: float | None  # of the covered time
    mkt_c: float | None  # over the covered time (USP <1160> / WHO TRS 961 formula)
    interval_ms: int  # median time between its samples: the sampling interval
    covered_min: float  # time its temperatures vouch for (its span less gaps and lead-in)


@dataclass(frozen=True, slots=True)
class Breach:
    """A breach the evaluation found on one probe: the rule's record, the MKT over it, where
    the vehicle was when it began (None without positions) and whether it counts."""

    device: str
    probe: str
    record: BreachRecord
    mkt_c: float | None
    where: Position | None

    @property
    def duration_min(self) -> float | None:
        """None while still open at the end of the window."""
        b = self.record
        return None if b.end is None else round((b.end - b.start) / MINUTE_MS, 2)


@dataclass(frozen=True, slots=True)
class Disagreement:
    """A breach one side found and the other did not: ``found_by`` the evaluation (from the
    stored readings) or the live rules stage (stored in the breach table)."""

    found_by: Literal["evaluation", "live"]
    device: str
    probe: str
    rule: str
    start: int
    live_id: int | None = None


@dataclass(frozen=True)
class Evaluation:
    """What a stretch of readings says under a profile. ``reasons``: why the verdict is not
    compliant, one line each."""

    profile: Profile
    start: int
    end: int
    probes: list[ProbeFigures]
    breaches: list[Breach]
    gaps: list[Gap]
    silent: list[ProbeKey]  # probes expected over the window that gave no reading at all
    disagreements: list[Disagreement]
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    matched: dict[tuple[str, str, str, int], int] = field(default_factory=dict)

    @property
    def readings(self) -> int:
        return sum(p.readings + p.faults for p in self.probes)

    @property
    def first(self) -> int | None:
        return min((p.first for p in self.probes if p.first is not None), default=None)

    @property
    def last(self) -> int | None:
        return max((p.last for p in self.probes if p.last is not None), default=None)

    @property
    def min_c(self) -> float | None:
        return min((p.min_c for p in self.probes if p.min_c is not None), default=None)

    @property
    def max_c(self) -> float | None:
        return max((p.max_c for p in self.probes if p.max_c is not None), default=None)

    @property
    def mean_c(self) -> float | None:
        """Time-weighted over every probe's covered time."""
        weighted = [(p.mean_c, p.covered_min) for p in self.probes if p.mean_c is not None]
        total = sum(w for _, w in weighted)
        if total <= 0:
            return weighted[0][0] if weighted else None
        return round(sum(m * w for m, w in weighted) / total, 2)

    @property
    def mkt_c(self) -> float | None:
        """The worst probe's: the product that saw the most heat."""
        return max((p.mkt_c for p in self.probes if p.mkt_c is not None), default=None)

    @property
    def out_of_range_min(self) -> float:
        """The worst probe's time out of range."""
        return max((p.out_of_range_min for p in self.probes), default=0.0)

    @property
    def in_range_min(self) -> float:
        """The worst probe's time in range (the least)."""
        return min((p.in_range_min for p in self.probes), default=0.0)


def iso(ts_ms: int | None) -> str | None:
    """Epoch ms as ISO 8601 UTC with a Z (None stays None)."""
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _held(
    points: Sequence[tuple[int, float]], end: int, max_hold_ms: int
) -> tuple[list[tuple[float, float]], list[tuple[int, int]]]:
    """(value, minutes) each temperature holds until the next one (the last until ``end``),
    and the holds longer than ``max_hold_ms``, which are gaps instead."""
    pairs: list[tuple[float, float]] = []
    gaps: list[tuple[int, int]] = []
    for i, (t, v) in enumerate(points):
        until = points[i + 1][0] if i + 1 < len(points) else max(end, t)
        if until - t > max_hold_ms:
            gaps.append((t, until))
        elif until > t:
            pairs.append((v, (until - t) / MINUTE_MS))
    return pairs, gaps


def _mkt(pairs: list[tuple[float, float]], points: Sequence[tuple[int, float]]) -> float | None:
    if not points:
        return None
    if sum(w for _, w in pairs) <= 0:
        return points[0][1]
    return round(_mkt_of_pairs(pairs), 2)


def _mean(pairs: list[tuple[float, float]], values: list[float]) -> float | None:
    """Time-weighted over the (value, minutes) held; a lone reading is its own mean."""
    total = sum(w for _, w in pairs)
    if total <= 0:
        return values[0] if values else None
    return round(sum(v * w for v, w in pairs) / total, 2)


def _interval(samples: Sequence[Sample]) -> int:
    steps = [b.ts - a.ts for a, b in pairwise(samples) if b.ts > a.ts]
    return round(statistics.median(steps)) if steps else DEFAULT_INTERVAL_MS


def _where(positions: Sequence[Position], ts: int) -> Position | None:
    """The last fix at or before ``ts`` (else the first one after it)."""
    if not positions:
        return None
    i = bisect_right([p.ts for p in positions], ts)
    return positions[i - 1] if i else positions[0]


def _hold_bound(samples: Sequence[Sample], max_hold_ms: int) -> int:
    """How long a temperature may hold before the rest is a data gap: the profile's
    ``fault_delay_min``, or one and a half of the probe's logging interval when it samples
    less often than that (a logger recording every 15 min vouches for those 15 min). The
    logging interval is the 90th percentile of its steps, so a logger's faster alarm
    sampling, or a few gaps, do not change it."""
    steps = sorted(b.ts - a.ts for a, b in pairwise(samples) if b.ts > a.ts)
    if not steps:
        return max_hold_ms
    return max(max_hold_ms, steps[int(0.9 * (len(steps) - 1))] * 3 // 2)


def _judged(samples: list[Sample], profile: Profile, cuts: list[int]) -> list[BreachRecord]:
    """The rules' breaches over ``samples``, run afresh after each data gap (``cuts``: the
    last reading before each gap): time the record does not cover is neither in nor out of
    range for any rule. A breach still open where a gap begins ends there; one open at the
    end carries its peak and degree-minutes up to the last reading."""
    records: list[BreachRecord] = []
    stamps = [s.ts for s in samples]
    begin = 0
    for cut in [*cuts, None]:
        stop = len(samples) if cut is None else bisect_right(stamps, cut)
        part = samples[begin:stop]
        begin = stop
        if not part:
            continue
        engine = ProbeEngine(ProbeRules(profile))
        engine.add(part)  # its view holds open breaches with their figures up to part[-1]
        for b in engine.view.values():
            if b.end is None and cut is not None:
                b = b.ended(part[-1].ts)
            records.append(b)
    return sorted(records, key=lambda r: (r.start, r.rule))


def _probe(
    key: ProbeKey,
    samples: list[Sample],
    profile: Profile,
    span: tuple[int, int],
    max_hold_ms: int,
) -> tuple[ProbeFigures, list[Breach], list[Gap]]:
    device, probe = key
    lo, hi = span
    max_hold_ms = _hold_bound(samples, max_hold_ms)
    points = [(s.ts, s.celsius) for s in samples if s.celsius is not None]
    pairs, holes = _held(points, hi, max_hold_ms)
    records = _judged(samples, profile, [a for a, _ in holes if a < points[-1][0]])
    if points and points[0][0] - lo > max_hold_ms:
        holes.insert(0, (lo, points[0][0]))
    if samples and not points:  # faults only: nothing vouches for the product in its span
        holes = [(lo, hi)]
    total = sum(w for _, w in pairs)
    out = sum(w for v, w in pairs if not profile.in_range(v))
    values = [v for _, v in points]
    figures = ProbeFigures(
        device,
        probe,
        len(points),
        len(samples) - len(points),
        samples[0].ts if samples else None,
        samples[-1].ts if samples else None,
        min(values, default=None),
        max(values, default=None),
        _mean(pairs, values),
        round(total - out, 2),
        round(out, 2),
        round(100 * (total - out) / total, 2) if total > 0 else None,
        _mkt(pairs, points),
        _interval(samples),
        round(total, 2),
    )
    breaches = []
    for b in records:
        inside = [(t, v) for t, v in points if b.start <= t < (b.end if b.end else hi + 1)]
        own, _ = _held(inside, b.end if b.end is not None else hi, max_hold_ms)
        breaches.append(Breach(device, probe, b, _mkt(own, inside), None))
    return figures, breaches, [Gap(device, probe, a, b) for a, b in holes]


def _compare(
    found: list[Breach],
    live: Sequence[LiveBreach],
    interval: Mapping[ProbeKey, int],
    gaps: Sequence[Gap] = (),
) -> tuple[list[Disagreement], dict[tuple[str, str, str, int], int]]:
    """Pair each evaluation breach with a live one of the same probe and rule whose start is
    within one sampling interval of it; what stays unpaired on either side disagrees. The
    evaluation runs the rules afresh after a data gap, the live stage does not: a breach
    the evaluation cut at a gap and found again from the first reading after it is the live
    breach's continuation, paired with it too."""
    unpaired = [b for b in live if b.probe]
    matched: dict[tuple[str, str, str, int], int] = {}
    disagreements: list[Disagreement] = []
    cut = {(g.device, g.probe, g.start): g.end for g in gaps}
    paired: dict[tuple[str, str, str], tuple[Breach, LiveBreach]] = {}
    for b in found:
        r = b.record
        tolerance = interval.get((b.device, b.probe), DEFAULT_INTERVAL_MS)
        twin = next(
            (
                x
                for x in unpaired
                if (x.device, x.probe, x.rule) == (b.device, b.probe, r.rule)
                and abs(x.start - r.start) <= tolerance
            ),
            None,
        )
        before = paired.get((b.device, b.probe, r.rule))
        if twin is None and before is not None:
            end = before[0].record.end
            if end is not None and cut.get((b.device, b.probe, end)) == r.start:
                twin = before[1]  # (already out of unpaired)
        if twin is None:
            disagreements.append(Disagreement("evaluation", b.device, b.probe, r.rule, r.start))
            continue
        if twin in unpaired:
            unpaired.remove(twin)
        paired[(b.device, b.probe, r.rule)] = (b, twin)
        if twin.id is not None:
            matched[(b.device, b.probe, r.rule, r.start)] = twin.id
    disagreements += [
        Disagreement("live", x.device, x.probe, x.rule, x.start, x.id) for x in unpaired
    ]
    return disagreements, matched


def _verdict(
    profile: Profile,
    breaches: list[Breach],
    live: Sequence[LiveBreach],
    gaps: list[Gap],
    silent: list[ProbeKey],
    disagreements: list[Disagreement],
) -> tuple[Verdict, list[str]]:
    """not_compliant on evidence the product left its range (a temperature breach, or the door
    open past the profile's limit); else incomplete when the record cannot vouch for the
    whole window (gaps, a silent probe or device, probe faults) or disagrees with the live
    alarms; else
    compliant. Evidence of a breach outranks a hole in the record."""
    name = {"": "device"}

    def who(device: str, probe: str) -> str:
        return "/".join(p for p in (device, name.get(probe, probe)) if p)

    bad = [
        f"{b.record.rule} on {who(b.device, b.probe)} from {iso(b.record.start)}"
        for b in breaches
        if b.record.rule in TEMPERATURE_RULES and not b.record.suppressed
    ]
    if profile.door_open_max_min is not None:
        bad += [
            f"door_open on {x.device} from {iso(x.start)}"
            for x in live
            if not x.probe and x.rule == DOOR_RULE and not x.suppressed
        ]
    unsure = [
        f"no temperature from {who(g.device, g.probe)} {iso(g.start)}..{iso(g.end)}" for g in gaps
    ]
    unsure += [f"{who(*k)} never reported" for k in silent]
    unsure += [
        f"{x.device} silent on the delivery from {iso(x.start)}"
        for x in live
        if not x.probe and x.rule == SILENCE_RULE and not x.suppressed
    ]
    unsure += [
        f"{b.record.rule} on {who(b.device, b.probe)} from {iso(b.record.start)}"
        for b in breaches
        if b.record.rule in PROBE_RULES and not b.record.suppressed
    ]
    unsure += [
        f"{d.rule} on {who(d.device, d.probe)} from {iso(d.start)} found by the "
        f"{'evaluation' if d.found_by == 'evaluation' else 'live rules stage'} only"
        for d in disagreements
    ]
    if bad:
        return NOT_COMPLIANT, bad + unsure
    if unsure:
        return INCOMPLETE, unsure
    return COMPLIANT, []


def evaluate(
    samples: Mapping[ProbeKey, Sequence[Sample]],
    profile: Profile,
    windows: Mapping[str, Sequence[Window]],
    start: int,
    end: int,
    *,
    spans: Mapping[ProbeKey, tuple[int, int]] | None = None,
    live: Sequence[LiveBreach] | None = None,
) -> Evaluation:
    """Judge every probe's samples in ``[start, end]`` (epoch ms, device time) by ``profile``.

    ``samples``: per (device, probe), the readings (any order; a repeated (ts, seq) counts
    once); every probe named is expected to report (one that gave nothing is ``silent``).
    ``windows``: suppression windows per device. ``spans``: a probe's own ``[start, end]``
    when it measured only part of the window (a device moved between vehicles). ``live``:
    the breaches the live rules stage stored over the window, compared with the
    evaluation's (probe ones) or counted as they are (device-level ones, probe ""); None
    when there is no live side (a logger file)."""
    max_hold_ms = round(profile.fault_delay_min * MINUTE_MS)
    probes: list[ProbeFigures] = []
    breaches: list[Breach] = []
    gaps: list[Gap] = []
    silent: list[ProbeKey] = []
    for key in samples:  # in the caller's order (a file's columns)
        lo, hi = (spans or {}).get(key, (start, end))
        device_windows = windows.get(key[0], ())
        mine = sorted(
            {
                (s.ts, s.seq): replace(
                    s,
                    celsius=None if probe_fault(s.celsius) else s.celsius,
                    suppress=s.suppress or in_windows(list(device_windows), s.ts),
                )
                for s in samples[key]
                if lo <= s.ts <= hi
            }.items()
        )
        if not mine:
            silent.append(key)
        figures, found, holes = _probe(key, [s for _, s in mine], profile, (lo, hi), max_hold_ms)
        probes.append(figures)
        breaches += found
        gaps += holes
    breaches.sort(key=lambda b: (b.record.start, b.device, b.probe, b.record.rule))
    disagreements: list[Disagreement] = []
    matched: dict[tuple[str, str, str, int], int] = {}
    if live is not None:
        intervals = {(p.device, p.probe): p.interval_ms for p in probes}
        disagreements, matched = _compare(breaches, live, intervals, gaps)
    verdict, reasons = _verdict(profile, breaches, live or (), gaps, silent, disagreements)
    return Evaluation(
        profile,
        start,
        end,
        probes,
        breaches,
        gaps,
        silent,
        disagreements,
        verdict,
        reasons,
        matched,
    )


def locate(e: Evaluation, fixes: Mapping[str, Sequence[Position]]) -> Evaluation:
    """The evaluation with where each breach began: its device's last fix at or before the
    breach's start (else the first one after it). ``fixes``: per device, sorted by time;
    a caller may pass only the fixes around the breaches' starts."""
    located = [
        replace(b, where=_where(fixes.get(b.device, ()), b.record.start)) for b in e.breaches
    ]
    return replace(e, breaches=located)

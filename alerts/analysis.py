"""Offline analysis of a logger file with the live engine (``coldtrace analyze``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from itertools import pairwise

from alerts.engine import ProbeEngine
from alerts.logger_csv import LoggerSeries
from alerts.profiles import Profile
from alerts.rules import (
    MINUTE_MS,
    BreachRecord,
    ProbeRules,
    Sample,
    Window,
    in_windows,
    mkt_celsius,
)

# Rules about the product's temperature: one breach of these makes a delivery not compliant.
# Probe rules (fault, stuck) say the record cannot be trusted there, which is reported too.
PROBE_RULES = frozenset({"probe_fault", "probe_stuck", "probe_jump"})


@dataclass(frozen=True)
class ProbeSummary:
    probe: str
    readings: int
    min_c: float | None
    max_c: float | None
    mean_c: float | None
    in_range_pct: float | None
    out_of_range_min: float
    mkt_c: float | None


@dataclass(frozen=True)
class Analysis:
    profile: Profile
    readings: int
    first: int
    last: int
    probes: list[ProbeSummary]
    breaches: list[tuple[str, BreachRecord, float | None]]  # probe, breach, MKT over it

    @property
    def compliant(self) -> bool:
        return all(b.suppressed for _, b, _ in self.breaches)

    @property
    def verdict(self) -> str:
        return "compliant" if self.compliant else "not compliant"

    @property
    def mkt_c(self) -> float | None:
        values = [p.mkt_c for p in self.probes if p.mkt_c is not None]
        return max(values) if values else None


def _held(points: list[tuple[int, float]], end: int | None = None) -> list[tuple[float, float]]:
    """(value, minutes) pairs, each value holding until the next point (or ``end``)."""
    pairs = [(v, (b - a) / MINUTE_MS) for (a, v), (b, _) in pairwise(points)]
    if end is not None and points and end > points[-1][0]:
        pairs.append((points[-1][1], (end - points[-1][0]) / MINUTE_MS))
    return pairs


def _mkt(points: list[tuple[int, float]], end: int | None = None) -> float | None:
    if not points:
        return None
    pairs = _held(points, end)
    if sum(w for _, w in pairs) <= 0:
        return points[0][1]
    return round(mkt_celsius(pairs), 2)


def analyze(
    series: LoggerSeries, profile: Profile, suppress: list[Window] | None = None
) -> Analysis:
    """``suppress``: configured windows (defrost, loading) whose excursions are recorded as
    suppressed, not counted against the verdict (unless critical)."""
    windows = suppress or []
    summaries: list[ProbeSummary] = []
    breaches: list[tuple[str, BreachRecord, float | None]] = []
    for probe in series.probes:
        samples = [
            Sample(ts, line, v, None, in_windows(windows, ts))
            for ts, line, v in zip(series.times, series.lines, series.values[probe], strict=True)
        ]
        engine = ProbeEngine(ProbeRules(profile))
        engine.add(samples)
        points = sorted((s.ts, s.celsius) for s in samples if s.celsius is not None)
        values = [v for _, v in points]
        held = _held(points)
        total = sum(w for _, w in held)
        out = sum(w for v, w in held if not profile.in_range(v))
        summaries.append(
            ProbeSummary(
                probe,
                len(values),
                min(values, default=None),
                max(values, default=None),
                round(sum(values) / len(values), 2) if values else None,
                round(100 * (total - out) / total, 2) if total > 0 else None,
                round(out, 2),
                _mkt(points),
            )
        )
        for b in engine.breaches():
            span = [(t, v) for t, v in points if b.start <= t < (b.end or points[-1][0] + 1)]
            breaches.append((probe, b, _mkt(span, b.end)))
    breaches.sort(key=lambda item: (item[1].start, item[0], item[1].rule))
    return Analysis(
        profile, len(series.times), min(series.times), max(series.times), summaries, breaches
    )


def parse_window(text: str, tz: tzinfo) -> Window:
    """``START/END`` in ISO 8601 (times without offset are in ``tz``) -> [start, end) ms."""
    try:
        start, end = (datetime.fromisoformat(part.strip()) for part in text.split("/"))
    except ValueError:
        raise ValueError(
            f"{text!r}: use START/END in ISO 8601, e.g. 2026-07-14T08:00/2026-07-14T08:30"
        ) from None
    start, end = (t if t.tzinfo else t.replace(tzinfo=tz) for t in (start, end))
    if end <= start:
        raise ValueError(f"{text!r}: the end must be after the start")
    return round(start.timestamp() * 1000), round(end.timestamp() * 1000)


def breach_verdict(b: BreachRecord) -> str:
    if b.suppressed:
        return "suppressed"
    return "probe fault" if b.rule in PROBE_RULES else "not compliant"


def iso(ts_ms: int | None) -> str | None:
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def as_json(a: Analysis) -> dict[str, object]:
    return {
        "profile": a.profile.id,
        "readings": a.readings,
        "first": iso(a.first),
        "last": iso(a.last),
        "mkt_c": a.mkt_c,
        "verdict": a.verdict,
        "probes": [p.__dict__ for p in a.probes],
        "breaches": [
            {
                "probe": probe,
                "rule": b.rule,
                "start": iso(b.start),
                "end": iso(b.end),
                "duration_min": None if b.end is None else round((b.end - b.start) / MINUTE_MS, 2),
                "peak_c": b.peak,
                "degree_minutes": round(b.degree_minutes, 2),
                "severity": b.severity,
                "mkt_c": mkt,
                "suppressed": b.suppressed,
                "verdict": breach_verdict(b),
            }
            for probe, b, mkt in a.breaches
        ],
    }

"""Offline analysis of a logger file (``coldtrace analyze``): the file's columns judged by
``alerts.evaluation``, the one evaluation certificates use too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from alerts.evaluation import (
    INCOMPLETE,
    NOT_COMPLIANT,
    PROBE_RULES,
    Breach,
    Evaluation,
    evaluate,
    iso,
)
from alerts.logger_csv import LoggerSeries
from alerts.rules import Sample, Window
from coldtrace.profiles import Profile

__all__ = [
    "Analysis",
    "analyze",
    "as_json",
    "breach_verdict",
    "iso",
    "local_iso",
    "parse_window",
]

# How the report words the evaluation's verdicts (kept from before it had three).
VERDICT_WORDS = {NOT_COMPLIANT: "not compliant", INCOMPLETE: "incomplete"}


@dataclass(frozen=True)
class Analysis:
    """A logger file's evaluation; ``rows``: the file's data rows; ``series``: the file as
    read (its zone, units, skipped columns)."""

    rows: int
    evaluation: Evaluation
    series: LoggerSeries

    @property
    def verdict(self) -> str:
        return VERDICT_WORDS.get(self.evaluation.verdict, self.evaluation.verdict)


def analyze(
    series: LoggerSeries, profile: Profile, suppress: list[Window] | None = None
) -> Analysis:
    """``suppress``: configured windows (defrost, loading) whose excursions are recorded as
    suppressed, not counted against the verdict (unless critical). The file's first to last
    row is the window; each column is one probe."""
    samples = {
        ("", probe): [
            Sample(ts, line, v)
            for ts, line, v in zip(series.times, series.lines, series.values[probe], strict=True)
        ]
        for probe in series.probes
    }
    first, last = min(series.times), max(series.times)
    evaluation = evaluate(samples, profile, {"": suppress or []}, first, last)
    return Analysis(len(series.times), evaluation, series)


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


def local_iso(ts_ms: int | None, zone: tzinfo) -> str | None:
    """Epoch ms as ISO 8601 in ``zone`` with its offset (2026-07-14T07:40:00+02:00)."""
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, zone).isoformat()


def breach_verdict(b: Breach) -> str:
    if b.record.suppressed:
        return "suppressed"
    return "probe fault" if b.record.rule in PROBE_RULES else "not compliant"


def as_json(a: Analysis) -> dict[str, object]:
    """The report: times in ISO 8601 with the offset of the file's zone, temperatures in C,
    durations in minutes."""
    e, zone = a.evaluation, a.series.zone

    def t(ts: int | None) -> str | None:
        return local_iso(ts, zone)

    return {
        "profile": e.profile.id,
        "readings": a.rows,
        "first": t(e.start),
        "last": t(e.end),
        "zone": str(zone),
        "mkt_c": e.mkt_c,
        "verdict": a.verdict,
        "probes": [
            {
                "probe": p.probe,
                "unit": a.series.units.get(p.probe),
                "readings": p.readings,
                "faults": p.faults,
                "min_c": p.min_c,
                "max_c": p.max_c,
                "mean_c": p.mean_c,
                "in_range_pct": p.in_range_pct,
                "in_range_min": p.in_range_min,
                "out_of_range_min": p.out_of_range_min,
                "mkt_c": p.mkt_c,
            }
            for p in e.probes
        ],
        "skipped": [{"column": name, "kind": kind} for name, kind in a.series.skipped],
        "breaches": [
            {
                "probe": b.probe,
                "rule": b.record.rule,
                "start": t(b.record.start),
                "end": t(b.record.end),
                "through": t(b.record.through),
                "duration_min": b.duration_min,
                "peak_c": b.record.peak,
                "degree_minutes": round(b.record.degree_minutes, 2),
                "severity": b.record.severity,
                "mkt_c": b.mkt_c,
                "suppressed": b.record.suppressed,
                "verdict": breach_verdict(b),
            }
            for b in e.breaches
        ],
        "gaps": [
            {"probe": g.probe, "start": t(g.start), "end": t(g.end), "minutes": g.minutes}
            for g in e.gaps
        ],
        "footer_lines": list(a.series.footer) if a.series.footer else None,
        "reasons": e.reasons,
    }

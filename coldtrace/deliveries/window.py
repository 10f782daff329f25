"""Which device probes measured a delivery's compartment, and when. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Segment:
    """Device `device`'s probe `probe` measured the compartment in [start, end] (epoch ms,
    both included)."""

    device: str
    probe: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Span:
    device: str
    probe: str
    valid_from: int
    valid_to: int | None  # excluded: from then on the probe measures something else


def segments(assignments: Iterable[Span], start: int, end: int) -> list[Segment]:
    """The assignments of the delivery's compartment clipped to its window [start, end]."""
    out = []
    for a in assignments:
        lo = max(start, a.valid_from)
        hi = end if a.valid_to is None else min(end, a.valid_to - 1)
        if lo <= hi:
            out.append(Segment(a.device, a.probe, lo, hi))
    return sorted(out, key=lambda s: (s.start, s.device, s.probe))


def device_spans(segs: Iterable[Segment]) -> list[tuple[str, int, int]]:
    """Per device, the overall span its probes cover (its GPS is the vehicle's then)."""
    spans: dict[str, tuple[int, int]] = {}
    for s in segs:
        lo, hi = spans.get(s.device, (s.start, s.end))
        spans[s.device] = (min(lo, s.start), max(hi, s.end))
    return sorted(((d, lo, hi) for d, (lo, hi) in spans.items()), key=lambda x: x[1])

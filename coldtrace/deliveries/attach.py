"""What belongs to a delivery: the probes that measured its compartment during its window,
and the breaches of those probes then."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from coldtrace.breaches import Breach
from coldtrace.deliveries.lifecycle import State
from coldtrace.deliveries.models import Assignment, Delivery
from coldtrace.deliveries.store import breach_links, window_end, window_start
from coldtrace.deliveries.trace import BreachMark
from coldtrace.deliveries.window import Segment, Span, segments
from coldtrace.records import FAR_FUTURE_MS

# Per SELECT of the batched lookups: devices in one IN (...), compartments OR-ed (each with
# its own span of time; SQLite parses an OR chain as a tree no deeper than 1,000).
DEVICES_PER_QUERY = 500
COMPARTMENTS_PER_QUERY = 200
Ask = tuple[str, str, int]  # (device, probe, device ms)
Piece = tuple[int, int, str | None]  # [start, end) of device time (ms), the profile there
Window = tuple[int, int, int, str]  # a delivery's window: start, end (included), its id, profile


def window(d: Delivery, now_ms: int) -> tuple[int, int]:
    """Started (or planned) until delivered or cancelled; until now while in transit; the
    plan before the start. The same rule as ``store.window_end`` in SQL."""
    start = d.started_ms if d.started_ms is not None else d.planned_start_ms
    if d.delivered_ms is not None:
        return start, d.delivered_ms
    if d.cancelled_ms is not None:
        return start, d.cancelled_ms
    return start, now_ms if d.state == State.in_transit else d.planned_end_ms


def delivery_segments(session: Session, d: Delivery, start: int, end: int) -> list[Segment]:
    rows = session.scalars(select(Assignment).where(Assignment.compartment_id == d.compartment_id))
    spans = [Span(a.device_id, a.probe, a.valid_from_ms, a.valid_to_ms) for a in rows]
    return segments(spans, start, end)


def breach_mark(b: Breach) -> BreachMark:
    return BreachMark(
        id=b.id,
        device=b.device,
        probe=b.probe,
        rule=b.rule,
        start=b.start_ts,
        end=b.end_ts,
        severity=b.severity,
        extra={
            "state": b.state,
            "profile": b.profile,
            "peak": b.peak,
            "degree_minutes": b.degree_minutes,
            "limit_c": b.limit_c,
            "suppressed": b.suppressed,
            "detected_late": b.detected_late,
        },
    )


def delivery_breaches(session: Session, d: Delivery) -> list[Breach]:
    rows = session.execute(
        breach_links().where(Delivery.id == d.id).order_by(Breach.start_ts, Breach.id)
    )
    return [r[0] for r in rows]


def profile_at(session: Session, device: str, probe: str, ts: int) -> str | None:
    """The product profile a device's probe is judged by at `ts` (device time): that of the
    delivery then under way in the compartment it measured, else the compartment's default;
    None when the probe measured no compartment then. (For the rules: alerts/.)"""
    assignment = session.scalars(
        select(Assignment).where(
            Assignment.device_id == device,
            Assignment.probe == probe,
            Assignment.valid_from_ms <= ts,
            func.coalesce(Assignment.valid_to_ms, FAR_FUTURE_MS) > ts,
        )
    ).first()
    if assignment is None:
        return None
    profile = session.scalars(
        select(Delivery.profile)
        .where(
            Delivery.compartment_id == assignment.compartment_id,
            # a delivery cancelled before it left carried nothing
            or_(Delivery.state != State.cancelled.value, Delivery.started_ms.is_not(None)),
            window_start() <= ts,
            window_end() >= ts,
        )
        .order_by(Delivery.id.desc())
    ).first()
    return profile or assignment.compartment.profile


def devices_on_active_delivery(session: Session, now_ms: int) -> dict[str, int]:
    """The devices that, at ``now_ms``, have a probe measuring a compartment whose delivery is
    in transit, each with since when (the later of the delivery's start and the probe's
    assignment; the earliest such time over its probes): the devices whose silence matters.
    (For the silence rule: alerts/.)"""
    rows = session.execute(
        select(Assignment.device_id, Assignment.valid_from_ms, window_start())
        .join(Delivery, Delivery.compartment_id == Assignment.compartment_id)
        .where(
            Delivery.state == State.in_transit.value,
            Assignment.valid_from_ms <= now_ms,
            func.coalesce(Assignment.valid_to_ms, FAR_FUTURE_MS) > now_ms,
        )
    )
    since: dict[str, int] = {}
    for device, assigned, started in rows:
        joined = max(assigned, started)
        since[device] = min(since.get(device, joined), joined)
    return since


def profile_piece_at(
    session: Session, device: str, probe: str, ts: int
) -> tuple[int, int, str | None]:
    """The stretch ``[start, end)`` of device time around ``ts`` over which ``profile_at``
    gives one answer, and that answer. Its bounds are the times where the answer may change
    (an assignment's or a delivery window's start, or the millisecond after a window's end),
    so every call for any time in it returns the same start: the rules key their state by it.
    Outside any assignment: the stretch between the neighbouring assignments, profile None.
    One ask of ``profile_pieces_at``. (For the rules: alerts/.)"""
    return profile_pieces_at(session, [(device, probe, ts)])[0]


def profile_pieces_at(session: Session, asks: Sequence[Ask]) -> list[Piece]:
    """``profile_piece_at`` of each ask, in order, from one SELECT per DEVICES_PER_QUERY
    devices and one per COMPARTMENTS_PER_QUERY compartments instead of up to four per ask
    (after a restart the rules stage asks about a fleet's probes at once): the asked
    devices' assignments, then the windows of the deliveries of the compartments the asked
    times fall in that overlap those assignments. The same answers as asking one by one: the
    bounds and the profile are picked from the same rows by the same rules, in Python."""
    assignments: dict[tuple[str, str], list[Assignment]] = defaultdict(list)
    devices = sorted({device for device, _, _ in asks})
    for i in range(0, len(devices), DEVICES_PER_QUERY):
        found = session.scalars(
            select(Assignment)
            .where(Assignment.device_id.in_(devices[i : i + DEVICES_PER_QUERY]))
            .order_by(Assignment.id)
        )
        for assignment in found:
            assignments[(assignment.device_id, assignment.probe)].append(assignment)
    here = [_assignment_at(assignments[(device, probe)], ts) for device, probe, ts in asks]
    # Per compartment, the span of device time its asked assignments cover: its deliveries
    # whose windows overlap none of them cannot bound or answer any ask.
    reach: dict[int, tuple[int, int]] = {}
    for at in here:
        if at is not None:
            lo, hi = reach.get(at.compartment_id, (at.valid_from_ms, _until(at)))
            reach[at.compartment_id] = (min(lo, at.valid_from_ms), max(hi, _until(at)))
    windows: dict[int, list[Window]] = defaultdict(list)
    compartments = sorted(reach)
    for i in range(0, len(compartments), COMPARTMENTS_PER_QUERY):
        rows = session.execute(
            select(
                Delivery.compartment_id,
                window_start(),
                window_end(),
                Delivery.id,
                Delivery.profile,
            ).where(
                or_(
                    *(
                        and_(
                            Delivery.compartment_id == c,
                            window_start() < reach[c][1],
                            window_end() >= reach[c][0],
                        )
                        for c in compartments[i : i + COMPARTMENTS_PER_QUERY]
                    )
                ),
                # a delivery cancelled before it left carried nothing
                or_(Delivery.state != State.cancelled.value, Delivery.started_ms.is_not(None)),
            )
        )
        for row in rows:
            windows[row.compartment_id].append((row[1], row[2], row.id, row.profile))
    return [
        _piece(assignments[(device, probe)], a, windows[a.compartment_id] if a else [], ts)
        for (device, probe, ts), a in zip(asks, here, strict=True)
    ]


def _until(a: Assignment) -> int:
    return a.valid_to_ms if a.valid_to_ms is not None else FAR_FUTURE_MS


def _assignment_at(assignments: list[Assignment], ts: int) -> Assignment | None:
    return next((a for a in assignments if a.valid_from_ms <= ts < _until(a)), None)


def _piece(
    assignments: list[Assignment],
    a: Assignment | None,
    windows: list[Window],
    ts: int,
) -> Piece:
    """``profile_piece_at`` of one probe at ``ts`` from its ``assignments``, the one ``a``
    at ``ts`` (None: none) and the windows (start, end included, delivery id, profile) of
    the deliveries of a's compartment (any superset of those overlapping ``a``)."""
    if a is None:
        return (
            max(
                (t for x in assignments if (t := x.valid_to_ms) is not None and t <= ts), default=0
            ),
            min(
                (x.valid_from_ms for x in assignments if x.valid_from_ms > ts),
                default=FAR_FUTURE_MS,
            ),
            None,
        )
    lo, hi = a.valid_from_ms, _until(a)
    mine = [w for w in windows if w[0] < hi and w[1] >= lo]
    # where the answer may change: a window's start, the millisecond after its end
    changes = [t for start, end, _, _ in mine for t in (start, end + 1)]
    start = max([lo, *(t for t in changes if t <= ts)])
    end = min([hi, *(t for t in changes if t > ts)])
    under_way = [(delivery, profile) for s, e, delivery, profile in mine if s <= ts <= e]
    profile = max(under_way)[1] if under_way else None
    return start, end, profile or a.compartment.profile


def any_assignment(session: Session) -> bool:
    """Whether any probe measures (or measured) a compartment: the rules have a profile to
    judge by even when the settings name none. (For the rules: alerts/.)"""
    return session.scalars(select(Assignment.id).limit(1)).first() is not None

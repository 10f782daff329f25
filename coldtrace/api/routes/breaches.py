"""Breaches found by the rules (alerts/), as attached to deliveries."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from coldtrace.api.auth import Anyone
from coldtrace.api.deps import DbSession
from coldtrace.api.routes.common import Limit, Offset, RowId, page
from coldtrace.api.schemas import BreachOut, Page, from_ms
from coldtrace.breaches import Breach
from coldtrace.deliveries.models import Delivery
from coldtrace.deliveries.store import NotFound, breach_links

router = APIRouter(prefix="/breaches", tags=["breaches"])


def breach_out(b: Breach, delivery_id: int | None) -> BreachOut:
    return BreachOut(
        id=b.id,
        delivery_id=delivery_id,
        device=b.device,
        probe=b.probe,
        rule=b.rule,
        profile=b.profile,
        severity=b.severity,
        state=b.state,
        start=from_ms(b.start_ts),
        end=from_ms(b.end_ts),
        through=from_ms(b.through_ts),
        duration_min=b.duration_min,
        peak=b.peak,
        degree_minutes=b.degree_minutes,
        limit_c=b.limit_c,
        suppressed=b.suppressed,
        detected_late=b.detected_late,
    )


@router.get("")
def list_breaches(
    session: DbSession,
    who: Anyone,
    state: str | None = None,
    device: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[BreachOut]:
    """The whole fleet's breaches (with the delivery each belongs to, if any); a customer's
    key sees only those of its own deliveries."""
    query = (
        select(Breach)
        if who.customer_id is None
        else breach_links().where(Delivery.customer_id == who.customer_id)
    )
    if state is not None:
        query = query.where(Breach.state == state)
    if device is not None:
        query = query.where(Breach.device == device)
    rows, total = page(session, query.order_by(Breach.start_ts.desc(), Breach.id), limit, offset)
    if who.customer_id is None:  # which delivery each belongs to (the first, if several)
        ids = [r[0].id for r in rows]
        links: dict[int, int] = {}
        for b, delivery_id, _ in session.execute(
            breach_links().where(Breach.id.in_(ids)).order_by(Delivery.id.desc())
        ):
            links[b.id] = delivery_id
        rows = [(r[0], links.get(r[0].id)) for r in rows]
    return Page(
        items=[breach_out(r[0], r[1]) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{breach_id}")
def get_breach(breach_id: RowId, session: DbSession, who: Anyone) -> BreachOut:
    query = breach_links().where(Breach.id == breach_id)
    if who.customer_id is not None:
        query = query.where(Delivery.customer_id == who.customer_id)
    row = session.execute(query.order_by(Delivery.id)).first()
    if row is not None:
        return breach_out(row[0], row[1])
    breach = session.get(Breach, breach_id) if who.customer_id is None else None
    if breach is None:
        raise NotFound("breach", breach_id)
    return breach_out(breach, None)

"""Helpers the routers share: paging, and rows turned into response models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Path, Query
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from coldtrace.api.auth import Principal
from coldtrace.api.schemas import MAX_ID, MAX_OFFSET, DeliveryOut, Place, from_ms
from coldtrace.deliveries.models import Delivery
from coldtrace.deliveries.store import NotFound

Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
# A row id in a path: what the stores can hold (a larger one answers 422, never 500).
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]


def page(
    session: Session, query: Select[*tuple[Any, ...]], limit: int, offset: int
) -> tuple[list[Any], int]:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = list(session.execute(query.limit(limit).offset(offset)).all())
    return rows, int(total or 0)


def visible_delivery(session: Session, principal: Principal, delivery_id: int) -> Delivery:
    """The delivery, if this caller may see it; a customer's key gets 404 for any other
    customer's delivery, exactly as for one that does not exist."""
    row = session.get(Delivery, delivery_id)
    if row is None or (
        principal.customer_id is not None and row.customer_id != principal.customer_id
    ):
        raise NotFound("delivery", delivery_id)
    return row


def delivery_out(d: Delivery, link: Callable[[Delivery], str | None] | None = None) -> DeliveryOut:
    """The response model of a delivery; ``link`` gives its dashboard link."""
    return DeliveryOut(
        id=d.id,
        reference=d.reference,
        customer_id=d.customer_id,
        profile=d.profile,
        vehicle_id=d.compartment.vehicle_id,
        compartment=d.compartment.name,
        pickup=Place(address=d.pickup_address, lat=d.pickup_lat, lon=d.pickup_lon),
        dropoff=Place(address=d.dropoff_address, lat=d.dropoff_lat, lon=d.dropoff_lon),
        planned_start=from_ms(d.planned_start_ms),
        planned_end=from_ms(d.planned_end_ms),
        state=d.state,
        started=from_ms(d.started_ms),
        start_source=d.start_source,
        delivered=from_ms(d.delivered_ms),
        end_source=d.end_source,
        closed=from_ms(d.closed_ms),
        cancelled=from_ms(d.cancelled_ms),
        created=from_ms(d.created_ms),
        dashboard_url=None if link is None else link(d),
    )

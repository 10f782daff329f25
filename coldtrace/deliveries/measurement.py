"""Deliveries going in and out of transit as points of measurement ``delivery``
(docs/storage-schema.md), for the Fleet now dashboard: the sum of ``in_transit`` per vehicle
and compartment is how many of their deliveries are in transit now. Pure."""

from __future__ import annotations

from coldtrace.deliveries.lifecycle import State
from coldtrace.deliveries.models import Delivery

_TAG_SPECIAL = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\\": "\\\\"})


def _tag(value: str) -> str:
    # Vehicle, compartment and customer ids come from the API: escaped, never trusted.
    return value.translate(_TAG_SPECIAL) or "-"


def transit_line(d: Delivery, before: str) -> str | None:
    """The point of delivery ``d``'s transition from state ``before`` (line protocol, ns):
    ``in_transit`` +1 when it started, -1 when it left transit (delivered, cancelled on the
    way); None for a transition that changes neither (planned -> cancelled, closing). At the
    transition's event time; its id in the nanoseconds, so two deliveries of one compartment
    starting in the same millisecond are two points."""
    if d.state == State.in_transit and before != State.in_transit:
        delta, at = 1, d.started_ms
    elif before == State.in_transit and d.state != State.in_transit:
        delta, at = -1, d.delivered_ms if d.delivered_ms is not None else d.cancelled_ms
    else:
        return None
    if at is None:  # not reached: a delivery in or out of transit has its time
        return None
    reference = (d.reference or "").replace("\\", "\\\\").replace('"', '\\"')
    return (
        f"delivery,vehicle={_tag(d.compartment.vehicle_id)},compartment="
        f"{_tag(d.compartment.name)},customer={_tag(d.customer_id)} in_transit={delta}i,"
        f'delivery={d.id}i,reference="{reference}",state="{d.state}" '
        f"{at * 1_000_000 + d.id % 1_000_000}"
    )

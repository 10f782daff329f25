"""The link from a delivery to its Delivery dashboard. Pure.

InfluxDB knows devices and probes, not vehicles: the link names the vehicle and compartment
(titles, the certificate panel) and the devices and probes that measured that compartment
in the delivery's window, with the profile's limits and the window as the time range."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from coldtrace.deliveries.attach import delivery_segments, window
from coldtrace.deliveries.models import Delivery
from coldtrace.profiles import Profile
from dashboards.definitions import DELIVERY_UID


def delivery_dashboard_url(
    grafana_url: str,
    vehicle: str,
    compartment: str,
    probes: Iterable[tuple[str, str]],
    limits_c: tuple[float | None, float | None],
    start_ms: int,
    end_ms: int,
) -> str:
    """``probes``: (device, probe) pairs; ``limits_c``: the profile's (low, high), C; one
    absent is drawn at the other (one line). Times: epoch ms."""
    pairs = sorted(set(probes))
    low, high = limits_c
    query: list[tuple[str, str | int]] = [
        ("orgId", 1),
        ("from", start_ms),
        ("to", end_ms),
        ("var-vehicle", vehicle),
        ("var-compartment", compartment),
        *[("var-device", d) for d in sorted({d for d, _ in pairs})],
        *[("var-probe", p) for p in sorted({p for _, p in pairs})],
    ]
    shown = [x for x in (low, high) if x is not None]
    if shown:
        query += [("var-low_c", f"{shown[0]:g}"), ("var-high_c", f"{shown[-1]:g}")]
    return f"{grafana_url.rstrip('/')}/d/{DELIVERY_UID}/delivery?{urlencode(query)}"


def delivery_link(
    grafana_url: str, session: Session, d: Delivery, profile: Profile, now_ms: int
) -> str:
    """The Delivery dashboard of delivery ``d``: its window (until now while in transit),
    the probes that measured its compartment then, its profile's limits."""
    start, end = window(d, now_ms)
    segments = delivery_segments(session, d, start, end)
    return delivery_dashboard_url(
        grafana_url,
        d.compartment.vehicle_id,
        d.compartment.name,
        [(s.device, s.probe) for s in segments],
        (profile.low_c, profile.high_c),
        start,
        end,
    )

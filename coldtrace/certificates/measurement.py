"""A delivery's current certificate as a point of measurement ``certificate``
(docs/storage-schema.md), for the Compliance dashboard: verdicts per customer and week, time
out of range per vehicle, MKT per delivery. Pure.

One point per delivery, at the end of its window (device time) with its vehicle,
compartment and customer as tags: a new version of the certificate rewrites the same point
(same tags and time), so the measurement always holds the current verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TAG_SPECIAL = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\\": "\\\\"})


def _tag(value: object) -> str:
    # Ids of vehicles and customers come from the API: escaped, never trusted.
    return str(value).translate(_TAG_SPECIAL) or "-"


def _string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def certificate_line(body: Mapping[str, Any], version: int, start_ms: int, end_ms: int) -> str:
    """The line protocol of the certificate ``body`` (coldtrace.certificates.content) issued as
    ``version``, for the delivery window [start_ms, end_ms] (epoch ms, device time).
    Fields: delivery (id), reference, version, verdict, profile, breaches (how many),
    in_range_min and out_of_range_min (min), mkt_c (C, when known), start and end (ms)."""
    tags = (
        f"certificate,customer={_tag(body['customer_id'])},vehicle={_tag(body['vehicle_id'])}"
        f",compartment={_tag(body['compartment'])}"
    )
    fields = [
        f"delivery={int(body['delivery_id'])}i",
        f"reference={_string(str(body['reference']))}",
        f"version={version}i",
        f"verdict={_string(str(body['verdict']))}",
        f"profile={_string(str(body['profile']))}",
        f"breaches={len(body['breaches'])}i",
        f"in_range_min={float(body['in_range_min'])}",
        f"out_of_range_min={float(body['out_of_range_min'])}",
        f"start={start_ms}i",
        f"end={end_ms}i",
    ]
    if body.get("mkt_c") is not None:
        fields.append(f"mkt_c={float(body['mkt_c'])}")
    return f"{tags} {','.join(fields)} {end_ms}"

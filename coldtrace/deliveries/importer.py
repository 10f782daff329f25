"""Deliveries from the ordering system's CSV export (one delivery a line). Pure parsing.

Columns (header line required): reference, customer_id, vehicle_id, compartment, profile
(may be empty: the compartment's), pickup_address, pickup_lat, pickup_lon, dropoff_address,
dropoff_lat, dropoff_lon, planned_start, planned_end (ISO 8601 with a UTC offset).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime

from coldtrace.deliveries.store import DeliveryPlan

COLUMNS = (
    "reference",
    "customer_id",
    "vehicle_id",
    "compartment",
    "profile",
    "pickup_address",
    "pickup_lat",
    "pickup_lon",
    "dropoff_address",
    "dropoff_lat",
    "dropoff_lon",
    "planned_start",
    "planned_end",
)


class BadRow(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


def _time_ms(value: str, column: str) -> int:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{column} {value!r} is not an ISO 8601 time") from None
    if dt.tzinfo is None:
        raise ValueError(f"{column} {value!r} has no UTC offset (add Z or +02:00)")
    return int(dt.timestamp() * 1000)


def _coordinate(value: str, column: str, bound: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{column} {value!r} is not a number") from None
    if not -bound <= number <= bound:
        raise ValueError(f"{column} {number} is outside -{bound}..{bound}")
    return number


def parse_plans(text: str) -> list[DeliveryPlan]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise BadRow(1, f"missing columns {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    plans = []
    for row in reader:
        line = reader.line_num
        try:
            values = {c: (row[c] or "").strip() for c in COLUMNS}
            for c in (
                "customer_id",
                "vehicle_id",
                "compartment",
                "pickup_address",
                "dropoff_address",
            ):
                if not values[c]:
                    raise ValueError(f"{c} is empty")
            plans.append(
                DeliveryPlan(
                    customer_id=values["customer_id"],
                    vehicle_id=values["vehicle_id"],
                    compartment=values["compartment"],
                    pickup_address=values["pickup_address"],
                    pickup_lat=_coordinate(values["pickup_lat"], "pickup_lat", 90),
                    pickup_lon=_coordinate(values["pickup_lon"], "pickup_lon", 180),
                    dropoff_address=values["dropoff_address"],
                    dropoff_lat=_coordinate(values["dropoff_lat"], "dropoff_lat", 90),
                    dropoff_lon=_coordinate(values["dropoff_lon"], "dropoff_lon", 180),
                    planned_start_ms=_time_ms(values["planned_start"], "planned_start"),
                    planned_end_ms=_time_ms(values["planned_end"], "planned_end"),
                    profile=values["profile"] or None,
                    reference=values["reference"] or None,
                )
            )
        except ValueError as exc:
            raise BadRow(line, str(exc)) from None
    return plans

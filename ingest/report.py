"""What landed of a run's devices, for `coldtrace demo`'s table: each device's books, from the
one implementation of sent = stored + held + rejected + missing (ingest/books.py, the same as
`coldtrace books`, the API and /metrics), and the range of its product probe."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from coldtrace.influx import InfluxClient, quote_string
from ingest.books import Books, load_books
from ingest.held import HeldReadings


@dataclass(frozen=True, slots=True)
class Landed:
    books: Books  # over the device's whole life
    product_c: tuple[float, float] | None  # (min, max) of its `product` probe; None: no reading


def landed(
    influx: InfluxClient, holding: HeldReadings, devices: Iterable[str]
) -> dict[str, Landed]:
    """Each device's books (its held seqs read from `holding`, the holding area ingest uses)
    and product range, by device. InfluxUnavailable, SQLAlchemyError as their clients raise
    them."""
    out = {}
    for device in devices:
        rows = influx.rows(
            "SELECT min(celsius), max(celsius) FROM temperature "
            f"WHERE probe = 'product' AND device = {quote_string(device)}"
        )
        out[device] = Landed(
            load_books(influx, device, held=holding.seqs(device)),
            (float(rows[0]["min"]), float(rows[0]["max"])) if rows else None,
        )
    return out

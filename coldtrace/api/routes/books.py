"""A device's books (issue 11): sent = stored + held + rejected + missing, each seq in exactly
one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from coldtrace.api.auth import Anyone
from coldtrace.api.deps import DbSession, Influx
from coldtrace.api.problems import Problem
from coldtrace.api.routes.fleet_data import found
from coldtrace.api.schemas import QueryInstant, to_ms
from coldtrace.deliveries.models import Device
from coldtrace.deliveries.store import NotFound
from ingest.books import load_books
from ingest.held import held_seqs

router = APIRouter()


class BooksOut(BaseModel):
    """Counts of readings; seqs inclusive (ingest/books.py, docs/wire-format.md)."""

    device: str
    sent: int
    stored: int
    held: int  # held for their clock on the server, not yet stored
    rejected: int
    missing: int
    dropped: int  # of missing: the device reported discarding them
    copies: int  # refused copies of a seq already stored or dead-lettered (not in sent)
    first_seq: int | None
    last_seq: int | None
    agrees: bool | None  # with what ingest wrote as it went; null over a time range


@router.get("/devices/{device_id}/books", tags=["devices"])
def device_books(
    device_id: str,
    session: DbSession,
    who: Anyone,
    influx: Influx,
    since: Annotated[
        QueryInstant | None, Query(description="readings of device time >= this (naive: UTC)")
    ] = None,
    until: Annotated[
        QueryInstant | None, Query(description="readings of device time before this (naive: UTC)")
    ] = None,
) -> BooksOut:
    """The device's books over its whole life, or over the readings of a device-time range
    (then the seqs between the range's first and last stored one). Staff only: a customer's
    key gets 404, as for anything not its own; 422 when ``since`` is not before ``until``."""
    if who.customer_id is not None:
        raise NotFound("device", device_id)
    found(session, Device, "device", device_id)
    since_ms = None if since is None else to_ms(since)
    until_ms = None if until is None else to_ms(until)
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        # an empty range: its books were all zeros, as a device that never spoke gets
        raise Problem(422, "since is not before until: no device time lies between them")
    books = load_books(influx, device_id, since_ms, until_ms, held=held_seqs(session, device_id))
    return BooksOut(**books.as_dict())

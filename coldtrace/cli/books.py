"""`coldtrace books`: a device's books, sent = stored + held + rejected + missing, each seq in
one."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from coldtrace.cli.output import emit
from coldtrace.settings import Settings


def _books_instant(text: str) -> int:
    """An ISO 8601 time (naive: UTC) -> epoch ms."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-12-01T08:00, naive is UTC)"
        ) from None
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


def cmd_books(settings: Settings, args: argparse.Namespace) -> int:
    """Print the books; exit 1 when a device's books disagree with what ingest wrote, 2 when
    --since is not before --until or the database does not answer."""
    from sqlalchemy.exc import SQLAlchemyError

    from coldtrace.influx import InfluxClient
    from ingest.books import load_books
    from ingest.held import HeldReadings

    if args.since is not None and args.until is not None and args.since >= args.until:
        # an empty range: every device's books were all zeros, with a note to check its id
        print(
            "error: --since is not before --until: no device time lies between them",
            file=sys.stderr,
        )
        return 2
    holding = HeldReadings(settings.sqlalchemy_url)
    influx = InfluxClient(settings)
    try:
        books = [
            load_books(influx, d, args.since, args.until, held=holding.seqs(d))
            for d in args.devices
        ]
    except SQLAlchemyError as exc:
        print(
            f"error: the database (held readings) did not answer ({type(exc).__name__}): "
            "set COLDTRACE_DATABASE_URL to ingest's, or create it (coldtrace db upgrade)",
            file=sys.stderr,
        )
        return 2
    finally:
        influx.close()
        holding.engine.dispose()
    emit([b.as_dict() for b in books], args.json)
    # All zeros and "agrees" is what a mistyped id gets too: say so, apart from the table.
    within = " in that time range" if args.since is not None or args.until is not None else ""
    for b in books:
        if b.sent == 0 and b.copies == 0:
            print(
                f"note: {b.device}: nothing from this device in InfluxDB{within}; check its "
                "id (coldtrace devices list)",
                file=sys.stderr,
            )
    return 1 if any(b.agrees is False for b in books) else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "books",
        help="a device's books: sent = stored + held + rejected + missing, each seq in one",
        description="Each device's readings, read back from InfluxDB and the database: stored, "
        "held (for their clock), rejected (dead-lettered), missing (of which dropped: reported "
        "by the device), copies refused (not in sent). Exit 1 when a device's books disagree "
        "with what ingest wrote.",
    )
    p.add_argument("devices", nargs="+", metavar="DEVICE")
    p.add_argument(
        "--since", type=_books_instant, help="readings of device time >= this (ISO 8601)"
    )
    p.add_argument("--until", type=_books_instant, help="readings of device time before this")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_books)

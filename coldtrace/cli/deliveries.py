"""`coldtrace deliveries`: import the ordering system's CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coldtrace.cli.args import count
from coldtrace.cli.operator import operator_store
from coldtrace.cli.output import emit, iso_time
from coldtrace.deliveries.lifecycle import State
from coldtrace.settings import Settings


def cmd_deliveries(settings: Settings, args: argparse.Namespace) -> int:
    from coldtrace.deliveries.importer import BadRow, parse_plans
    from coldtrace.deliveries.store import Conflict, NotFound

    try:
        plans = parse_plans(args.file.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    except BadRow as exc:  # all or nothing, as for a row the store refuses below
        print(f"error: {args.file}: {exc}; nothing imported", file=sys.stderr)
        return 2
    store = operator_store(settings)
    created = []
    for line, plan in enumerate(plans, start=2):
        try:
            created.append(store.create_delivery(plan))
        except (Conflict, NotFound) as exc:
            store.session.rollback()
            print(f"error: {args.file}: line {line}: {exc}; nothing imported", file=sys.stderr)
            return 2
    store.session.commit()
    rows: list[dict[str, object]] = [
        {"id": d.id, "reference": d.reference, "customer": d.customer_id, "state": d.state}
        for d in created
    ]
    emit(rows, args.json)
    return 0


def cmd_deliveries_list(settings: Settings, args: argparse.Namespace) -> int:
    """Deliveries, newest planned first, with their current certificate's verdict."""
    from sqlalchemy import select

    from coldtrace.deliveries.models import Certificate, Delivery

    session = operator_store(settings).session
    current = (
        select(Certificate.delivery_id, Certificate.version, Certificate.verdict)
        .where(Certificate.superseded_ms.is_(None))
        .subquery()
    )
    query = (
        select(Delivery, current.c.version, current.c.verdict)
        .outerjoin(current, current.c.delivery_id == Delivery.id)
        .order_by(Delivery.planned_start_ms.desc(), Delivery.id.desc())
        .limit(args.limit)
    )
    if args.state:
        query = query.where(Delivery.state == args.state)
    if args.customer:
        query = query.where(Delivery.customer_id == args.customer)
    rows: list[dict[str, object]] = [
        {
            "id": d.id,
            "reference": d.reference,
            "customer": d.customer_id,
            "profile": d.profile,
            "vehicle": d.compartment.vehicle_id,
            "state": d.state,
            "planned_start": iso_time(d.planned_start_ms),
            "certificate": version,
            "verdict": verdict,
        }
        for d, version, verdict in session.execute(query).all()
    ]
    emit(rows, args.json)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("deliveries", help="deliveries: import the ordering system's CSV, list")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("import", help="create deliveries from the ordering system's CSV")
    a.add_argument("file", type=Path, metavar="FILE.csv")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_deliveries)
    a = actions.add_parser("list", help="deliveries with their certificate's verdict")
    a.add_argument("--state", choices=[s.value for s in State], help="only those in this state")
    a.add_argument("--customer", help="only this customer's")
    a.add_argument("--limit", type=count, default=50, help="at most this many (default 50)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_deliveries_list)

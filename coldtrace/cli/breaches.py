"""`coldtrace breaches`: the breaches the rules stage stored, for operators in a terminal."""

from __future__ import annotations

import argparse

from coldtrace.cli.args import count
from coldtrace.cli.operator import operator_store
from coldtrace.cli.output import emit, iso_time
from coldtrace.settings import Settings


def cmd_breaches_list(settings: Settings, args: argparse.Namespace) -> int:
    """Breaches the live rules stage stored, newest first; an open one's figures (peak,
    degree-minutes, duration) as of ``through``, the newest reading judged."""
    from sqlalchemy import select

    from coldtrace.breaches import Breach

    session = operator_store(settings).session
    query = select(Breach).order_by(Breach.start_ts.desc(), Breach.id.desc()).limit(args.limit)
    if args.device:
        query = query.where(Breach.device == args.device)
    if args.open:
        query = query.where(Breach.end_ts.is_(None))
    rows: list[dict[str, object]] = [
        {
            "id": b.id,
            "device": b.device,
            "probe": b.probe,
            "rule": b.rule,
            "severity": b.severity,
            "state": b.state,
            "start": iso_time(b.start_ts),
            "end": iso_time(b.end_ts),
            "through": iso_time(b.through_ts),
            "duration_min": None if b.duration_min is None else round(b.duration_min, 1),
            "peak_c": b.peak,
            "degree_minutes": round(b.degree_minutes, 1),
            "suppressed": b.suppressed,
        }
        for b in session.scalars(query)
    ]
    emit(rows, args.json)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("breaches", help="breaches the rules stage stored")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("list", help="newest first")
    a.add_argument("--device", help="only this device's")
    a.add_argument("--open", action="store_true", help="only those still open")
    a.add_argument("--limit", type=count, default=50, help="at most this many (default 50)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_breaches_list)

"""`coldtrace services`: the local Mosquitto, InfluxDB and PostgreSQL of development and tests."""

from __future__ import annotations

import argparse
import sys

from coldtrace.cli.output import emit
from coldtrace.settings import Settings


def cmd_services(settings: Settings, args: argparse.Namespace) -> int:
    from coldtrace.devtools.services import DEFAULT_SERVICES, SERVICES, LocalServices

    unknown = [n for n in args.names if n not in SERVICES]
    if unknown:
        print(
            f"error: unknown service {unknown[0]!r} (one of {', '.join(SERVICES)})", file=sys.stderr
        )
        return 2
    services = LocalServices(settings)
    if args.action == "up":
        services.up(args.names or DEFAULT_SERVICES)
    elif args.action == "down":
        stopped = [n for n in args.names if services.stop(n)] if args.names else services.down()
        if not args.json:
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    emit(services.status(), args.json)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("services", help="local Mosquitto and InfluxDB for development and tests")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument(
        "names",
        nargs="*",
        default=[],  # without one argparse takes "*" as required: "required: action, SERVICE"
        metavar="SERVICE",
        help="mosquitto, influxdb, postgresql (up: default mosquitto and influxdb; down: "
        "default all)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_services)

"""`coldtrace ingest`: MQTT -> validate -> InfluxDB, acking only what is stored."""

from __future__ import annotations

import argparse
import sys

from coldtrace.settings import Settings


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from coldtrace.bootstrap import ingest_service
    from ingest import lock
    from ingest.consumer import BrokerRefused

    settings.mqtt_login  # noqa: B018 (its login, or ConfigError: before anything starts)
    try:
        held = lock.take(settings)  # before connecting: the broker session is the other's
    except lock.AlreadyRunning as exc:
        print(f"error: {exc}: stop it first (kill {exc.pid or '<pid>'})", file=sys.stderr)
        return 2
    try:
        return ingest_service(settings).run()
    except BrokerRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        held.close()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ingest", help="MQTT -> validate -> InfluxDB, acking only what is stored")
    p.set_defaults(func=cmd_ingest)

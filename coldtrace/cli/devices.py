"""`coldtrace devices`: the devices' broker accounts."""

from __future__ import annotations

import argparse
import re
import sys

from coldtrace.cli.output import emit
from coldtrace.contract import DEVICE_ID_PATTERN
from coldtrace.settings import Settings


def cmd_devices(settings: Settings, args: argparse.Namespace) -> int:
    from coldtrace.devtools.services import LocalServices, device_password

    if settings.env != "development":
        print(
            "error: `coldtrace devices add` manages the development broker only; in production "
            "add the device to your broker's password file (mosquitto_passwd)",
            file=sys.stderr,
        )
        return 2
    bad = [d for d in args.device_ids if not re.fullmatch(DEVICE_ID_PATTERN, d)]
    if bad:
        print(
            f"error: invalid device id {bad[0]!r}: use 1-64 of A-Z a-z 0-9 _ . - "
            "(starting with a letter or digit)",
            file=sys.stderr,
        )
        return 2
    LocalServices(settings).register_devices(args.device_ids)
    rows: list[dict[str, object]] = [
        {"device": d, "username": d, "password": device_password(settings, d)}
        for d in args.device_ids
    ]
    emit(rows, args.json)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("devices", help="broker accounts of devices (development broker)")
    p.add_argument("action", choices=["add"])
    p.add_argument("device_ids", nargs="+", metavar="DEVICE_ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_devices)

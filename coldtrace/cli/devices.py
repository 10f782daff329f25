"""`coldtrace devices`: device and gateway accounts (the registry row and the broker account
together, coldtrace/deliveries/accounts.py) and provisioning a box over USB serial
(coldtrace/provision.py). The command group's own module (coldtrace/cli/__init__.py lists it)."""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coldtrace.cli.operator import operator_store
from coldtrace.cli.output import emit
from coldtrace.contract import DEVICE_ID_PATTERN
from coldtrace.settings import Settings

if TYPE_CHECKING:
    from coldtrace.deliveries.accounts import DeviceAccounts

SHOWN_ONCE = "the password is shown only now: give it to the device; the broker keeps a hash"


def _accounts(settings: Settings) -> DeviceAccounts:
    from coldtrace.broker_accounts import BrokerAccounts
    from coldtrace.deliveries.accounts import DeviceAccounts

    broker = BrokerAccounts(settings.broker_files)  # ConfigError first: before the store
    return DeviceAccounts(operator_store(settings), broker, settings.broker_own_accounts)


def _device_id(value: str) -> str:
    if not re.fullmatch(DEVICE_ID_PATTERN, value):
        raise argparse.ArgumentTypeError(
            f"invalid device id {value!r}: use 1-64 of A-Z a-z 0-9 _ . - (starting with a "
            "letter or digit)"
        )
    return value


def _device_ids(value: str) -> list[str]:
    return [_device_id(v.strip()) for v in value.split(",") if v.strip()]


def cmd_devices(settings: Settings, args: argparse.Namespace) -> int:
    from coldtrace.deliveries.store import Conflict, NotFound
    from coldtrace.provision import ProvisionError

    try:
        if args.action in ("provision", "info"):
            return _board(settings, args)
        return _account(settings, args)
    except (Conflict, NotFound, ProvisionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _account(settings: Settings, args: argparse.Namespace) -> int:

    accounts = _accounts(settings)
    session = accounts.store.session
    if args.action == "add":
        if args.gateway and args.carries is None:
            print("error: --gateway: name the boxes it carries with --carries", file=sys.stderr)
            return 2
        if args.carries is not None and len(args.device_ids) > 1:
            print("error: --carries: add one gateway at a time", file=sys.stderr)
            return 2
        rows: list[dict[str, object]] = []
        for device in args.device_ids:
            row, password = accounts.add(device, args.label, args.carries)
            rows.append({"device": row.id, "carries": _carries(row.carries), "password": password})
        session.commit()
        emit(rows, args.json)
        if not args.json:
            print(f"\n{SHOWN_ONCE}", file=sys.stderr)
    elif args.action == "rotate":
        password = accounts.rotate(args.device_id)
        session.commit()
        emit([{"device": args.device_id, "password": password}], args.json)
        if not args.json:
            print(f"\n{SHOWN_ONCE}; the old one is refused from now on", file=sys.stderr)
    elif args.action == "disable":
        accounts.disable(args.device_id)
        session.commit()
        print(f"device {args.device_id} disabled: its broker login is refused; its row stays")
    else:
        listed: list[dict[str, object]] = [
            {
                "device": r.device.id,
                "kind": "device" if r.device.carries is None else "gateway",
                "carries": _carries(r.device.carries),
                "login": r.state,
                "label": r.device.label,
                "created": _iso(r.device.created_ms),
                "disabled": None if r.device.disabled_ms is None else _iso(r.device.disabled_ms),
            }
            for r in accounts.list()
        ]
        emit(listed, args.json)
    if args.action != "list" and not accounts.reloaded:
        print(
            "note: no broker running here to reload; it reads the change at its next start or "
            "SIGHUP (docs/security.md)",
            file=sys.stderr,
        )
    return 0


def _carries(boxes: list[str] | None) -> str | None:
    return None if boxes is None else ",".join(boxes)


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _board(settings: Settings, args: argparse.Namespace) -> int:
    from coldtrace import provision

    soft_reset = not args.no_soft_reset
    if args.action == "info":
        box = provision.info(args.port, soft_reset)
        info: dict[str, Any] = {"version": box.version, "config": box.config, "files": box.files}
        if args.json:
            import json

            print(json.dumps(info, indent=2))
        else:
            cfg = box.config or {}
            mqtt = cfg.get("mqtt", {})
            emit(
                [
                    {
                        "device": cfg.get("device"),
                        "firmware": box.version,
                        "uplink": cfg.get("uplink", "wifi"),
                        "broker": f"{mqtt.get('host')}:{mqtt.get('port')}" if mqtt else None,
                        "tls": mqtt.get("tls"),
                        "files": len(box.files),
                    }
                ],
                False,
            )
        return 0
    if not args.tethered and not args.wifi_ssid:
        print("error: give --wifi-ssid and --wifi-password, or --tethered", file=sys.stderr)
        return 2
    rotate = args.rotate and not args.tethered
    config = provision.BoxConfig(
        device=args.device_id,
        password="" if args.tethered or rotate else _password(args),
        broker_host=args.broker_host or settings.mqtt_host,
        broker_port=args.broker_port
        or (settings.mqtt_tls_port if args.ca is not None else settings.mqtt_port),
        wifi_ssid=args.wifi_ssid,
        wifi_password=args.wifi_password,
        tethered=args.tethered,
        ca_der=None if args.ca is None else provision.ca_der(args.ca),
        probes=dict(args.probe),
    )
    version = provision.provision(
        args.port,
        config,
        args.firmware or provision.FIRMWARE_DIR,
        soft_reset,
        lambda path: print(f"  {path}", file=sys.stderr),
        (lambda: _rotated(settings, args.device_id)) if rotate else None,
    )
    print(f"box {args.device_id} provisioned on {args.port}: firmware {version}")
    return 0


def _rotated(settings: Settings, device: str) -> str:
    """A new broker password for the box (--rotate); its old one is refused from now on."""
    accounts = _accounts(settings)
    password = accounts.rotate(device)
    accounts.store.session.commit()
    return password


def _password(args: argparse.Namespace) -> str:
    """The box's broker password, read from stdin (a prompt on a terminal), e.g. piped from
    `coldtrace devices add --json`."""
    if sys.stdin.isatty():
        return getpass.getpass(f"broker password of {args.device_id}: ")
    return sys.stdin.readline().strip()


def _probe(value: str) -> tuple[str, str]:
    rom, sep, name = value.partition("=")
    if not sep or not re.fullmatch(r"[0-9a-fA-F]{16}", rom) or not name:
        raise argparse.ArgumentTypeError(f"{value!r}: give ROM=probe, e.g. 28aa000000000001=air")
    return rom.lower(), name


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "devices", help="device and gateway accounts (registry + broker); provision a box"
    )
    actions = p.add_subparsers(dest="action", required=True)

    a = actions.add_parser("add", help="register devices with broker accounts (password once)")
    a.add_argument("device_ids", nargs="+", type=_device_id, metavar="DEVICE_ID")
    a.add_argument("--label")
    a.add_argument(
        "--carries",
        type=_device_ids,
        metavar="BOX,BOX",
        help="a gateway's account: it publishes for these registered boxes",
    )
    a.add_argument("--gateway", action="store_true", help="a gateway's account (needs --carries)")
    a.add_argument("--json", action="store_true")

    a = actions.add_parser("list", help="every device and gateway with its login state")
    a.add_argument("--json", action="store_true")

    a = actions.add_parser("rotate", help="a new broker password (shown once); the old fails")
    a.add_argument("device_id", type=_device_id)
    a.add_argument("--json", action="store_true")

    a = actions.add_parser("disable", help="refuse the device's login; keep its row and history")
    a.add_argument("device_id", type=_device_id)

    a = actions.add_parser(
        "provision", help="write the firmware and a box's config over its USB serial REPL"
    )
    a.add_argument("--port", required=True, help="the box's serial port, e.g. /dev/ttyUSB0")
    a.add_argument("--device-id", required=True, type=_device_id)
    a.add_argument(
        "--rotate",
        action="store_true",
        help="give it a new broker password (else the password is read from stdin)",
    )
    a.add_argument("--tethered", action="store_true", help="uplink over UART to a gateway")
    a.add_argument("--wifi-ssid")
    a.add_argument("--wifi-password")
    a.add_argument("--broker-host", help="as the box reaches it (default COLDTRACE_MQTT_HOST)")
    a.add_argument("--broker-port", type=int)
    a.add_argument("--ca", type=Path, help="the broker's CA certificate (PEM or DER): TLS")
    a.add_argument("--probe", type=_probe, action="append", default=[], metavar="ROM=PROBE")
    a.add_argument("--firmware", type=Path, default=None, help="default: the checkout's")
    a.add_argument(
        "--no-soft-reset",
        action="store_true",
        help="do not soft-reset on entering the REPL (MicroPython's unix port has none)",
    )

    a = actions.add_parser("info", help="read back a box's config and firmware version")
    a.add_argument("--port", required=True)
    a.add_argument("--no-soft-reset", action="store_true")
    a.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_devices)

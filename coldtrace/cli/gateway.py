"""`coldtrace gateway run|status`: the in-cab gateway (gateway/, docs/gateway.md).

Its own module with a `register(subparsers)`, as the CLI's layout (issue 14) asks of each
command group."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from coldtrace.settings import Settings

if TYPE_CHECKING:
    from gateway.config import GatewayConfig


def cmd_gateway(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load

    try:
        cfg = load(Path(args.config))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.action == "run":
        return _run(cfg)
    return _status(cfg.spool, args.json)


def _run(cfg: GatewayConfig) -> int:
    from gateway.service import Gateway, read_password
    from gateway.spool import SpoolBusy

    try:
        password = read_password(cfg.broker.password_file)
    except (OSError, IndexError) as exc:
        print(
            f"error: cannot read the broker password from {cfg.broker.password_file} ({exc}): "
            "put the gateway account's password there (coldtrace devices add)",
            file=sys.stderr,
        )
        return 2
    try:
        gateway = Gateway(cfg, password)
    except SpoolBusy as exc:
        print(f"error: {exc}: stop it first (kill {exc.pid or '<pid>'})", file=sys.stderr)
        return 2

    def stop(signum: int, frame: FrameType | None) -> None:
        gateway.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    gateway.run()
    return 0


def _status(spool: Path, as_json: bool) -> int:
    from coldtrace.cli.output import table
    from gateway.spool import read_status

    try:
        status = read_status(spool)
    except FileNotFoundError:
        print(
            f"error: no spool at {spool}: start the gateway (coldtrace gateway run)",
            file=sys.stderr,
        )
        return 2
    if as_json:
        print(json.dumps(status, indent=2))
        return 0
    age = status["oldest_unacked_age_s"]
    print(
        f"spool: {status['depth']} readings not yet acknowledged"
        + ("" if age is None else f", the oldest spooled {age} s ago")
        + f"; {status['dropped_total']} dropped (spool full) since it was made"
    )
    print()
    print(table(status["devices"]))
    print()
    ports = [{"port": name, **counters} for name, counters in status["ports"].items()]
    keys = sorted({k for p in ports for k in p} - {"port", "path", "kind"})
    print(
        table(
            [
                {"port": p["port"], "kind": p["kind"], **{k: p.get(k, 0) for k in keys}}
                for p in ports
            ]
        )
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `gateway` to the CLI's subcommands."""
    p = sub.add_parser("gateway", help="the in-cab gateway: serial boxes, GNSS, loggers -> MQTT")
    actions = p.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="read the serial ports, spool, publish")
    run.add_argument("--config", required=True, help="the gateway's TOML file")
    status = actions.add_parser("status", help="spool depth, oldest unacked age, port counters")
    status.add_argument("--config", required=True, help="the gateway's TOML file")
    status.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gateway, generate_secrets=False)

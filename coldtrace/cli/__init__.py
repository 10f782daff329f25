"""`coldtrace`: one command, a subcommand per component, each in its own module here with a
`register(subparsers)`. Settings are built here, once, and passed to the command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from coldtrace.cli import (
    analyze,
    api,
    books,
    breaches,
    certificates,
    dashboards,
    db,
    deliveries,
    demo,
    devices,
    gateway,
    ingest,
    keys,
    schema,
    services,
    simulate,
)
from coldtrace.settings import ConfigError, Settings, load_settings

# The order `coldtrace --help` lists them in.
COMMANDS = (
    services,
    dashboards,
    gateway,
    ingest,
    devices,
    simulate,
    demo,
    analyze,
    db,
    api,
    keys,
    deliveries,
    breaches,
    certificates,
    books,
    schema,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coldtrace", description="coldtrace: cold-chain telemetry pipeline"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # Libraries whose INFO lines are their own progress, not news to the user (Alembic's:
    # a dozen lines on every command that opens the store; `db upgrade` shows its own).
    for chatty in ("httpx", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        # A command that needs no secrets says so (set_defaults(generate_secrets=False)):
        # run anywhere, it leaves no run dir with a fresh signing key behind.
        settings = load_settings(generate_secrets=getattr(args, "generate_secrets", True))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("COLDTRACE_RUN_DIR", str(settings.run_dir))
    try:
        result: int = args.func(settings, args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
    except ConfigError as exc:  # one only this command checks: signing key, profiles, ports
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`coldtrace ... | head -1`): nothing more to say to it, and
        # nothing left for Python to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        said = _one_line(exc, settings)
        if said is None:
            raise
        print(said, file=sys.stderr)
        return 2
    return result


def _one_line(exc: Exception, settings: Settings) -> str | None:
    """The one line for an error that already says what to do (a local service that cannot
    start, its port taken), InfluxDB or a relational store that cannot be reached; else None."""
    from coldtrace.devtools.services import ServiceError
    from coldtrace.influx import InfluxUnavailable

    if isinstance(exc, ServiceError):
        return f"error: {exc}"
    if isinstance(exc, InfluxUnavailable):
        return (
            f"error: InfluxDB at {settings.influx_url} did not answer ({exc}): start it "
            "(coldtrace services up) or set COLDTRACE_INFLUX_URL"
        )
    return _database_unreachable(exc, settings)


def _database_unreachable(exc: Exception, settings: Settings) -> str | None:
    """The one line for a relational store that cannot be reached or opened, else None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    if not isinstance(exc, OperationalError):
        return None
    url = make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    return (
        f"error: database {url}: {reason}: start it (local PostgreSQL: coldtrace services up "
        "postgresql) or set COLDTRACE_DATABASE_URL"
    )

"""`coldtrace db`: migrate the relational store to the newest schema."""

from __future__ import annotations

import argparse
import logging

from coldtrace.settings import Settings


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from coldtrace.db import upgrade

    # Each migration it runs, by name (the CLI quietens Alembic for the other commands).
    logging.getLogger("alembic.runtime.migration").setLevel(logging.INFO)
    upgrade(settings.migration_url, settings.app_role)
    print(f"database at head: {settings.sqlalchemy_url.split('@')[-1]}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("db", help="the relational store: migrate it to the newest schema")
    p.add_argument("action", choices=["upgrade"])
    p.set_defaults(func=cmd_db)

"""The operator's session on the relational store, for the commands that change it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from coldtrace.settings import Settings

if TYPE_CHECKING:
    from coldtrace.deliveries.store import Store


def operator_store(settings: Settings) -> Store:
    """A session on the store, acting as the local operator (named in the audit log);
    ConfigError naming the setting when the profiles do not load."""
    import getpass

    from sqlalchemy.orm import Session

    from coldtrace.bootstrap import checked_profiles
    from coldtrace.db import make_engine, upgrade
    from coldtrace.deliveries.store import Store

    upgrade(settings.sqlalchemy_url)
    return Store(
        Session(make_engine(settings.sqlalchemy_url)),
        f"cli:{getpass.getuser()}",
        profiles=frozenset(checked_profiles(settings)),
    )

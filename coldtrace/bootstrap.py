"""The composition root: every process of coldtrace is built here, from one Settings object.

- ``ingest_service``: `coldtrace ingest`, with its after-store observers in order (the rules
  stage, ``rules_observer``);
- ``rules_stage``: the rules stage, given what it needs of deliveries as functions;
- ``api_app``: `coldtrace api`, the API app with its background delivery sweep, and
  ``api_collector``, its garbage collector's settings.

The configuration a process depends on is checked once, here, before anything starts, and a
mistake is a ConfigError naming the setting (the CLI prints it as one line). This is the one
module that imports both ingest and alerts, and both alerts and deliveries: each layer below
takes what it needs from above as arguments (docs/architecture.md).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from alerts.stage import DeliveryLookups, RulesObserver, RulesStage
from coldtrace import signing
from coldtrace.db import make_engine, upgrade
from coldtrace.deliveries.attach import (
    any_assignment,
    devices_on_active_delivery,
    profile_piece_at,
    profile_pieces_at,
)
from coldtrace.profiles import Profile, ProfileError, load_profiles
from coldtrace.settings import ENV_PREFIX, ConfigError, Settings
from ingest.service import IngestService

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)
# What the rules stage asks of deliveries (alerts sits below deliveries).
DELIVERIES = DeliveryLookups(profile_piece_at, profile_pieces_at, devices_on_active_delivery)


def checked_profiles(settings: Settings) -> dict[str, Profile]:
    """The product profiles (shipped, plus COLDTRACE_ALERTS_PROFILES_FILE): the file must
    load and every profile the settings name must exist; ConfigError naming the setting."""
    try:
        profiles = load_profiles(settings.alerts_profiles_file)
    except ProfileError as exc:
        raise ConfigError(f"{ENV_PREFIX}ALERTS_PROFILES_FILE: {exc}") from None
    for name, pid in [("ALERTS_DEFAULT_PROFILE", settings.alerts_default_profile)] + [
        ("ALERTS_DEVICE_PROFILES", p) for p in settings.alerts_device_profiles.values()
    ]:
        if pid is not None and pid not in profiles:
            known = ", ".join(sorted(profiles))
            raise ConfigError(f"{ENV_PREFIX}{name}: unknown profile {pid!r} ({known})")
    return profiles


def rules_stage(
    settings: Settings,
    clock: Callable[[], float] = time.time,
    profiles: dict[str, Profile] | None = None,
) -> RulesStage:
    """The rules stage (not started); ``profiles`` as ``checked_profiles`` gives them,
    checked here when not given; ``clock``: wall clock (s), injected by tests."""
    if profiles is None:
        profiles = checked_profiles(settings)
    return RulesStage(settings, profiles, DELIVERIES, clock)


def rules_observer(settings: Settings, profiles: dict[str, Profile]) -> RulesObserver:
    """The rules stage as ingest's observer: off while no probe has a profile to be judged
    by (the settings name none and no probe is assigned to a compartment, whose deliveries
    name one), switched on by the first assignment. The store must be migrated."""

    def build() -> RulesStage | None:
        named = settings.alerts_default_profile is not None or settings.alerts_device_profiles
        if not named and not _any_assignment(settings):
            return None
        return rules_stage(settings, profiles=profiles)

    return RulesObserver(build)


def ingest_service(settings: Settings) -> IngestService:
    """`coldtrace ingest`: its after-store observers, in the order each stored batch is
    handed to them."""
    profiles = checked_profiles(settings)
    # The relational store (held readings, breaches) at the migrations' head before any
    # use: its schema has one owner, Alembic, whichever process starts first.
    upgrade(settings.sqlalchemy_url)
    return IngestService(settings, [rules_observer(settings, profiles)])


def api_app(settings: Settings) -> FastAPI:
    """`coldtrace api`: the signing key and the product profiles checked, the store migrated
    to head, then the app (coldtrace/api/app.py) with its delivery sweep and certificate
    mailer running while it serves (coldtrace/api/background.py)."""
    # Imported here: ingest, which shares this module, does not load the web framework.
    from coldtrace.api import background
    from coldtrace.api.app import create_app

    profiles = checked_profiles(settings)
    # No signing key (COLDTRACE_CERTIFICATE_SIGNING_KEY) fails here, not at the first close.
    key_id = signing.key_id(settings.certificate_key.public_key())
    log.info("certificates are signed with key %s", key_id)
    upgrade(settings.sqlalchemy_url)
    return create_app(settings, frozenset(profiles), background.running)


def api_collector() -> None:
    """The garbage collector as `coldtrace api` runs it (its process issues and renders the
    certificates, so benchmarks/certificate_issue.py measures under the same): what is
    alive once the app is built is frozen out of every pass, and the young generation is
    collected every 50,000 allocations, not 700. A long trace allocates ~100,000
    short-lived objects (and the API keeps finished ones): with the defaults the
    collector's passes doubled a cold trace's time, and full passes over the app's modules
    took ~110 ms in every other certificate issued."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _any_assignment(settings: Settings) -> bool:
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with Session(engine) as session:
            return any_assignment(session)
    except DBAPIError:  # store down or not migrated yet: no assignment to judge by
        return False
    finally:
        engine.dispose()

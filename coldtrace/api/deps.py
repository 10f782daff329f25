"""Per-request dependencies: the database session, the settings, the InfluxDB reader."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from coldtrace.deliveries.models import Delivery
from coldtrace.deliveries.source import ReadingSource
from coldtrace.deliveries.store import wall_ms
from coldtrace.influx import InfluxClient
from coldtrace.profiles import load_profiles
from coldtrace.settings import Settings
from dashboards.links import delivery_link


def get_session(request: Request) -> Iterator[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    with factory() as session:
        yield session


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_influx(request: Request) -> InfluxClient:
    influx: InfluxClient = request.app.state.influx
    return influx


def get_profiles(request: Request) -> frozenset[str]:
    """The product profile ids alerts knows (shipped and the user's file)."""
    profiles: frozenset[str] = request.app.state.profiles
    return profiles


def get_source(request: Request) -> ReadingSource:
    source: ReadingSource = request.app.state.source
    return source


DbSession = Annotated[Session, Depends(get_session)]
AppSettings = Annotated[Settings, Depends(get_settings)]
Influx = Annotated[InfluxClient, Depends(get_influx)]
Source = Annotated[ReadingSource, Depends(get_source)]
Profiles = Annotated[frozenset[str], Depends(get_profiles)]


DeliveryLink = Callable[[Delivery], str | None]


def get_dashboard_link(request: Request, session: DbSession) -> DeliveryLink:
    """A delivery's link to its Delivery dashboard in Grafana (dashboards/links.py), None
    when COLDTRACE_GRAFANA_URL is not set."""
    settings: Settings = request.app.state.settings
    grafana = settings.grafana_url
    if grafana is None:
        return lambda d: None
    profiles = load_profiles(settings.alerts_profiles_file)
    now = wall_ms()
    return lambda d: delivery_link(grafana, session, d, profiles[d.profile], now)


DashboardLink = Annotated[DeliveryLink, Depends(get_dashboard_link)]

"""The FastAPI application: `create_app` serves /api/v1 (OpenAPI at /docs), /api/v1/health and
Prometheus-style /metrics. Built by coldtrace/bootstrap.py (``api_app``), which checks the
configuration first and gives it its background work (coldtrace/api/background.py)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from coldtrace.api import docs, problems
from coldtrace.api.deps import AppSettings, DbSession, Influx
from coldtrace.api.pipeline import ingest_state
from coldtrace.api.ratelimit import RateLimiter
from coldtrace.api.routes import (
    books,
    breaches,
    deliveries,
    fleet_data,
    oversight,
    public,
    verification,
)
from coldtrace.api.schemas import Health
from coldtrace.breaches import Breach
from coldtrace.certificates.issue import Issuer
from coldtrace.certificates.mail import outbox_counts
from coldtrace.db import make_engine
from coldtrace.deliveries.models import Certificate, Delivery
from coldtrace.deliveries.source import ReadingSource
from coldtrace.influx import InfluxClient, InfluxRejected, InfluxUnavailable
from coldtrace.settings import Settings
from ingest.held import held_count

log = logging.getLogger(__name__)
PREFIX = "/api/v1"
HSTS = "max-age=31536000"


def create_app(
    settings: Settings,
    profiles: frozenset[str],
    background: Callable[[FastAPI], AbstractContextManager[None]],
) -> FastAPI:
    """The app on a store at the migrations' head, ``profiles`` the ids of the checked
    product profiles: coldtrace/bootstrap.py checks the configuration and migrates first.
    ``background``: what runs beside the requests while the app serves (entered at startup,
    left at shutdown; the composition root gives coldtrace.api.background.running)."""
    engine = make_engine(settings.sqlalchemy_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with background(app):
            yield
        app.state.source.close()
        app.state.influx.close()
        engine.dispose()

    app = FastAPI(
        docs_url=None,  # served from this process (coldtrace.api.docs), not from a CDN
        redoc_url=None,
        title="coldtrace API",
        version="1",
        description="Deliveries, traces, breaches and the fleet of the coldtrace cold chain. "
        "Authenticate with `Authorization: Bearer <key>` (`coldtrace keys create`).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessionmaker(engine, expire_on_commit=False)
    app.state.influx = InfluxClient(settings)
    app.state.source = ReadingSource(app.state.influx)
    app.state.certifier = Issuer(app.state.source, settings)
    app.state.profiles = profiles
    app.state.requests = Counter[tuple[str, int]]()
    problems.install(app)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> Response:
        return problems.problem_response(request, 409, "conflicts with a stored row")

    @app.exception_handler(InfluxUnavailable)
    async def _influx_down(request: Request, exc: InfluxUnavailable) -> Response:
        return problems.problem_response(request, 503, f"InfluxDB unavailable: {exc}")

    @app.exception_handler(InfluxRejected)
    async def _influx_refused(request: Request, exc: InfluxRejected) -> Response:
        log.error("InfluxDB refused a query: %s", exc)
        return problems.problem_response(request, 500, "InfluxDB refused the query")

    @app.middleware("http")
    async def count(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        app.state.requests[(request.method, response.status_code)] += 1
        # How long the API itself took, for clients and benchmarks to tell from the network.
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        if request.url.scheme == "https":  # served over TLS: browsers keep to HTTPS for a year
            response.headers["Strict-Transport-Security"] = HSTS
        return response

    for router in (
        fleet_data.router,
        books.router,
        deliveries.router,
        breaches.router,
        oversight.router,
        verification.router,
    ):
        app.include_router(router, prefix=PREFIX)
    # No key: /v/<public_id>, the address printed on a certificate, and /api/v1/public/.
    app.state.public_limiter = RateLimiter(settings.public_rate_per_min)
    app.include_router(public.router)
    docs.install(app)

    @app.get(f"{PREFIX}/health", tags=["health"], responses={503: {"model": Health}})
    def health(
        session: DbSession, influx: Influx, settings: AppSettings, response: Response
    ) -> Health:
        """No key needed: for load balancers and supervisors. With COLDTRACE_INGEST_HEALTH_URL,
        ingest's state too: failing while ingest is, e.g. while its rules stage does not judge
        a probe (``reasons`` says which). Failing too while a current certificate disagrees
        with the live rules stage on a breach (docs/certificates.md)."""
        try:
            session.execute(text("SELECT 1"))
            database = True
        except Exception:
            log.exception("database health check failed")
            database = False
        influx_up = influx.ping()
        ingest = ingest_state(settings.ingest_health_url)
        reasons = [] if database else ["database unreachable"]
        reasons += [] if influx_up else ["InfluxDB unreachable"]
        reasons += [] if ingest is None else ingest.reasons
        disagreeing = _disagreeing_certificates(session) if database else []
        reasons += disagreeing
        ok = (
            database and influx_up and (ingest is None or ingest.status == "ok") and not disagreeing
        )
        response.status_code = 200 if ok else 503
        return Health(
            status="ok" if ok else "failing",
            database=database,
            influx=influx_up,
            ingest=None if ingest is None else ingest.status,
            reasons=reasons,
        )

    @app.get("/metrics", response_class=PlainTextResponse, tags=["health"])
    def metrics(session: DbSession, influx: Influx) -> str:
        """Prometheus text format: readings stored in the last 5 minutes (ingest rate), the
        age of the newest reading (lag), dead letters, open breaches, deliveries by state."""
        lines = []
        recent = influx.query("SELECT count(seq) FROM device_health WHERE time > now() - 5m")
        stored = recent[0]["values"][0][1] if recent else 0
        lines.append(f"coldtrace_readings_stored_5m {stored}")
        newest = influx.query("SELECT last(seq) FROM device_health WHERE time > now() - 1d")
        if newest:
            lag_s = time.time() - newest[0]["values"][0][0] / 1000
            lines.append(f"coldtrace_ingest_lag_seconds {lag_s:.3f}")
        # The fleet's books (docs/wire-format.md): every reading sent is stored, held, rejected
        # or missing; InfluxDB sums what ingest wrote as it went (ingest/books.py checks it),
        # the holding area (this database) what waits for its clock.
        books = {
            "stored": _scalar(influx, "SELECT count(seq) FROM device_health"),
            "held": held_count(session),
            "rejected": _scalar(influx, "SELECT sum(counted) FROM rejected"),
            "missing": _scalar(influx, "SELECT sum(missing) FROM seq_gap"),
        }
        lines.append(f"coldtrace_books_sent {sum(books.values())}")
        lines.extend(f"coldtrace_books_{name} {n}" for name, n in books.items())
        rejected = influx.query("SELECT sum(readings) FROM rejected WHERE time > now() - 5m")
        lines.append(
            f"coldtrace_readings_rejected_5m {rejected[0]['values'][0][1] if rejected else 0}"
        )
        open_breaches = session.scalar(select(func.count()).where(Breach.state == "open"))
        lines.append(f"coldtrace_breaches_open {open_breaches}")
        # Versions are never edited nor deleted: the sum over all of them only ever grows.
        found = session.scalar(select(func.coalesce(func.sum(Certificate.disagreements), 0)))
        lines.append(f"coldtrace_certificate_disagreements_total {found}")
        lines.append(
            f"coldtrace_certificates_disagreeing {len(_disagreeing_certificates(session))}"
        )
        mail = outbox_counts(session)
        lines.append(f"coldtrace_certificate_mail_pending {mail.pending}")
        lines.append(f"coldtrace_certificate_mail_retrying {mail.retrying}")
        lines.append(f"coldtrace_certificate_mail_sent {mail.sent}")
        lines.append(f"coldtrace_certificate_mail_interrupted {mail.interrupted}")
        for state, n in session.execute(
            select(Delivery.state, func.count()).group_by(Delivery.state).order_by(Delivery.state)
        ):
            lines.append(f'coldtrace_deliveries{{state="{state}"}} {n}')
        for (method, status), n in sorted(app.state.requests.items()):
            lines.append(f'coldtrace_api_requests_total{{method="{method}",status="{status}"}} {n}')
        return "\n".join(lines) + "\n"

    return app


def _scalar(influx: InfluxClient, influxql: str) -> int:
    """The one value of an aggregate query over all series; 0 when there is nothing."""
    series = influx.query(influxql)
    return int(series[0]["values"][0][1] or 0) if series else 0


def _disagreeing_certificates(session: Session) -> list[str]:
    """One line per current certificate whose evaluation and the live rules stage disagree on
    a breach (docs/certificates.md): unresolved until a newer version agrees."""
    rows = session.execute(
        select(Certificate.delivery_id, Certificate.version, Certificate.disagreements)
        .where(Certificate.superseded_ms.is_(None), Certificate.disagreements > 0)
        .order_by(Certificate.delivery_id)
    )
    return [
        f"delivery {delivery}: certificate version {version} has {n} breach(es) found by only "
        "one of the evaluation of the stored readings and the live rules stage"
        for delivery, version, n in rows
    ]

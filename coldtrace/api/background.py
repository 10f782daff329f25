"""What the API runs beside its requests while it serves: the delivery sweep (GPS-detected
starts and ends, closing what may close, every COLDTRACE_DELIVERY_SWEEP_S) and the
certificate mailer (when COLDTRACE_CERTIFICATE_SMTP_* are set). The composition root
(coldtrace/bootstrap.py, ``api_app``) hands ``running`` to the app's lifespan."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi import FastAPI
from sqlalchemy.orm import Session

from coldtrace.certificates.mail import Mailer, PdfAttachment
from coldtrace.deliveries.automation import sweep
from coldtrace.deliveries.source import ReadingSource
from coldtrace.settings import Settings

log = logging.getLogger(__name__)


@contextmanager
def running(app: FastAPI) -> Iterator[None]:
    """The sweep thread and the mailer, on the app's store, readings and certifier; both
    stopped on the way out."""
    settings: Settings = app.state.settings
    mailer = _mailer(settings, app.state.sessions, app.state.source)
    if mailer is not None:
        mailer.start()
    stop = threading.Event()
    if settings.delivery_sweep_s > 0:
        threading.Thread(
            target=_sweep_loop,
            args=(app, settings.delivery_sweep_s, stop),
            name="delivery-sweep",
            daemon=True,
        ).start()
    try:
        yield
    finally:
        stop.set()
        if mailer is not None:
            mailer.stop()


def _mailer(
    settings: Settings, sessions: Callable[[], Session], source: ReadingSource
) -> Mailer | None:
    """The certificate mailer when certificates are e-mailed (COLDTRACE_CERTIFICATE_SMTP_*):
    each version's PDF attached."""
    relay = settings.certificate_smtp
    if relay is None or settings.certificate_smtp_from is None:
        return None
    return Mailer(
        sessions,
        relay,
        settings.certificate_smtp_from,
        settings.public_url,
        PdfAttachment(source, settings.public_url, settings.certificate_issuer_logo),
        settings.certificate_mail_retry_max_s,
        settings.certificate_mail_poll_s,
    )


def _sweep_loop(app: FastAPI, interval_s: float, stop: threading.Event) -> None:
    """Every interval: GPS-detected starts and ends, closing what may close."""
    while not stop.wait(interval_s):
        try:
            changed = sweep(
                app.state.sessions, app.state.source, app.state.settings, app.state.certifier
            )
        except Exception:  # the database or InfluxDB away: try again next time
            log.exception("delivery sweep failed")
            continue
        if changed:
            log.info("delivery sweep: %d deliveries moved on", changed)

"""Certificates e-mailed to the customer's contact addresses through a real local SMTP server
(aiosmtpd) by `coldtrace api` itself, restarted between attempts: exactly one message per
version, with the certificate's PDF attached (the signed JSON inside), on SQLite and PostgreSQL.

The story: the relay is down when version 1 is issued (the first attempt fails), the API
stops, the relay comes up, the API starts again and sends version 1 once. Late readings (a
logger's backlog) then issue versions 2 and 3, each across another restart: version 3's
message arriving proves the restarted API made its passes, and none of them sent an earlier
version again."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.orm import Session

from coldtrace import signing
from coldtrace.api.fleet_setup import register_chilled_van
from coldtrace.certificates.document import extract_signed_json
from coldtrace.db import make_engine
from coldtrace.deliveries.models import CertificateMail
from coldtrace.devtools.api_process import ApiProcess
from coldtrace.devtools.services import free_port
from coldtrace.influx import InfluxClient
from coldtrace.settings import Settings
from tests.conftest import wait_for
from tests.e2e.test_delivery_trace import cli_env
from tests.world import MIN, T0, iso, plan, write_run

CONTACTS = ["goods-in@acme.test", "quality@acme.test"]


class Mailbox:
    """What the SMTP server received: each message, parsed."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


def late_reading(influx: InfluxClient, device: str, at: int, seq: int) -> None:
    """A product reading arriving after the close (a logger's backlog), in range: the
    readings count changes, so does the evaluation, and nothing disagrees."""
    influx.write(f"temperature,device={device},probe=product celsius=3.0,seq={seq}i {at}".encode())


def outbox(database_url: str) -> list[CertificateMail]:
    engine = make_engine(database_url)
    with Session(engine) as session:
        rows = list(session.scalars(select(CertificateMail).order_by(CertificateMail.id)))
    engine.dispose()
    return rows


@pytest.fixture
def api_env(settings: Settings, database_url: str) -> Iterator[tuple[dict[str, str], int]]:
    """The API's environment, mailing through a relay on a free port (nothing there yet)."""
    port = free_port()
    env = cli_env(settings, database_url) | {
        "COLDTRACE_CERTIFICATE_SMTP_HOST": "127.0.0.1",
        "COLDTRACE_CERTIFICATE_SMTP_PORT": str(port),
        "COLDTRACE_CERTIFICATE_SMTP_FROM": "certificates@coldtrace.test",
        "COLDTRACE_CERTIFICATE_MAIL_POLL_S": "0.2",
        "COLDTRACE_CERTIFICATE_MAIL_RETRY_MAX_S": "1",
        "COLDTRACE_PUBLIC_URL": "https://verify.coldtrace.test",
    }
    yield env, port


def test_each_version_is_mailed_once_across_restarts(
    settings: Settings,
    database_url: str,
    influx: InfluxClient,
    prefix: str,
    api_env: tuple[dict[str, str], int],
    tmp_path: Path,
) -> None:
    env, smtp_port = api_env
    log = tmp_path / "api.log"
    vehicle, device = f"{prefix}-van", f"{prefix}-logger"
    write_run(influx, device)

    api = ApiProcess(env, log).start()
    try:
        api.call("POST", "/customers", json={"id": "acme", "name": "ACME labs"})
        api.call("PUT", "/customers/acme/contacts", json={"contact_emails": CONTACTS})
        register_chilled_van(api.call, vehicle, device, iso(T0 - 60 * MIN))
        d = api.call("POST", "/deliveries", json=plan(vehicle))["id"]
        for action, at in (("start", T0), ("deliver", T0 + 40 * MIN), ("close", None)):
            body = {"action": action, **({} if at is None else {"at": iso(at)})}
            api.call("POST", f"/deliveries/{d}/transitions", json=body)
        # Nothing listens on the relay's port: the first attempt fails and is rescheduled.
        wait_for(
            lambda: (
                [(m.attempts, m.sent_ms) for m in outbox(database_url)] == [(1, None)]
                and outbox(database_url)[0].last_error
            ),
            what="a failed first attempt",
        )
    finally:
        api.stop()

    box = Mailbox()
    relay = Controller(box, hostname="127.0.0.1", port=smtp_port)
    relay.start()
    try:
        for version in (1, 2, 3):
            api = ApiProcess(env, log).start()
            try:
                if version > 1:
                    late_reading(influx, device, T0 + version * MIN + 15_000, 1000 + version)
                    api.call("POST", f"/deliveries/{d}/reevaluate")
                wait_for(lambda v=version: len(box.messages) >= v, what=f"version {version}")
                certificates = api.call("GET", f"/deliveries/{d}/certificates")
            finally:
                api.stop()
    finally:
        relay.stop()

    assert [c["version"] for c in certificates] == [3, 2, 1]
    by_version = {c["version"]: c for c in certificates}
    public = settings.certificate_key.public_key()
    assert len(box.messages) == 3
    for version, msg in enumerate(box.messages, start=1):
        c = by_version[version]
        assert msg["To"] == ", ".join(CONTACTS)
        assert msg["From"] == "certificates@coldtrace.test"
        assert msg["Message-ID"] == f"<certificate-{c['body']['public_id']}@coldtrace>"
        assert f"https://verify.coldtrace.test/v/{c['body']['public_id']}" in str(
            msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        )
        [attached] = list(msg.iter_attachments())
        assert attached.get_filename() == f"certificate-{d}-v{version}.pdf"
        assert attached.get_content_type() == "application/pdf"
        # The PDF alone verifies: the signed JSON is attached to it.
        [sent] = signing.read_certificates(extract_signed_json(attached.get_content()))
        assert sent["body"] == c["body"] and sent["signature"] == c["signature"]
        assert signing.check([public], sent) == ""
    rows = outbox(database_url)
    assert [(r.attempts, r.attachment, r.recipients) for r in rows] == [
        (2, "pdf", CONTACTS),
        (1, "pdf", CONTACTS),
        (1, "pdf", CONTACTS),
    ]

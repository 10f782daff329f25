"""The certificate mailer's outbox against a real local SMTP server (aiosmtpd), on SQLite and
PostgreSQL, with a clock of its own: a refused message is retried with backoff and sent once;
a send interrupted mid-conversation (its claim never released) is never sent again, logged
once and counted."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from coldtrace import signing
from coldtrace.certificates.document import extract_signed_json
from coldtrace.certificates.mail import Mailer, PdfAttachment, outbox_counts
from coldtrace.deliveries.models import Certificate, CertificateMail, Delivery
from coldtrace.deliveries.store import ISSUED_FIELDS, Store
from coldtrace.devtools.services import free_port
from coldtrace.smtp import SmtpRelay
from tests.conftest import Api

NOW = 2_000_000_000_000  # 2033-05-18: after version 1 was issued (now)
TO = ["a@acme.test", "b@acme.test"]


class Relay:
    """A real SMTP server that refuses the next ``refuse`` messages (554), then takes them."""

    def __init__(self) -> None:
        self.refuse = 0
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            self.refuse -= 1
            return "554 not now"
        self.received.append(envelope.content)
        return "250 OK"


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    handler, port = Relay(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def issued_with_mail(api: Api, delivery: int) -> int:
    """Version 2 of the closed delivery's certificate (version 1's judgement), issued at NOW
    and queued for two addresses: its outbox row's id."""
    with api.app.state.sessions() as session:
        d = session.get_one(Delivery, delivery)
        v1 = session.scalars(select(Certificate).filter_by(delivery_id=delivery)).one()
        judged = {k: v for k, v in v1.body.items() if k not in ISSUED_FIELDS}
        c = Store(session, "test", clock=lambda: NOW).issue_certificate(
            d, v1.verdict, judged, api.settings.certificate_key, mail_to=TO
        )
        session.commit()
        return c.id


def mailer(api: Api, port: int, clock: list[int]) -> Mailer:
    return Mailer(
        api.app.state.sessions,
        SmtpRelay("127.0.0.1", port),
        "certificates@coldtrace.test",
        "https://verify.coldtrace.test",
        PdfAttachment(api.app.state.source, "https://verify.coldtrace.test"),
        retry_max_s=60,
        poll_s=1,
        clock=lambda: clock[0],
    )


def row(api: Api, certificate_id: int) -> CertificateMail:
    """The outbox row of a version."""
    with api.app.state.sessions() as session:
        return session.scalars(
            select(CertificateMail).filter_by(certificate_id=certificate_id)
        ).one()


def test_a_refused_message_is_retried_with_backoff_and_sent_once(
    api: Api,
    closed_delivery: int,
    relay: tuple[Relay, int],
) -> None:
    handler, port = relay
    version_id = issued_with_mail(api, closed_delivery)
    clock = [NOW]
    m = mailer(api, port, clock)
    handler.refuse = 2
    assert m.send_due() == 0
    first = row(api, version_id)
    assert (first.attempts, first.sending_ms, first.next_attempt_ms) == (1, None, NOW + 2000)
    assert first.last_error is not None and "554" in first.last_error
    assert "coldtrace_certificate_mail_retrying 1\n" in api.client.get("/metrics").text
    clock[0] += 1999
    assert m.send_due() == 0 and row(api, version_id).attempts == 1  # not due yet
    clock[0] += 1
    assert m.send_due() == 0
    assert row(api, version_id).next_attempt_ms == clock[0] + 4000  # 2 s, then 4 s
    clock[0] += 4000
    assert m.send_due() == 1
    assert m.send_due() == 0  # sent: never again
    sent = row(api, version_id)
    assert (sent.attempts, sent.sent_ms, sent.attachment, sent.last_error) == (
        3,
        clock[0],
        "pdf",
        None,
    )
    [received] = handler.received
    [attached] = message_from_bytes(received, policy=default).iter_attachments()  # type: ignore[attr-defined]
    assert attached.get_filename() == f"certificate-{closed_delivery}-v2.pdf"
    [certificate] = signing.read_certificates(extract_signed_json(attached.get_content()))
    assert certificate["body"]["version"] == 2
    assert signing.check(api.settings.certificate_public_keys, certificate) == ""
    with api.app.state.sessions() as session:
        assert outbox_counts(session).__dict__ == {
            "pending": 0,
            "retrying": 0,
            "sent": 1,
            "interrupted": 0,
        }
    audit = api.ok("GET", "/audit?entity=certificate")["items"]
    assert [(a["actor"], a["new"]["to"]) for a in audit if a["action"] == "certificate.mail"] == [
        ("system:mailer", ["a@acme.test", "b@acme.test"])
    ]


def test_an_interrupted_send_is_not_sent_again(
    api: Api,
    closed_delivery: int,
    relay: tuple[Relay, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler, port = relay
    version_id = issued_with_mail(api, closed_delivery)
    with api.app.state.sessions() as session:
        # As a sender leaves it when it dies between its claim and the relay's answer.
        interrupted = session.scalars(select(CertificateMail)).one()
        interrupted.sending_ms, interrupted.attempts = NOW, 1
        session.commit()
    clock = [NOW + 299_000]
    m = mailer(api, port, clock)
    assert m.send_due() == 0 and row(api, version_id).last_error is None  # maybe still sending
    clock[0] = NOW + 301_000
    with caplog.at_level(logging.ERROR, "coldtrace.certificates.mail"):
        assert m.send_due() == 0
        clock[0] += 3_600_000
        assert m.send_due() == 0
    assert handler.received == []
    assert [r.getMessage() for r in caplog.records] == [
        f"certificate {version_id} e-mail to a@acme.test, b@acme.test: interrupted while sending "
        "(attempt 1): it may or may not have arrived, so it is not sent again automatically"
    ]
    with api.app.state.sessions() as session:
        assert outbox_counts(session).__dict__ == {
            "pending": 0,
            "retrying": 0,
            "sent": 0,
            "interrupted": 1,
        }
    metrics = api.client.get("/metrics").text
    assert "coldtrace_certificate_mail_interrupted 1\n" in metrics

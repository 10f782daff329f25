"""E-mailing each certificate version to its customer's contact addresses, from the outbox
(coldtrace.deliveries.models.CertificateMail: one row per version, written when it is issued).

At most once per version, also across restarts and with several API processes: a row is
claimed (``sending_ms``, committed) before the SMTP conversation and marked sent after it.
A failure the relay reports (unreachable, refused) releases the claim and retries with
exponential backoff (2 s, 4 s, ... up to COLDTRACE_CERTIFICATE_MAIL_RETRY_MAX_S). A claim
older than CLAIM_STALE_S that was never released means its sender died mid-conversation:
the message may or may not have gone out, so it is never sent again automatically; it is
logged at ERROR once and counted (``coldtrace_certificate_mail_interrupted``) for an
operator to look at the mailbox. Each message's Message-ID is the version's, so a mail
client shows one even if an operator sends it again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from coldtrace.certificates import public
from coldtrace.certificates.pdf import render_pdf
from coldtrace.certificates.render import version_document
from coldtrace.deliveries.models import Certificate, CertificateMail
from coldtrace.deliveries.source import ReadingSource
from coldtrace.deliveries.store import Store, wall_ms
from coldtrace.smtp import SmtpRelay

log = logging.getLogger(__name__)

MAILER = "system:mailer"
# Longer than any SMTP conversation can take (coldtrace.smtp.TIMEOUT_S per operation).
CLAIM_STALE_S = 300
INTERRUPTED = "interrupted while sending"
BATCH = 20


@dataclass(frozen=True)
class Attachment:
    """A file attached to the message: name, MIME type (``application/pdf``) and bytes."""

    filename: str
    mime_type: str
    data: bytes

    @property
    def kind(self) -> str:
        """What the outbox records as sent: ``pdf`` or ``json``."""
        return self.mime_type.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class PdfAttachment:
    """A version's PDF (render.version_document: in its customer's language, the signed JSON
    attached, the QR code to ``public_url``/v/<public_id>), read with ``source``."""

    source: ReadingSource
    public_url: str
    logo: Path | None = None

    def __call__(self, session: Session, c: Certificate) -> Attachment:
        pdf = render_pdf(version_document(session, c, self.source, self.public_url, self.logo))
        return Attachment(public.download_name(c, "pdf"), "application/pdf", pdf)


def message(
    c: Certificate, sender: str, recipients: list[str], url: str, attachment: Attachment
) -> EmailMessage:
    """The e-mail of one version: a short text with its verdict and verification address,
    the certificate attached."""
    body = c.body
    reference = body.get("reference") or f"no. {c.delivery_id}"
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, ", ".join(recipients)
    msg["Subject"] = f"Temperature certificate, delivery {reference} (version {c.version})"
    msg["Message-ID"] = f"<certificate-{c.public_id}@coldtrace>"
    lines = [
        f"Temperature certificate of delivery {reference}, version {c.version}: {c.verdict}.",
        "",
        f"Check it at {url} (or drop the attached file there).",
    ]
    if c.version > 1:
        lines += ["", f"It replaces version {c.version - 1}: late readings changed the result."]
    msg.set_content("\n".join(lines) + "\n")
    maintype, subtype = attachment.mime_type.split("/", 1)
    msg.add_attachment(
        attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename
    )
    return msg


class Mailer:
    """Sends what the outbox holds due, on its own thread (``start``/``stop``) or one pass at
    a time (``send_due``). ``attachment`` makes a version's file (PdfAttachment); ``public_url`` is
    COLDTRACE_PUBLIC_URL (the message gives the version's verification address)."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        relay: SmtpRelay,
        sender: str,
        public_url: str,
        attachment: Callable[[Session, Certificate], Attachment],
        retry_max_s: float,
        poll_s: float,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.sessions = sessions
        self.relay, self.sender = relay, sender
        self.public_url = public_url.rstrip("/")
        self.attachment = attachment
        self.retry_max_s, self.poll_s = retry_max_s, poll_s
        self.clock = clock
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="certificate-mail", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=60)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.send_due()
            except Exception:  # the database away: try again next time
                log.exception("certificate mail: outbox unavailable; retrying")
            self.stopping.wait(self.poll_s)

    def send_due(self) -> int:
        """One pass: report interrupted sends, then send what is due. How many were sent."""
        self._report_interrupted()
        sent = 0
        with self.sessions() as session:
            due = session.scalars(
                select(CertificateMail.id)
                .where(
                    CertificateMail.sent_ms.is_(None),
                    CertificateMail.sending_ms.is_(None),
                    CertificateMail.next_attempt_ms <= self.clock(),
                )
                .order_by(CertificateMail.id)
                .limit(BATCH)
            ).all()
        for mail_id in due:
            if self.stopping.is_set():
                break
            sent += self._send(mail_id)
        return sent

    def _send(self, mail_id: int) -> bool:
        with self.sessions() as session:
            # The claim: only one sender (thread, process) gets the row, and only once.
            claimed = session.execute(
                update(CertificateMail)
                .where(
                    CertificateMail.id == mail_id,
                    CertificateMail.sent_ms.is_(None),
                    CertificateMail.sending_ms.is_(None),
                )
                .values(sending_ms=self.clock(), attempts=CertificateMail.attempts + 1)
            )
            session.commit()
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return False
            mail = session.get_one(CertificateMail, mail_id)
            c = session.get_one(Certificate, mail.certificate_id)
            try:
                attachment = self.attachment(session, c)
                url = f"{self.public_url}/v/{c.public_id}"
                self.relay.send(message(c, self.sender, mail.recipients, url, attachment))
            except Exception as exc:
                delay_s = min(2.0**mail.attempts, self.retry_max_s)
                log.warning(
                    "certificate %d (delivery %d v%d) e-mail attempt %d failed (%s); retry in "
                    "%.0f s",
                    c.id,
                    c.delivery_id,
                    c.version,
                    mail.attempts,
                    exc,
                    delay_s,
                )
                mail.sending_ms = None
                mail.last_error = str(exc)[:1000]
                mail.next_attempt_ms = self.clock() + round(delay_s * 1000)
                session.commit()
                return False
            mail.sent_ms, mail.sending_ms = self.clock(), None
            mail.attachment, mail.last_error = attachment.kind, None
            Store(session, MAILER, self.clock).audit(
                "certificate.mail",
                "certificate",
                c.id,
                None,
                {"to": mail.recipients, "attachment": attachment.kind, "attempts": mail.attempts},
            )
            session.commit()
            return True

    def _report_interrupted(self) -> None:
        """Claims never released (the sender died mid-conversation): logged once each."""
        stale = self.clock() - CLAIM_STALE_S * 1000
        with self.sessions() as session:
            rows = session.scalars(
                select(CertificateMail).where(
                    CertificateMail.sent_ms.is_(None),
                    CertificateMail.sending_ms < stale,
                    or_(
                        CertificateMail.last_error.is_(None),
                        ~CertificateMail.last_error.startswith(INTERRUPTED),
                    ),
                )
            ).all()
            for mail in rows:
                mail.last_error = (
                    f"{INTERRUPTED} (attempt {mail.attempts}): it may or may not have arrived, "
                    "so it is not sent again automatically"
                )
                log.error(
                    "certificate %d e-mail to %s: %s",
                    mail.certificate_id,
                    ", ".join(mail.recipients),
                    mail.last_error,
                )
            session.commit()


@dataclass(frozen=True)
class OutboxCounts:
    """For /metrics: versions waiting to be sent (``retrying``: of those, the ones whose
    last attempt failed), sent, and interrupted mid-send."""

    pending: int
    retrying: int
    sent: int
    interrupted: int


def outbox_counts(session: Session) -> OutboxCounts:
    def count(*where: object) -> int:
        return session.scalar(select(func.count()).where(and_(*where))) or 0  # type: ignore[arg-type]

    return OutboxCounts(
        pending=count(CertificateMail.sent_ms.is_(None), CertificateMail.sending_ms.is_(None)),
        retrying=count(
            CertificateMail.sent_ms.is_(None),
            CertificateMail.sending_ms.is_(None),
            CertificateMail.attempts > 0,
        ),
        sent=count(CertificateMail.sent_ms.is_not(None)),
        interrupted=count(
            CertificateMail.sent_ms.is_(None), CertificateMail.last_error.startswith(INTERRUPTED)
        ),
    )

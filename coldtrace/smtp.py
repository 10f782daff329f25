"""One SMTP relay and how a message goes through it: the alerts' e-mail notifier
(COLDTRACE_NOTIFY_SMTP_*) and the certificates' mailer (COLDTRACE_CERTIFICATE_SMTP_*) each
have one. A connection per message: both send rarely."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

# Per socket operation (connect, each command, the data), s.
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SmtpRelay:
    host: str
    port: int
    starttls: bool = False
    username: str | None = None
    password: str | None = None

    def send(self, msg: EmailMessage) -> None:
        """Hand the message over; raises (OSError, smtplib.SMTPException) when the relay is
        unreachable or refuses it."""
        with smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_S) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username and self.password:
                smtp.login(self.username, self.password)
            smtp.send_message(msg)

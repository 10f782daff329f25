"""What anyone may learn of a certificate without a key: the public verification behind the
address printed on it (``<COLDTRACE_PUBLIC_URL>/v/<public_id>``, its QR code).

A stored version is ``valid`` (its signature and envelope pass the strict verification of
``coldtrace.signing.check`` with the installation's keys (its signing key and the retired
ones it still vouches for), and no newer version replaced it),
``superseded`` (valid, but a newer version of its delivery's certificate replaced it) or
``invalid`` (with the reason ``check`` gives). A file a visitor brings (the certificate JSON
as the API returns it, or a list of them) is checked the same way (``check_all``), and a
valid one that this installation issued is also told whether it was superseded. Only public
ids lead here: they are 128 random bits, so certificates cannot be found by counting.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from coldtrace import signing
from coldtrace.certificates.document import NotACertificatePdf, extract_signed_json
from coldtrace.certificates.render import envelope
from coldtrace.deliveries.models import Certificate

# 22 URL-safe base64 characters (coldtrace.deliveries.store.PUBLIC_ID_BYTES = 16 bytes);
# anything else is refused before the database is asked.
PUBLIC_ID_PATTERN = r"^[A-Za-z0-9_-]{22}$"


class State(StrEnum):
    valid = "valid"
    invalid = "invalid"
    superseded = "superseded"


@dataclass(frozen=True)
class Newer:
    """The version that replaced a superseded one: its number and public id."""

    version: int
    public_id: str


@dataclass(frozen=True)
class Status:
    """A certificate's standing: ``why`` is the reason when invalid ("" otherwise);
    ``newer`` the current version when superseded; ``retired_key`` the key id when a valid
    or superseded version was signed with a retired key (not the signing key), else ""."""

    state: State
    why: str = ""
    newer: Newer | None = None
    retired_key: str = ""


def by_public_id(session: Session, public_id: str) -> Certificate | None:
    return session.scalars(select(Certificate).where(Certificate.public_id == public_id)).first()


def current_version(session: Session, delivery_id: int) -> Certificate | None:
    return session.scalars(
        select(Certificate).where(
            Certificate.delivery_id == delivery_id, Certificate.superseded_ms.is_(None)
        )
    ).first()


def _replaced(session: Session, stored: Certificate) -> Status:
    """Valid, or superseded by the delivery's current version."""
    if stored.superseded_ms is None:
        return Status(State.valid)
    current = current_version(session, stored.delivery_id)
    newer = None if current is None else Newer(current.version, current.public_id)
    return Status(State.superseded, newer=newer)


def stored_status(
    session: Session, keys: Sequence[Ed25519PublicKey], stored: Certificate
) -> Status:
    """The standing, with ``keys`` (the signing key first, then the retired ones), of a
    version this installation issued (checked afresh: a row changed in
    the database after signing is invalid like any other forgery)."""
    certificate = envelope(stored)
    why = signing.check(keys, certificate)
    if why:
        return Status(State.invalid, why)
    return replace(_replaced(session, stored), retired_key=_retired(keys, certificate))


def _retired(keys: Sequence[Ed25519PublicKey], certificate: Mapping[str, Any]) -> str:
    """The key id of a verified certificate when it is not that of ``keys[0]``, the signing
    key (the others are retired ones), else ""."""
    named = str(certificate["key_id"])
    return "" if named == signing.key_id(keys[0]) else named


@dataclass(frozen=True)
class Checked:
    """One certificate of a visitor's file: what it says it is (``delivery``, ``version``:
    None when it does not say as an integer), its ``status`` and, when this installation
    issued it, its ``public_id``."""

    delivery: int | None
    version: int | None
    verdict: str | None
    status: Status
    public_id: str | None = None


def _int(value: object) -> int | None:
    return value if type(value) is int else None


def check_file(session: Session, keys: Sequence[Ed25519PublicKey], data: bytes) -> list[Checked]:
    """Every certificate in a visitor's file, checked with ``keys`` (the signing key first,
    then the retired ones): JSON as the API returns it (one or a list), or a PDF certificate
    (the signed JSON attached to it: document.extract_signed_json).
    signing.Unreadable when the file holds no certificate at all."""
    if data.startswith(b"%PDF-"):
        try:
            text = extract_signed_json(data)
        except NotACertificatePdf as exc:
            raise signing.Unreadable(str(exc)) from None
        certificates = signing.read_certificates(text)
    else:
        try:
            certificates = signing.read_certificates(data.decode())
        except UnicodeDecodeError:
            raise signing.Unreadable("neither a certificate JSON (UTF-8) nor a PDF") from None
        except signing.Unreadable as exc:  # a text file: say what was expected first
            raise signing.Unreadable(f"neither a certificate JSON nor a PDF ({exc})") from None
    if not certificates:
        raise signing.Unreadable("an empty list: no certificate in it")
    reasons = signing.check_all(keys, certificates)
    checked = []
    for c, why in zip(certificates, reasons, strict=True):
        body = c["body"]
        status, public_id = Status(State.invalid, why), None
        if not why:
            stored = _issued_here(session, c)
            status = Status(State.valid) if stored is None else _replaced(session, stored)
            status = replace(status, retired_key=_retired(keys, c))
            public_id = None if stored is None else stored.public_id
        verdict = body.get("verdict")
        checked.append(
            Checked(
                delivery=_int(body.get("delivery_id")),
                version=_int(body.get("version")),
                verdict=verdict if isinstance(verdict, str) else None,
                status=status,
                public_id=public_id,
            )
        )
    return checked


def _issued_here(session: Session, certificate: dict[str, Any]) -> Certificate | None:
    """The stored version a validly signed certificate is (same public id and signature)."""
    public_id = certificate["body"].get("public_id")
    if not isinstance(public_id, str):
        return None
    stored = by_public_id(session, public_id)
    if stored is None or stored.signature != certificate["signature"]:
        return None
    return stored


def download_name(c: Certificate, extension: str) -> str:
    """The file name a downloaded certificate gets (``json``, ``pdf``)."""
    return f"certificate-{c.delivery_id}-v{c.version}.{extension}"


def dumps(document: dict[str, Any]) -> bytes:
    """A certificate as a download: indented JSON (whitespace does not change what is
    signed: the canonical form is), non-ASCII as itself."""
    return json.dumps(document, indent=2, ensure_ascii=False).encode()

"""POST /api/v1/certificates/verify: the strict verification of `coldtrace certificates verify`
(coldtrace.signing.check_all) with the installation's keys (the signing key and the retired
ones it still vouches for), plus what only the store knows: whether a version that says it
is current has been superseded."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from coldtrace import signing
from coldtrace.api.auth import Anyone, Principal
from coldtrace.api.deps import AppSettings, DbSession
from coldtrace.api.problems import Problem
from coldtrace.api.routes.common import visible_delivery
from coldtrace.api.schemas import MAX_ID, VerificationOut, from_ms
from coldtrace.deliveries.models import Certificate
from coldtrace.deliveries.store import NotFound

router = APIRouter(tags=["certificates"])


@router.post(
    "/certificates/verify",
    # Read raw (duplicate keys are only seen while parsing): OpenAPI is told what it takes.
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "a certificate, or a list of them, as GET /certificates/{id} gives",
            "content": {"application/json": {"schema": {}}},
        }
    },
)
async def verify_certificates(
    request: Request, settings: AppSettings, session: DbSession, who: Anyone
) -> list[VerificationOut]:
    """One answer per certificate, in order: valid, or why not (docs/certificates.md
    "Verifying"). A stored version the caller may see that has been superseded is not valid
    when the input says it is current. 422: not JSON, not certificates, or none."""
    try:
        certificates = signing.read_certificates((await request.body()).decode())
    except (signing.Unreadable, UnicodeDecodeError) as exc:
        raise Problem(422, f"body: {exc}") from None
    if not certificates:
        raise Problem(422, "body: no certificate in it: nothing verified")
    reasons = signing.check_all(settings.certificate_public_keys, certificates)
    answers = []
    for c, why in zip(certificates, reasons, strict=True):
        why = why or _superseded(session, who, c)
        body = c["body"]
        answers.append(
            VerificationOut(
                certificate=c.get("id") if type(c.get("id")) is int else None,
                delivery=body.get("delivery_id") if type(body.get("delivery_id")) is int else None,
                version=body.get("version") if type(body.get("version")) is int else None,
                valid=not why,
                why=why,
            )
        )
    return answers


def _superseded(session: Session, who: Principal, certificate: dict[str, Any]) -> str:
    """Why a validly signed certificate is still not to be relied on according to the store
    (a later version replaced it), or ""."""
    cid = certificate.get("id")
    stored = session.get(Certificate, cid) if type(cid) is int and 0 < cid <= MAX_ID else None
    if stored is None or stored.signature != certificate["signature"]:
        return ""
    try:
        visible_delivery(session, who, stored.delivery_id)
    except NotFound:
        return ""
    superseded = from_ms(stored.superseded_ms)
    if superseded is not None and certificate.get("superseded") is None:
        return f"superseded on {superseded:%Y-%m-%dT%H:%M:%SZ}: not the current version"
    return ""

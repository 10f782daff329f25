"""The public verification page and endpoint (no key, rate limited per client address):
``GET /v/<public_id>`` (HTML: the certificate's facts and valid / invalid and why /
superseded by version n), ``POST /v`` (a visitor's certificate file, a plain HTML form
upload, checked the same way), and the same as JSON under ``/api/v1/public/``
(coldtrace.certificates.public says what each state means)."""

from __future__ import annotations

import re
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlsplit

import jinja2
from fastapi import APIRouter, Depends, File, Path, Query, Request, Response, UploadFile
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from coldtrace import signing
from coldtrace.api.deps import AppSettings, DbSession, Source
from coldtrace.api.problems import Problem
from coldtrace.api.ratelimit import RateLimiter
from coldtrace.api.schemas import Language
from coldtrace.certificates import public
from coldtrace.certificates.document import DocumentRequest, has_document
from coldtrace.certificates.html import certificate_html
from coldtrace.certificates.i18n import LANGUAGE_NAMES, Writer
from coldtrace.certificates.pdf import render_pdf
from coldtrace.certificates.public import Checked, State, Status
from coldtrace.certificates.render import envelope, version_document
from coldtrace.certificates.view import page_view, page_writer
from coldtrace.deliveries.models import Certificate
from coldtrace.settings import Settings

# A certificate with its breaches is a few hundred kB at most; a PDF a few MB.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# No script, nothing from another host: the page's own inline style, and the certificate's
# document from this host in a frame (its pictures are data: URIs).
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
    "Cache-Control": "no-store",
}

templates = jinja2.Environment(
    loader=jinja2.FunctionLoader(
        lambda name: (resources.files("coldtrace.certificates") / "templates" / name).read_text()
    ),
    autoescape=True,
    undefined=jinja2.ChainableUndefined,  # a body without a field shows nothing for it
)


def limited(request: Request) -> None:
    """429 with Retry-After when the client address went over COLDTRACE_PUBLIC_RATE_PER_MIN."""
    limiter: RateLimiter = request.app.state.public_limiter
    wait_s = limiter.wait_s(request.client.host if request.client else "")
    if wait_s:
        raise Problem(
            429,
            "too many requests from this address: try again later",
            {"Retry-After": str(int(wait_s) + 1)},
        )


PublicId = Annotated[str, Path(pattern=public.PUBLIC_ID_PATTERN, description="on the certificate")]
# The page's language switch (as the PDF's ?language=): default the certificate's language,
# English for a page without a certificate.
PageLanguage = Annotated[
    Language | None, Query(description="default: the certificate's customer's language")
]
router = APIRouter(
    dependencies=[Depends(limited)],
    responses={429: {"description": "over COLDTRACE_PUBLIC_RATE_PER_MIN from this address"}},
)


def _base(settings: Settings) -> str:
    """The path the API is reached under (COLDTRACE_PUBLIC_URL's), for the page's links."""
    return urlsplit(settings.public_url).path.rstrip("/")


def _page(
    settings: Settings,
    t: Writer,
    language: str | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """The page written by ``t``; ``language`` the visitor's explicit choice (?language=),
    kept in the page's links."""
    defaults: dict[str, Any] = {"certificate": None, "missing": False, "checked": None}
    html = templates.get_template("verify.html").render(
        defaults | context,
        base=_base(settings),
        t=t,
        q=f"?language={language}" if language else "",
        languages=LANGUAGE_NAMES,
    )
    return HTMLResponse(html, status_code, headers=HEADERS)


def _plain_writer(language: str | None) -> Writer:
    """The words of a page without a certificate: the visitor's language, else English;
    no time is shown."""
    return Writer(language or "en", "UTC")


def _stored(session: DbSession, public_id: str) -> Certificate:
    found = public.by_public_id(session, public_id)
    if found is None:
        raise Problem(404, "no certificate has this address")
    return found


@router.get("/v", response_class=HTMLResponse, tags=["public"])
def upload_page(settings: AppSettings, language: PageLanguage = None) -> HTMLResponse:
    """The page where a visitor drops a certificate file to check it."""
    t = _plain_writer(language)
    return _page(settings, t, language, title=t("page.check_title"))


@router.get("/v/{public_id}", response_class=HTMLResponse, tags=["public"])
def certificate_page(
    public_id: Annotated[str, Path(description="on the certificate and in its QR code")],
    session: DbSession,
    settings: AppSettings,
    language: PageLanguage = None,
) -> HTMLResponse:
    """The certificate at this address: its facts and whether it is valid, invalid (why) or
    superseded (by which version), in its customer's language (else ``language``) and time
    zone. 404: no certificate has this address (the same page for any address that is not
    one, well-formed or not)."""
    found = public.by_public_id(session, public_id) if _well_formed(public_id) else None
    if found is None:
        t = _plain_writer(language)
        return _page(settings, t, language, 404, title=t("page.not_found_title"), missing=True)
    status = public.stored_status(session, settings.certificate_public_keys, found)
    t = page_writer(found.body, language)
    certificate = envelope(found)
    v = page_view(certificate, t)
    return _page(
        settings,
        t,
        language,
        title=v["title"],
        certificate=certificate,
        v=v,
        status=status,
        public_id=found.public_id,
        document=has_document(found.body),
    )


def _document(
    session: DbSession,
    public_id: str,
    source: Source,
    settings: AppSettings,
    language: PageLanguage,
) -> tuple[Certificate, DocumentRequest]:
    """The version and what either renderer needs of it (in its customer's language, else
    ``language``)."""
    found = _stored(session, public_id)
    # Versions issued before certificates carried what the document shows (the customer's
    # time zone, the issuer, ...) have only the page's table.
    if not has_document(found.body):
        raise Problem(404, "this version has no document: it was issued before they existed")
    logo = settings.certificate_issuer_logo
    return found, version_document(session, found, source, settings.public_url, logo, language)


def _well_formed(public_id: str) -> bool:
    return re.fullmatch(public.PUBLIC_ID_PATTERN, public_id) is not None


@router.get("/v/{public_id}/document", response_class=HTMLResponse, tags=["public"])
def certificate_document(
    public_id: PublicId,
    session: DbSession,
    source: Source,
    settings: AppSettings,
    language: PageLanguage = None,
) -> HTMLResponse:
    """The certificate as the PDF shows it (coldtrace.certificates.document's HTML, in its
    customer's language, else ``language``, and time zone), framed by the page. 404 for
    versions issued before certificates carried that content (the page's table shows their
    facts)."""
    _, request = _document(session, public_id, source, settings, language)
    html = certificate_html(request)
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
    return HTMLResponse(html, headers=HEADERS | {"Content-Security-Policy": csp})


def _download(found: Certificate, content: bytes, media_type: str, extension: str) -> Response:
    name = public.download_name(found, extension)
    return Response(
        content,
        media_type=media_type,
        headers=HEADERS | {"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/v/{public_id}/certificate.json", tags=["public"])
def certificate_json(public_id: PublicId, session: DbSession) -> Response:
    """The signed certificate JSON, as GET /api/v1/certificates/{id} returns it."""
    found = _stored(session, public_id)
    return _download(found, public.dumps(envelope(found)), "application/json", "json")


@router.get(
    "/v/{public_id}/certificate.pdf",
    tags=["public"],
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "the document"}},
)
def certificate_pdf(
    public_id: PublicId,
    session: DbSession,
    source: Source,
    settings: AppSettings,
    language: PageLanguage = None,
) -> Response:
    """The certificate as a PDF/A-3 in its customer's language (else ``language``), the
    signed JSON attached (as GET /api/v1/certificates/{id}/pdf)."""
    found, request = _document(session, public_id, source, settings, language)
    return _download(found, render_pdf(request), "application/pdf", "pdf")


async def _read(file: UploadFile) -> bytes:
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise Problem(413, f"the file is over {MAX_UPLOAD_BYTES // 1024 // 1024} MB")
    return data


@router.post("/v", response_class=HTMLResponse, tags=["public"])
async def check_upload(
    file: Annotated[UploadFile, File(description="a certificate PDF, or its JSON (one or a list)")],
    session: DbSession,
    settings: AppSettings,
    language: PageLanguage = None,
) -> HTMLResponse:
    """A visitor's certificate file checked with the strict verification
    (coldtrace.signing.check_all) and, when this installation issued it, whether it was
    superseded: the page again, with a row per certificate (in ``language``, else English:
    a file may hold several certificates)."""
    data = await _read(file)
    t = _plain_writer(language)
    try:
        checked = public.check_file(session, settings.certificate_public_keys, data)
    except signing.Unreadable as exc:
        title = t("page.not_a_certificate")
        return _page(settings, t, language, 422, title=title, checked=[], unreadable=str(exc))
    states = ", ".join(t("state." + c.status.state) for c in checked)
    title = f"{t('page.checked_title')}{t('colon')}{states}"
    return _page(settings, t, language, title=title, checked=checked)


class PublicStatus(BaseModel):
    """A certificate's standing: ``state`` valid, invalid (``why``) or superseded (by
    ``superseded_by``, a version number, whose page is ``superseded_by_url``)."""

    state: State
    why: str
    superseded_by: int | None
    superseded_by_url: str | None


class PublicCertificate(PublicStatus):
    certificate: dict[str, Any]


class PublicChecked(PublicStatus):
    delivery: int | None
    version: int | None
    verdict: str | None


def _status_out(settings: Settings, status: Status) -> dict[str, Any]:
    newer = status.newer
    return {
        "state": status.state,
        "why": status.why,
        "superseded_by": None if newer is None else newer.version,
        "superseded_by_url": None
        if newer is None
        else f"{settings.public_url.rstrip('/')}/v/{newer.public_id}",
    }


@router.get("/api/v1/public/certificates/{public_id}", tags=["public"])
def certificate_status(
    public_id: PublicId, session: DbSession, settings: AppSettings
) -> PublicCertificate:
    """No key needed: the certificate at this public id and its standing (as the page)."""
    found = _stored(session, public_id)
    status = public.stored_status(session, settings.certificate_public_keys, found)
    return PublicCertificate(**_status_out(settings, status), certificate=envelope(found))


@router.post("/api/v1/public/verify", tags=["public"])
async def verify_file(
    file: Annotated[UploadFile, File(description="a certificate PDF, or its JSON (one or a list)")],
    session: DbSession,
    settings: AppSettings,
) -> list[PublicChecked]:
    """No key needed: the page's check of a file, as JSON (one answer per certificate;
    422 when the file holds none)."""
    data = await _read(file)
    try:
        checked = public.check_file(session, settings.certificate_public_keys, data)
    except signing.Unreadable as exc:
        raise Problem(422, f"file: {exc}") from None
    return [_checked_out(settings, c) for c in checked]


def _checked_out(settings: Settings, c: Checked) -> PublicChecked:
    return PublicChecked(
        **_status_out(settings, c.status), delivery=c.delivery, version=c.version, verdict=c.verdict
    )

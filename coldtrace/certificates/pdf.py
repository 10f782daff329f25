"""The certificate's PDF: the document's content (coldtrace.certificates.view, the same as
the verification page's HTML) typeset by Typst from templates/certificate.typ into a one- or
two-page A4 PDF/A-3b, fonts (DejaVu Sans) embedded, with the signed certificate (the API's
JSON) attached as ``certificate.json``. docs/certificates.md "The document" says why Typst
for the PDF and HTML for the page.
"""

from __future__ import annotations

import base64
import json
import logging
import threading

import typst

from coldtrace.certificates.document import ATTACHMENT, TEMPLATES, DocumentRequest
from coldtrace.certificates.view import document_view

log = logging.getLogger(__name__)

_local = threading.local()


def _compiler() -> typst.Compiler:
    """This thread's Typst compiler, kept between documents: building one loads the fonts
    (a few ms), and a compiler is not shared across threads."""
    compiler: typst.Compiler | None = getattr(_local, "compiler", None)
    if compiler is None:
        compiler = _local.compiler = typst.Compiler(
            str(TEMPLATES / "certificate.typ"), root=str(TEMPLATES)
        )
    return compiler


def render_pdf(request: DocumentRequest) -> bytes:
    """The PDF/A-3b of ``request.certificate``, with the certificate's JSON attached as
    ``certificate.json`` (relationship Source). NoDocument for a version issued before
    certificates carried the document's content."""
    view = document_view(request)
    view["logo"] = _logo_bytes(request.logo)
    signed = json.dumps(request.certificate, ensure_ascii=False, indent=1)
    pdf, warnings = _compiler().compile_with_warnings(
        format="pdf",
        pdf_standards=["a-3b"],
        sys_inputs={
            "view": json.dumps(view, ensure_ascii=False),
            "signed": signed,
            "attachment": ATTACHMENT,
        },
    )
    for warning in warnings:  # a font missing, say: the PDF still renders, the log says why
        log.warning("certificate PDF: %s", warning.message)
    if not isinstance(pdf, bytes):  # a list of pages comes only for PNG and SVG
        raise TypeError(f"Typst returned {type(pdf).__name__}, not one PDF")
    return pdf


def _logo_bytes(logo: str | None) -> list[int] | None:
    """The logo's bytes (from its data: URI) as the template's ``bytes`` takes them."""
    if logo is None:
        return None
    return list(base64.b64decode(logo.split(",", 1)[1]))

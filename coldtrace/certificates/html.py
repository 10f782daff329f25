"""The certificate document as HTML, for the verification page (/v/<public_id>/document):
templates/certificate.html (Jinja2, autoescaped) laying out the document's content
(coldtrace.certificates.view), the same as its PDF; pictures as data: URIs.
"""

from __future__ import annotations

import base64
from functools import cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from coldtrace.certificates.document import TEMPLATES, DocumentRequest
from coldtrace.certificates.view import document_view


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def _css() -> str:
    return (TEMPLATES / "certificate.css").read_text(encoding="utf-8")


def _image(svg: str) -> str:
    """An <img> of the SVG (a data: URI), as the PDF draws it (a picture, not part of the
    page's own markup): the page's style does not reach into it."""
    return f'<img alt="" src="data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()}">'


def certificate_html(request: DocumentRequest) -> str:
    """The document's HTML for ``request.certificate``. NoDocument for a version issued
    before certificates carried the document's content."""
    view = document_view(request)
    return (
        _environment()
        .get_template("certificate.html")
        .render(
            v=view,
            css=_css(),
            logo=request.logo,
            charts=[{"title": x["title"], "img": _image(x["svg"])} for x in view["charts"]],
            route=_image(view["route"]["svg"]) if view["route"] else "",
            qr=_image(view["signature"]["qr"]) if view["signature"]["qr"] else "",
        )
    )

"""The certificate as a document for people, in the customer's language and time zone:
whether a version has one, what it shows beyond the body's own values
(``certificate_content``: limits as text, the charts, route and QR code as SVG), and the
signed certificate read back from its PDF (``extract_signed_json``). Its content as data:
coldtrace.certificates.view; its PDF: .pdf; its HTML for the verification page: .html.
docs/certificates.md "The document" says why these libraries.
"""

from __future__ import annotations

import base64
import io
import logging
import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import segno
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from alerts.evaluation import ProbeKey
from coldtrace.certificates.charts import ProbeChart, probe_chart, route_plot
from coldtrace.certificates.i18n import LANGUAGES, Writer

# pypdf warns about each flaw of a damaged file: noise in the API's log and on the CLI's
# stderr (a file that cannot be read is reported once, by extract_signed_json).
logging.getLogger("pypdf").setLevel(logging.ERROR)

TEMPLATES: Final = Path(__file__).with_name("templates")
ATTACHMENT: Final = "certificate.json"
# Rows of the breach table that fit the first page beside everything else; the rest are in
# the attached JSON (the document says so).
MAX_BREACHES: Final = 8
# Charts that fit the second page beside the signature block.
MAX_CHARTS: Final = 4


# What the document shows beyond the figures: versions issued before certificates carried
# these (coldtrace.certificates.content) have no document.
DOCUMENT_FIELDS: Final = frozenset(
    {"judged_against", "issuer", "customer", "timezone", "pickup", "dropoff", "signer"}
)


class NoDocument(ValueError):
    """A version issued before certificates carried what the document shows."""


def has_document(body: Mapping[str, Any]) -> bool:
    """Whether a version's body carries what its document shows (DOCUMENT_FIELDS)."""
    return body.keys() >= DOCUMENT_FIELDS


class NotACertificatePdf(ValueError):
    """A file that is not a PDF, or a PDF without a certificate attached; the message says
    which, in one line."""


@dataclass(frozen=True, slots=True)
class Readings:
    """What the pictures are drawn from: per compartment probe, its readings (epoch ms, C or
    None for a fault) in time order, and the GPS fixes (lat, lon) in time order."""

    samples: Mapping[ProbeKey, Sequence[tuple[int, float | None]]] = field(default_factory=dict)
    fixes: Sequence[tuple[float, float]] = ()


@dataclass(frozen=True, slots=True)
class DocumentRequest:
    """What either form of a certificate's document is made from (its PDF:
    coldtrace.certificates.pdf.render_pdf; its HTML: .html.certificate_html), built once
    (coldtrace.certificates.render.version_document for a stored version): ``certificate``
    an envelope as the API returns it, its body from coldtrace.certificates.content;
    ``readings`` what the pictures are drawn from (none: no charts, no route);
    ``verify_url`` the public verification address for the QR code (None: no code);
    ``logo`` the issuer's logo as a data: URI (logo_uri; None: no logo); ``language`` "en"
    or "fr" (None: the body's customer language)."""

    certificate: Mapping[str, Any]
    readings: Readings = field(default_factory=Readings)
    verify_url: str | None = None
    logo: str | None = None
    language: str | None = None


def _ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _range_text(t: Writer, limits: Mapping[str, Any]) -> str:
    low, high = limits.get("low_c"), limits.get("high_c")
    if low is not None and high is not None:
        return f"{t.celsius(low)} … {t.celsius(high)}"
    return f"≥ {t.celsius(low)}" if low is not None else f"≤ {t.celsius(high)}"


def _critical_text(t: Writer, limits: Mapping[str, Any]) -> str:
    parts = []
    if limits.get("critical_low_c") is not None:
        parts.append(f"< {t.celsius(limits['critical_low_c'])}")
    if limits.get("critical_high_c") is not None:
        parts.append(f"> {t.celsius(limits['critical_high_c'])}")
    return " / ".join(parts)


def _charts(body: Mapping[str, Any], readings: Readings, t: Writer) -> list[dict[str, str]]:
    limits = body["judged_against"]
    start, end = _ms(body["start"]), _ms(body["end"])
    charts = []
    for p in body["probes"][:MAX_CHARTS]:
        key = (p["device"], p["probe"])
        mine = [
            (_ms(x["start"]), _ms(x["end"]) if x["end"] else end)
            for x in body["breaches"]
            if (x["device"], x["probe"]) == key and not x["suppressed"]
        ]
        gaps = [
            (_ms(g["start"]), _ms(g["end"]))
            for g in body["gaps"]
            if (g["device"], g["probe"]) == key
        ]
        points = [(ts, c) for ts, c in readings.samples.get(key, ()) if c is not None]
        chart = ProbeChart(points, start, end, limits["low_c"], limits["high_c"], mine, gaps)
        charts.append(
            {
                "title": f"{p['device']} / {p['probe']}",
                "svg": probe_chart(chart, body["timezone"], t.number),
            }
        )
    return charts


def _route(body: Mapping[str, Any], readings: Readings) -> str:
    if not readings.fixes:
        return ""
    where = [(x["where"]["lat"], x["where"]["lon"]) for x in body["breaches"] if x["where"]]
    pickup = (body["pickup"]["lat"], body["pickup"]["lon"])
    dropoff = (body["dropoff"]["lat"], body["dropoff"]["lon"])
    return route_plot(readings.fixes, pickup, dropoff, where)


def _qr(url: str | None) -> str:
    if url is None:
        return ""
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", xmldecl=False, svgns=True, border=1)
    return buffer.getvalue().decode()


def certificate_content(
    certificate: Mapping[str, Any], readings: Readings, verify_url: str | None, t: Writer
) -> dict[str, Any]:
    """What both forms of the document (this HTML, coldtrace.certificates.pdf) compute
    beyond the body's own values: the range and critical limits as text, a chart per probe
    (at most MAX_CHARTS: ``title``, ``svg``), the route and the QR code (SVG text, "" when
    there are no fixes or no ``verify_url``)."""
    body = certificate["body"]
    return {
        "range_text": _range_text(t, body["judged_against"]),
        "critical_text": _critical_text(t, body["judged_against"]),
        "charts": _charts(body, readings, t),
        "route": _route(body, readings),
        "qr": _qr(verify_url),
    }


def document_writer(body: Mapping[str, Any], language: str | None = None) -> Writer:
    """The words, numbers and times of ``body``'s document in ``language`` ("en", "fr"; None:
    the body's customer language) and the body's time zone. NoDocument for a version issued
    before certificates carried the document's content."""
    if not has_document(body):
        raise NoDocument(
            f"version {body.get('version')} of delivery {body.get('delivery_id')} was issued "
            "before certificates had documents"
        )
    return Writer(language or language_of(body), body["timezone"])


def logo_uri(path: Path | None) -> str | None:
    """The issuer's logo file as a data: URI (None: no logo)."""
    if path is None:
        return None
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def language_of(body: Mapping[str, Any]) -> str:
    """The body's customer language when the document knows it, else English."""
    language = str(body.get("customer", {}).get("language", "en"))
    return language if language in LANGUAGES else "en"


def extract_signed_json(pdf: bytes) -> str:
    """The JSON text of the certificate attached to a PDF this module made
    (``certificate.json``), as attached: read it with coldtrace.signing.read_certificates,
    which keeps what the strict check needs (duplicate keys). Raises NotACertificatePdf for
    anything else."""
    if not pdf.startswith(b"%PDF-"):
        raise NotACertificatePdf("not a PDF (it does not start with %PDF-)")
    try:
        attached = PdfReader(io.BytesIO(pdf)).attachments.get(ATTACHMENT)
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise NotACertificatePdf(f"a PDF that cannot be read: {exc}") from None
    if not attached:
        raise NotACertificatePdf(f"a PDF without {ATTACHMENT} attached: not a certificate")
    try:
        return attached[0].decode("utf-8")
    except UnicodeDecodeError:
        raise NotACertificatePdf(f"its {ATTACHMENT} is not UTF-8 text") from None

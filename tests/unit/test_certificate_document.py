"""The certificate document (coldtrace/certificates/document.py) of the scripted delivery
(tests/unit/test_certificate_content.py), read as a person and an auditor would: its pages
as PNG (pdftoppm), its text (pdftotext) in French and in English, and the signed JSON
attached to it, which verifies offline."""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pypdf import PdfReader

from alerts.evaluation import LiveBreach, evaluate, locate
from coldtrace import signing
from coldtrace.certificates.charts import BREACH, GAP, ProbeChart, probe_chart, route_plot
from coldtrace.certificates.content import certificate_body
from coldtrace.certificates.document import (
    DocumentRequest,
    NoDocument,
    NotACertificatePdf,
    Readings,
    extract_signed_json,
    logo_uri,
)
from coldtrace.certificates.html import certificate_html
from coldtrace.certificates.pdf import render_pdf
from coldtrace.certificates.view import document_view, page_view, page_writer
from tests.conftest import pdf_text
from tests.unit.test_certificate_content import (
    CONTEXT,
    DELIVERY,
    DEVICE,
    MIN,
    PROFILE,
    T0,
    samples,
    scripted_body,
    track,
)

pytestmark = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="poppler-utils (deploy/bootstrap.sh)",
)
KEY = Ed25519PrivateKey.generate()
URL = "https://certs.example.org/v/Xq3k9v_Jr2mN8pT4wL6yHA"


def signed(made: tuple[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The scripted body (or ``made``: verdict, body) as issued: version, public id, signed
    (as the API returns it)."""
    verdict, body = made or scripted_body()
    body = body | {"version": 1, "public_id": "Xq3k9v_Jr2mN8pT4wL6yHA"}
    return {
        "id": 7,
        "delivery_id": body["delivery_id"],
        "version": 1,
        "issued": "2026-01-05T11:00:00Z",
        "superseded": None,
        "verdict": verdict,
        "body": body,
        "algorithm": "Ed25519",
        "signature": signing.sign(KEY, body),
        "key_id": signing.key_id(KEY.public_key()),
    }


def readings() -> Readings:
    return Readings(
        {key: [(s.ts, s.celsius) for s in series] for key, series in samples().items()},
        [(p.lat, p.lon) for p in track()],
    )


def scripted(certificate: dict[str, Any] | None = None, **kw: Any) -> DocumentRequest:
    """The document of ``certificate`` (else the scripted one, signed()) with the scripted
    readings and address; ``kw``: the request's logo, language."""
    return DocumentRequest(certificate or signed(), readings(), URL, **kw)


def page_count(pdf: bytes, tmp_path: Path) -> int:
    (tmp_path / "c.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "40", "-png", "c.pdf", "page"], cwd=tmp_path, check=True)
    return len(list(tmp_path.glob("page-*.png")))


def test_the_french_pdf_says_the_verdict_mkt_and_breach_times_in_paris_time(
    tmp_path: Path,
) -> None:
    pdf = render_pdf(scripted())  # the customer's language: French
    assert page_count(pdf, tmp_path) == 2
    text = pdf_text(pdf, tmp_path)
    assert "Certificat de température" in text
    assert "NON CONFORME" in text
    assert "Température cinétique moyenne 5,9 °C" in text
    # The excursion 08:30..08:50 UTC is 09:30..09:50 in Paris (UTC+01:00 in January).
    assert "05/01/2026 09:30 (UTC+01:00)" in text
    assert "05/01/2026 09:50 (UTC+01:00)" in text
    assert "EXPIRÉ · CAL-2024-118" in text
    assert "05/01/2026 10:10 (UTC+01:00) \u2013 10:30 (20 min)" in text  # the data gap
    assert URL in text  # the QR code's address, printed too


def test_the_english_pdf_says_the_same(tmp_path: Path) -> None:
    pdf = render_pdf(scripted(language="en"))
    assert page_count(pdf, tmp_path) == 2
    text = pdf_text(pdf, tmp_path)
    assert "Temperature certificate" in text
    assert "NOT COMPLIANT" in text
    assert "Mean kinetic temperature 5.9 °C" in text
    assert "2026-01-05 09:30 (UTC+01:00)" in text
    assert "2026-01-05 09:50 (UTC+01:00)" in text
    assert "above the range" in text


def test_the_attached_json_verifies_offline_and_a_tampered_one_does_not() -> None:
    certificate = signed()
    pdf = render_pdf(scripted(certificate))
    [attached] = signing.read_certificates(extract_signed_json(pdf))
    assert attached == certificate
    assert signing.check([KEY.public_key()], attached) == ""
    forged = signed()
    forged["body"]["verdict"] = forged["verdict"] = "compliant"
    [read] = signing.read_certificates(extract_signed_json(render_pdf(scripted(forged))))
    assert "changed after signing" in signing.check([KEY.public_key()], read)


def test_without_readings_or_url_it_still_renders(tmp_path: Path) -> None:
    """A delivery whose readings are gone (past retention): no charts, route or QR code."""
    pdf = render_pdf(DocumentRequest(signed()))
    assert 1 <= page_count(pdf, tmp_path) <= 2
    assert "NON CONFORME" in pdf_text(pdf, tmp_path)


def test_the_pdf_declares_pdf_a_3b_and_carries_its_json_as_source(tmp_path: Path) -> None:
    """What PDF/A-3b asks of the file that can be read back without a validator (veraPDF
    cannot be installed here: docs/certificates.md): the XMP identification, an sRGB output
    intent with its ICC profile, the attachment associated with the document as its Source
    with a MIME type, every font embedded, no encryption."""
    pdf = render_pdf(scripted())
    reader = PdfReader(io.BytesIO(pdf))
    root = reader.trailer["/Root"]
    xmp = root["/Metadata"].get_object().get_data().decode()
    assert "<pdfaid:part>3</pdfaid:part>" in xmp
    assert "<pdfaid:conformance>B</pdfaid:conformance>" in xmp
    [intent] = [x.get_object() for x in root["/OutputIntents"]]
    assert intent["/S"] == "/GTS_PDFA1" and intent["/DestOutputProfile"].get_object().get_data()
    [spec] = [x.get_object() for x in root["/AF"]]
    assert (spec["/F"], spec["/UF"], spec["/AFRelationship"]) == (
        "certificate.json",
        "certificate.json",
        "/Source",
    )
    assert spec["/EF"]["/F"].get_object()["/Subtype"] == "/application/json"
    assert not reader.is_encrypted
    (tmp_path / "c.pdf").write_bytes(pdf)
    listed = subprocess.run(
        ["pdffonts", "c.pdf"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.splitlines()[2:]  # after the header and its rule
    assert {line.split()[0].split("+")[1] for line in listed} == {
        "DejaVuSans",
        "DejaVuSans-Bold",
        "DejaVuSansMono",
    }
    assert all(line.split()[-5] == "yes" for line in listed)  # the "emb" column


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"id": 1}', "not a PDF"),
        (b"%PDF-1.7\n%garbage", "a PDF that cannot be read"),
    ],
)
def test_not_a_certificate_pdf(data: bytes, message: str) -> None:
    with pytest.raises(NotACertificatePdf, match=message):
        extract_signed_json(data)


def test_a_chart_draws_no_line_across_a_data_gap_and_shades_it() -> None:
    minute = 60_000
    points = [(m * minute, 4.0) for m in (*range(11), *range(30, 41))]
    gap, breach = (10 * minute, 30 * minute), (35 * minute, 40 * minute)
    chart = ProbeChart(points, 0, 40 * minute, 2.0, 8.0, [breach], [gap])
    svg = probe_chart(chart, "Europe/Paris", str)
    assert svg.count("<polyline") == 2  # 0..10 and 30..40, nothing drawn over the gap
    assert svg.count(f'fill="{GAP}"') == 1 and svg.count(f'fill="{BREACH}"') == 1
    assert ">01:00<" in svg  # the axis in local time: 00:00 UTC is 01:00 in Paris


def test_the_route_marks_pickup_dropoff_and_each_breach() -> None:
    fixes = [(48.0 + i / 1000, 2.0 + i / 1000) for i in range(1000)]
    svg = route_plot(fixes, fixes[0], fixes[-1], [fixes[300], fixes[600]])
    assert svg.count("<polyline") == 1 and svg.count('fill="#c62828"') == 2
    assert svg.count("<circle") == 4


@pytest.mark.parametrize(
    ("language", "gaps", "breaches"),
    [("fr", ("Lacunes de données", "aucune"), "aucun"), ("en", ("Data gaps", "none"), "none")],
)
def test_no_gap_and_no_breach_agree_with_their_noun(
    language: str, gaps: tuple[str, str], breaches: str
) -> None:
    """French "aucun" agrees with its noun: "Lacunes de données : aucune" (was "aucun"),
    "Écarts : aucun"."""
    certificate = signed()
    certificate["body"] |= {"gaps": [], "breaches": []}
    view = document_view(scripted(certificate, language=language))
    label, none = gaps
    assert view["sections"][2]["rows"][-1] == (label, [(none, "")])  # figures: gaps last
    assert (view["breaches"]["rows"], view["breaches"]["none"]) == ([], breaches)


def test_a_body_from_before_documents_is_refused() -> None:
    old = signed() | {"body": {"delivery_id": 42, "version": 1, "verdict": "compliant"}}
    with pytest.raises(NoDocument, match="version 1 of delivery 42 was issued before"):
        render_pdf(DocumentRequest(old))


def test_the_issuers_logo_is_drawn(tmp_path: Path) -> None:
    logo = tmp_path / "logo.svg"
    logo.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 10">'
        '<rect width="40" height="10" fill="#1f4e79"/></svg>'
    )
    html = certificate_html(DocumentRequest(signed(), verify_url=URL, logo=logo_uri(logo)))
    assert 'src="data:image/svg+xml;base64,' in html.split("<h1>")[0]  # in the header
    assert page_count(render_pdf(scripted(logo=logo_uri(logo))), tmp_path) == 2


def warm_at_dropoff() -> tuple[str, dict[str, Any]]:
    """The scripted delivery, but the product at 9.5 C again from minute 95 to drop-off
    (minute 120): an excursion still under way when the delivery ended, 25 minutes long
    then (the first one lasted 20; the live stage found both)."""
    series = samples()
    product = (DEVICE, "product")
    series[product] = [
        replace(s, celsius=9.5) if s.ts >= T0 + 95 * MIN else s for s in series[product]
    ]
    live = [
        LiveBreach(DEVICE, "product", "excursion_high", T0 + 30 * MIN, False, 11),
        LiveBreach(DEVICE, "product", "excursion_high", T0 + 95 * MIN, False, 12),
    ]
    e = evaluate(series, PROFILE, {}, T0, T0 + 120 * MIN, live=live)
    return certificate_body(DELIVERY, locate(e, {DEVICE: track()}), CONTEXT)


@pytest.mark.parametrize(
    ("language", "start", "end", "ongoing"),
    [
        (
            "fr",
            "05/01/2026 10:35 (UTC+01:00)",
            "05/01/2026 11:00 (UTC+01:00)",
            "en cours à la remise",
        ),
        (
            "en",
            "2026-01-05 10:35 (UTC+01:00)",
            "2026-01-05 11:00 (UTC+01:00)",
            "ongoing at drop-off",
        ),
    ],
)
def test_a_breach_under_way_at_dropoff_ends_at_dropoff_marked_so(
    tmp_path: Path, language: str, start: str, end: str, ongoing: str
) -> None:
    """The JSON keeps its end null (the evaluation's window ended, not the breach); page and
    PDF said "open"/"en cours" with no end, while `coldtrace breaches list` and the demo end
    it at the delivery's end: they show that end (11:00 in Paris), marked as still under
    way, and its duration to then (25 min; the verification page's table the same:
    test_certificate_public.py)."""
    certificate = signed(warm_at_dropoff())
    breaches = certificate["body"]["breaches"]
    assert [(x["start"], x["end"], x["duration_min"]) for x in breaches] == [
        ("2026-01-05T08:30:00Z", "2026-01-05T08:50:00Z", 20.0),
        ("2026-01-05T09:35:00Z", None, None),
    ]
    assert certificate["body"]["end"] == "2026-01-05T10:00:00Z"  # drop-off
    view = document_view(scripted(certificate, language=language))
    [_, last] = view["breaches"]["rows"]
    assert last[2:5] == [[(start, "")], [(f"{end}\n{ongoing}", "")], [("25\u202fmin", "")]]
    html = certificate_html(scripted(certificate, language=language))
    assert f"<td>{end}<br>{ongoing}</td><td>25\u202fmin</td>" in html
    text = pdf_text(render_pdf(scripted(certificate, language=language)), tmp_path)
    assert f"{start} {end} {ongoing} 25 min" in text  # the row's cells, as drawn
    assert text.count("25 min") == 1  # the ongoing one's duration; the first one: 20 min
    # The verification page's table writes them the same way (test_certificate_public.py).
    page = page_view(certificate, page_writer(certificate["body"], language))
    [_, row] = page["breaches"]["rows"]
    assert row[3:6] == [[(start, "")], [(f"{end} ({ongoing})", "")], [("25\u202fmin", "")]]


@pytest.mark.parametrize(
    ("language", "detail", "section", "rows"),
    [
        (
            "fr",
            "Référentiel\u00a0: Produits pharmaceutiques réfrigérés (pharma), "
            "2,0\u202f°C … 8,0\u202f°C · Température cinétique moyenne 5,9\u202f°C",
            "Livraison",
            ["Client", "Enlèvement", "Remise", "Véhicule / compartiment"],
        ),
        (
            "en",
            "Judged against: Pharmaceutical, refrigerated (pharma), "
            "2.0\u202f°C … 8.0\u202f°C · Mean kinetic temperature 5.9\u202f°C",
            "Delivery",
            ["Customer", "Pickup", "Drop-off", "Vehicle / compartment"],
        ),
    ],
)
def test_the_profile_is_named_in_the_readers_language_and_the_dropoff_apart_from_its_section(
    tmp_path: Path, language: str, detail: str, section: str, rows: list[str]
) -> None:
    """The French PDF said "Référentiel : Pharmaceutical, refrigerated" (the shipped
    profile's English name), and its "Livraison" section had a row "Livraison" (the
    drop-off): the shipped name is translated, the row is "Remise" ("Drop-off")."""
    view = document_view(scripted(language=language))
    assert view["verdict"]["detail"] == detail
    [delivery, *_] = view["sections"]
    assert (delivery["title"], [label for label, _ in delivery["rows"]]) == (section, rows)
    text = pdf_text(render_pdf(scripted(language=language)), tmp_path)
    assert " ".join(detail.split()) in text  # pdftotext: one space between words
    # The delivery's number ("Livraison ORD-4711") and its section's heading, no row.
    assert text.count(section) == 2 and rows[2] in text


def test_a_custom_profile_keeps_its_name_in_french() -> None:
    certificate = signed()
    certificate["body"]["judged_against"] |= {"profile": "vaccines", "name": "Vaccins, PO-12"}
    view = document_view(scripted(certificate))
    assert view["verdict"]["detail"].startswith("Référentiel\u00a0: Vaccins, PO-12 (vaccines), ")


def test_the_verification_page_speaks_the_customers_language_in_its_time_zone() -> None:
    """The page's own table was English with the JSON's UTC times whatever the customer's
    language: it follows the signed body's language and time zone, as the document does
    (the reasons stay as signed, labelled so)."""
    certificate = signed()
    t = page_writer(certificate["body"])
    assert (t.language, t.zone) == ("fr", "Europe/Paris")
    page = page_view(certificate, t)
    assert page["title"] == "Certificat 42 v1"
    assert page["facts"] == [
        ("Livraison", [("ORD-4711 (n° 42)", "")]),
        ("Version", [("1, émise le 05/01/2026 12:00 (UTC+01:00)", "")]),
        ("Verdict", [("NON CONFORME", "b")]),
        ("Motifs (texte signé, en anglais)", [("\n".join(certificate["body"]["reasons"]), "")]),
        ("Client", [("hopital-nord", "")]),
        ("Profil de produit", [("Produits pharmaceutiques réfrigérés (pharma)", "")]),
        ("Véhicule / compartiment", [("van-07 / chiller", "")]),
        ("Du, au", [("05/01/2026 09:00 (UTC+01:00) \u2013 05/01/2026 11:00 (UTC+01:00)", "")]),
        ("Heures en", [("Europe/Paris", "")]),
        ("Relevés", [("223", "")]),
        ("Min / max / moyenne", [("4,0\u202f°C / 9,5\u202f°C / 5,0\u202f°C", "")]),
        ("Température cinétique moyenne", [("5,9\u202f°C", "")]),
        ("Temps dans la plage", [("1\u202fh\u202f40\u202fmin", "")]),
        ("Temps hors plage", [("20\u202fmin", "")]),
        ("Lacunes de données", [("1", "")]),
        ("Signé", [("Ed25519, clé ", ""), (certificate["key_id"], "mono")]),
    ]
    assert page["breaches"] == {
        "header": ["Règle", "Sonde", "Gravité", "Début", "Fin", "Durée", "Pic"],
        "rows": [
            [
                [("au-dessus de la plage", "")],
                [("van-07 / product", "")],
                [("majeur", "")],
                [("05/01/2026 09:30 (UTC+01:00)", "")],
                [("05/01/2026 09:50 (UTC+01:00)", "")],
                [("20\u202fmin", "")],
                [("9,5\u202f°C", "")],
            ]
        ],
    }
    english = page_view(certificate, page_writer(certificate["body"], "en"))  # ?language=en
    assert english["facts"][:3] == [
        ("Delivery", [("ORD-4711 (no. 42)", "")]),
        ("Version", [("1, issued 2026-01-05 12:00 (UTC+01:00)", "")]),
        ("Verdict", [("NOT COMPLIANT", "b")]),
    ]
    assert english["breaches"]["rows"][0][3] == [("2026-01-05 09:30 (UTC+01:00)", "")]


@pytest.mark.parametrize("timezone", [{}, {"timezone": "Mars/Olympus_Mons"}])
def test_a_version_from_before_documents_has_its_page_in_english_and_utc(
    timezone: dict[str, str],
) -> None:
    """No customer language, no time zone (or one no machine knows: a row changed in the
    database, which the page says is invalid): English, UTC, and only the rows it has."""
    old = signed() | {"body": {"delivery_id": 42, "verdict": "compliant"} | timezone}
    t = page_writer(old["body"])
    assert (t.language, t.zone) == ("en", "UTC")
    assert page_view(old, t) == {
        "title": "Certificate 42 v1",
        "facts": [
            ("Delivery", [("(no. 42)", "")]),
            ("Version", [("1, issued 2026-01-05 11:00 (UTC+00:00)", "")]),
            ("Verdict", [("COMPLIANT", "b")]),
            ("Data gaps", [("0", "")]),
            ("Signed", [("Ed25519, key ", ""), (old["key_id"], "mono")]),
        ],
        "breaches": {
            "header": ["Rule", "Probe", "Severity", "Start", "End", "Duration", "Peak"],
            "rows": [],
        },
    }

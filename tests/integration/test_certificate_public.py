"""The public verification of certificates (no key) on SQLite and PostgreSQL: the page at the
address printed on a certificate says valid / superseded by version n / invalid and why,
checks a visitor's file, is rate limited and refuses enumeration; /docs needs no CDN."""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from coldtrace import signing
from coldtrace.certificates.document import extract_signed_json
from coldtrace.deliveries.models import CertificateMail, Delivery
from coldtrace.deliveries.store import Store
from coldtrace.settings import Settings
from tests.conftest import Api, pdf_text, rotated
from tests.world import MIN, T0, add_breach, iso, plan, run, write_run

PUBLIC_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")


def text_of(fragment: str) -> str:
    """An HTML fragment's text, whitespace collapsed."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", fragment))).strip()


def status_of(page: str) -> str:
    """The text of the page's status line (id="status")."""
    found = re.search(r'id="status" class="status (\w+)">(.*?)</p>', page, re.S)
    assert found, page
    return text_of(found.group(2))


def facts_of(page: str) -> dict[str, str]:
    """The page's facts table (id="facts"): label to text."""
    table = re.search(r'<table id="facts">(.*?)</table>', page, re.S)
    assert table, page
    rows = re.findall(r"<th>(.*?)</th><td[^>]*>(.*?)</td>", table.group(1), re.S)
    return {text_of(label): text_of(value) for label, value in rows}


def breach_cells(page: str, rule: str) -> list[str]:
    """The cells of the page's breaches table row whose rule is written ``rule``."""
    table = re.search(r'<table id="breaches">(.*?)</table>', page, re.S)
    assert table, page
    [row] = [r for r in table.group(1).split("</tr>") if f"<td>{rule}</td>" in r]
    return [text_of(c) for c in re.findall(r"<td>(.*?)</td>", row)]


def versions(api: Api, delivery: int) -> list[dict[str, Any]]:
    """Every version of the delivery's certificate, oldest first."""
    return list(reversed(api.ok("GET", f"/deliveries/{delivery}/certificates")))


def test_each_version_has_a_signed_unguessable_public_id(
    api: Api,
    fleet: tuple[str, str],
    closed_delivery: int,
) -> None:
    _, device = fleet
    add_breach(api, device, T0 + 15 * MIN, T0 + 25 * MIN)  # found late: version 2
    api.ok("POST", f"/deliveries/{closed_delivery}/reevaluate")
    v1, v2 = versions(api, closed_delivery)
    ids = [v1["body"]["public_id"], v2["body"]["public_id"]]
    assert all(PUBLIC_ID.match(i) for i in ids) and ids[0] != ids[1]
    # Signed: changing the public id in the body breaks the signature.
    forged = v2 | {"body": v2["body"] | {"public_id": ids[0]}}
    r = api.client.post("/api/v1/public/verify", files={"file": ("c.json", json.dumps(forged))})
    assert r.status_code == 200
    assert [(c["state"], c["why"]) for c in r.json()] == [
        ("invalid", "the signature does not match the body: changed after signing")
    ]


def test_the_page_says_valid_then_superseded_by_the_newer_version(
    api: Api,
    fleet: tuple[str, str],
    closed_delivery: int,
) -> None:
    [v1] = versions(api, closed_delivery)
    page = api.client.get(f"/v/{v1['body']['public_id']}")  # no key
    assert page.status_code == 200
    assert status_of(page.text) == "valid"
    assert '<td id="verdict"><b>COMPLIANT</b></td>' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    # The certificate as the PDF shows it, framed from this host.
    document_url = f"/v/{v1['body']['public_id']}/document"
    assert f'<iframe id="document" src="{document_url}"' in page.text
    document = api.client.get(document_url)
    assert document.status_code == 200
    assert '<div class="verdict compliant">' in document.text
    assert "img-src data:" in document.headers["content-security-policy"]

    _, device = fleet
    add_breach(api, device, T0 + 15 * MIN, T0 + 25 * MIN)
    api.ok("POST", f"/deliveries/{closed_delivery}/reevaluate")
    _, v2 = versions(api, closed_delivery)
    old = api.client.get(f"/v/{v1['body']['public_id']}")
    assert status_of(old.text) == "superseded by version 2"
    assert f'<a href="/v/{v2["body"]["public_id"]}">version 2</a>' in old.text
    assert status_of(api.client.get(f"/v/{v2['body']['public_id']}").text) == "valid"

    answer = api.client.get(f"/api/v1/public/certificates/{v1['body']['public_id']}").json()
    assert (answer["state"], answer["why"], answer["superseded_by"]) == ("superseded", "", 2)
    assert answer["superseded_by_url"] == f"http://127.0.0.1:8000/v/{v2['body']['public_id']}"
    assert answer["certificate"]["signature"] == v1["signature"]
    # What the page offers for download is the certificate as the API gives it.
    download = api.client.get(f"/v/{v1['body']['public_id']}/certificate.json")
    assert json.loads(download.content) == answer["certificate"]
    assert answer["certificate"] | {"superseded": None} == v1 | {"superseded": None}


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils (deploy/bootstrap.sh)")
def test_the_page_ends_a_breach_under_way_at_dropoff_there(
    api: Api,
    fleet: tuple[str, str],
    closed_delivery: int,
    tmp_path: Path,
) -> None:
    """A breach still open when the delivery ended (the signed JSON: end null, no
    duration) read "open" with "None" minutes, then no minutes, while its PDF counted them
    to drop-off: the page ends it at drop-off, marked so, with the PDF's minutes (both from
    coldtrace.certificates.view), as the certificate's document and `coldtrace breaches
    list` show it."""
    _, device = fleet
    add_breach(api, device, T0 + 35 * MIN, None, probe="", rule="device_silent")
    api.ok("POST", f"/deliveries/{closed_delivery}/reevaluate")
    _, v2 = versions(api, closed_delivery)
    [silent] = [x for x in v2["body"]["breaches"] if x["rule"] == "device_silent"]
    assert (silent["end"], silent["duration_min"]) == (None, None)
    page = api.client.get(f"/v/{v2['body']['public_id']}").text
    cells = breach_cells(page, "device silent")
    assert v2["body"]["end"] == iso(T0 + 40 * MIN)  # delivered: drop-off
    # In the customer's time zone (acme has none: COLDTRACE_CERTIFICATE_TIMEZONE, UTC).
    start, end = "2026-01-05 08:35 (UTC+00:00)", "2026-01-05 08:40 (UTC+00:00)"
    assert cells[3:] == [start, f"{end} (ongoing at drop-off)", "5 min", "6.0 °C"]
    for language, ongoing in (("en", "ongoing at drop-off"), ("fr", "en cours à la remise")):
        pdf = api.client.get(
            f"/api/v1/certificates/{v2['id']}/pdf", params={"language": language}, headers=api.admin
        )
        assert pdf.status_code == 200, pdf.text
        text = pdf_text(pdf.content, tmp_path)
        # The row cell by cell, as drawn: the end and its mark, the duration, the peak.
        assert re.search(rf"{ongoing} 5 min 6[.,]0 °C", text), text


def test_a_breach_without_a_peak_shows_none_on_the_page(
    api: Api,
    fleet: tuple[str, str],
    closed_delivery: int,
) -> None:
    """A rule with no temperature of its own (cumulative, door open: ``peak_c`` null in the
    signed JSON) showed "None" in the page's Peak column: it shows none, as the document."""
    [v1] = versions(api, closed_delivery)
    cumulative = {
        "id": 1,
        "device": fleet[1],
        "probe": "product",
        "rule": "cumulative",
        "severity": "major",
        "start": iso(T0 + 10 * MIN),
        "end": iso(T0 + 22 * MIN),
        "duration_min": 12.0,
        "peak_c": None,
    }
    with api.app.state.sessions() as session:
        delivery = session.get_one(Delivery, closed_delivery)
        body = v1["body"] | {"verdict": "not_compliant", "breaches": [cumulative]}
        v2 = Store(session, "test").issue_certificate(
            delivery, "not_compliant", body, api.settings.certificate_key
        )
        session.commit()
        public_id = v2.public_id
    page = api.client.get(f"/v/{public_id}").text
    assert status_of(page) == "valid"
    cells = breach_cells(page, "cumulative time out of range")
    times = ["2026-01-05 08:10 (UTC+00:00)", "2026-01-05 08:22 (UTC+00:00)"]
    assert cells[3:] == [*times, "12 min", "\u2013"]


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils (deploy/bootstrap.sh)")
def test_a_french_customers_page_is_french_in_paris_time_and_switches_to_english(
    api: Api,
    fleet: tuple[str, str],
    influx: Any,
    tmp_path: Path,
) -> None:
    """The page's own table was English with the JSON's UTC times while the framed document
    was French: a French caterer's customer scanning the QR code reads the page in French,
    in the customer's time zone, and ?language=en (the PDF's switch) turns the page, its
    framed document and its PDF to English. The signed JSON stays as signed."""
    vehicle, device = fleet
    customer = {"id": "traiteur", "name": "Traiteur Bellecour", "language": "fr"}
    api.ok("POST", "/customers", json=customer | {"timezone": "Europe/Paris"})
    write_run(influx, device)
    add_breach(api, device, T0 + 35 * MIN, None, probe="", rule="device_silent")
    d = api.ok("POST", "/deliveries", json=plan(vehicle, customer="traiteur", reference="CMD-7"))
    run(api, d["id"], "start", T0)
    run(api, d["id"], "deliver", T0 + 40 * MIN)
    run(api, d["id"], "close")
    [c] = versions(api, d["id"])
    public_id = c["body"]["public_id"]

    page = api.client.get(f"/v/{public_id}").text
    assert '<html lang="fr">' in page
    assert status_of(page) == "valide"
    facts = facts_of(page)
    assert {k: facts[k] for k in ("Livraison", "Verdict", "Profil de produit", "Du, au")} == {
        "Livraison": f"CMD-7 (n° {d['id']})",
        "Verdict": "INCOMPLET",
        "Profil de produit": "Denrées réfrigérées (chilled)",
        "Du, au": "05/01/2026 09:00 (UTC+01:00) \u2013 05/01/2026 09:40 (UTC+01:00)",
    }
    assert facts["Heures en"] == "Europe/Paris"
    assert breach_cells(page, "appareil muet") == [
        "appareil muet",
        device,
        "majeur",
        "05/01/2026 09:35 (UTC+01:00)",
        "05/01/2026 09:40 (UTC+01:00) (en cours à la remise)",
        "5 min",
        "6,0 °C",
    ]
    assert (
        '<nav id="languages">Langue\u00a0: <a href="?language=en" hreflang="en" lang="en">'
        "English</a> · <b>Français</b></nav>"
    ) in page
    assert f'<iframe id="document" src="/v/{public_id}/document"' in page
    assert '<html lang="fr">' in api.client.get(f"/v/{public_id}/document").text
    french_pdf = api.client.get(f"/v/{public_id}/certificate.pdf").content
    assert "Certificat de température" in pdf_text(french_pdf, tmp_path)

    english = api.client.get(f"/v/{public_id}", params={"language": "en"}).text
    assert '<html lang="en">' in english
    assert status_of(english) == "valid"
    facts = facts_of(english)
    assert {k: facts[k] for k in ("Verdict", "Product profile", "From, to")} == {
        "Verdict": "INCOMPLETE",
        "Product profile": "Chilled food (chilled)",
        "From, to": "2026-01-05 09:00 (UTC+01:00) \u2013 2026-01-05 09:40 (UTC+01:00)",
    }
    assert breach_cells(english, "device silent")[4] == (
        "2026-01-05 09:40 (UTC+01:00) (ongoing at drop-off)"
    )
    # Its links keep the choice: the framed document, the PDF, the form.
    assert f'<iframe id="document" src="/v/{public_id}/document?language=en"' in english
    assert f'<a href="/v/{public_id}/certificate.pdf?language=en">' in english
    assert '<form method="post" action="/v?language=en"' in english
    assert '<html lang="en">' in api.client.get(f"/v/{public_id}/document?language=en").text
    english_pdf = api.client.get(f"/v/{public_id}/certificate.pdf?language=en").content
    assert "Temperature certificate" in pdf_text(english_pdf, tmp_path)
    assert api.client.get(f"/v/{public_id}", params={"language": "de"}).status_code == 422

    # The signed JSON is the same whatever the page's language.
    download = api.client.get(f"/v/{public_id}/certificate.json")
    assert json.loads(download.content) == c
    # A file dropped on the French page is answered in French.
    code, checked = upload(api, download.content, params={"language": "fr"})
    assert (code, checked_rows(checked)) == (200, ["valide (l'exemplaire enregistré ici)"])


def test_unknown_and_malformed_addresses_look_the_same(api: Api, closed_delivery: int) -> None:
    [v1] = versions(api, closed_delivery)
    known = v1["body"]["public_id"]
    wrong = ("A" if known[0] != "A" else "B") + known[1:]
    for address in (wrong, "1", str(v1["id"]), "a" * 21 + "="):
        page = api.client.get(f"/v/{address}")
        assert page.status_code == 404, address
        assert status_of(page.text) == "not found: no certificate has this address"
        assert "compliant" not in page.text
    assert api.client.get(f"/api/v1/public/certificates/{wrong}").status_code == 404
    assert api.client.get(f"/api/v1/certificates/{v1['id']}").status_code == 401  # needs a key


def upload(
    api: Api,
    content: bytes | str,
    name: str = "certificate.json",
    params: dict[str, str] | None = None,
) -> tuple[int, str]:
    r = api.client.post("/v", files={"file": (name, content)}, params=params)
    return r.status_code, r.text


def checked_rows(page: str) -> list[str]:
    """The result column of the page's table of a visitor's file."""
    return [text_of(m) for m in re.findall(r'<td class="status \w+">(.*?)</td>', page, re.S)]


def test_a_dropped_file_is_checked_strictly(
    api: Api,
    fleet: tuple[str, str],
    closed_delivery: int,
) -> None:
    [v1] = versions(api, closed_delivery)
    code, page = upload(api, json.dumps(v1))
    assert (code, checked_rows(page)) == (200, ["valid (this installation's record)"])

    tampered = v1 | {"body": v1["body"] | {"verdict": "not_compliant"}, "verdict": "not_compliant"}
    code, page = upload(api, json.dumps(tampered))
    assert (code, checked_rows(page)) == (
        200,
        ["invalid: the signature does not match the body: changed after signing"],
    )
    # The envelope disagreeing with the signed body.
    code, page = upload(api, json.dumps(v1 | {"verdict": "not_compliant"}))
    assert checked_rows(page) == [
        "invalid: the envelope's verdict \"not_compliant\" differs from the signed body's "
        '"compliant"'
    ]

    _, device = fleet
    add_breach(api, device, T0 + 15 * MIN, T0 + 25 * MIN)
    api.ok("POST", f"/deliveries/{closed_delivery}/reevaluate")
    code, page = upload(api, json.dumps(v1))  # the copy the customer kept says "current"
    assert checked_rows(page) == ["superseded by version 2"]
    code, page = upload(api, json.dumps(versions(api, closed_delivery)))  # a list of both
    assert checked_rows(page) == ["superseded by version 2", "valid (this installation's record)"]

    # The PDF a customer received carries the signed JSON: it is checked the same way.
    pdf = api.client.get(f"/v/{v1['body']['public_id']}/certificate.pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    signed = signing.read_certificates(extract_signed_json(pdf.content))
    assert [c["signature"] for c in signed] == [v1["signature"]]
    code, page = upload(api, pdf.content, "certificate.pdf")
    assert (code, checked_rows(page)) == (200, ["superseded by version 2"])
    code, page = upload(api, b"%PDF-1.7 not really", "certificate.pdf")
    assert code == 422 and status_of(page).startswith("invalid: a PDF that cannot be read")

    code, page = upload(api, b"\x89PNG not a certificate", "photo.png")
    assert (code, status_of(page)) == (422, "invalid: neither a certificate JSON (UTF-8) nor a PDF")
    code, page = upload(api, "Delivery notes, not a certificate", "notes.txt")
    assert (code, status_of(page)) == (
        422,
        "invalid: neither a certificate JSON nor a PDF (not JSON: Expecting value: line 1 "
        "column 1 (char 0))",
    )
    code, page = upload(api, "[]")
    assert (code, status_of(page)) == (422, "invalid: an empty list: no certificate in it")


def test_after_a_key_rotation_older_certificates_stay_valid_while_their_key_is_listed(
    api: Api,
    fleet: tuple[str, str],
    closed_delivery: int,
) -> None:
    [v1] = versions(api, closed_delivery)
    old = api.ok("GET", "/certificates/public-key")
    assert v1["key_id"] == old["key_id"]
    page, status = (
        f"/v/{v1['body']['public_id']}",
        f"/api/v1/public/certificates/{v1['body']['public_id']}",
    )

    with rotated(api, old["pem"]) as listed:
        # The reader is told which retired key signed it.
        retired = f"(signed with retired key {old['key_id']})"
        assert status_of(listed.client.get(page).text) == f"valid {retired}"
        assert [listed.client.get(status).json()[k] for k in ("state", "why")] == ["valid", ""]
        assert checked_rows(upload(listed, json.dumps(v1))[1]) == [
            f"valid {retired} (this installation's record)"
        ]
        # Its key trusted, the version is not re-issued.
        assert len(listed.ok("POST", f"/deliveries/{closed_delivery}/reevaluate")) == 1
        # The next version is signed with the new key; the old one is superseded, not invalid.
        _, device = fleet
        add_breach(listed, device, T0 + 15 * MIN, T0 + 25 * MIN)
        listed.ok("POST", f"/deliveries/{closed_delivery}/reevaluate")
        _, v2 = versions(listed, closed_delivery)
        new = listed.ok("GET", "/certificates/public-key")
        assert (v2["key_id"], new["key_id"] != old["key_id"]) == (new["key_id"], True)
        assert status_of(listed.client.get(page).text) == f"superseded by version 2 {retired}"
        assert status_of(listed.client.get(f"/v/{v2['body']['public_id']}").text) == "valid"

    # Not listed (a compromised key): invalid, with no command-line advice on the web.
    with rotated(api, "") as unlisted:
        current = unlisted.ok("GET", "/certificates/public-key")["key_id"]
        why = f"signed with key {old['key_id']}, not {current}"
        assert status_of(unlisted.client.get(page).text) == f"invalid: {why}"
        answer = unlisted.client.get(status).json()
        assert (answer["state"], answer["why"]) == ("invalid", why)
        assert checked_rows(upload(unlisted, json.dumps(v1))[1]) == [f"invalid: {why}"]
        r = unlisted.client.post(
            "/api/v1/public/verify", files={"file": ("c.json", json.dumps(v1))}
        )
        assert [(c["state"], c["why"]) for c in r.json()] == [("invalid", why)]
        # Re-issued (docs/deploy.md): re-evaluating signs the same judgement with the new key.
        v3, v2_again, _ = unlisted.ok("POST", f"/deliveries/{closed_delivery}/reevaluate")
        assert (v3["version"], v3["key_id"], v3["body"]["verdict"]) == (
            3,
            current,
            v2_again["body"]["verdict"],
        )
        assert status_of(unlisted.client.get(f"/v/{v3['body']['public_id']}").text) == "valid"


@pytest.fixture
def tight_api(settings: Settings, database_url: str) -> Iterator[Api]:
    """The API allowing 3 public requests per minute per address."""
    a = Api(settings.model_copy(update={"database_url": database_url, "public_rate_per_min": 3}))
    yield a
    a.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_public_routes_are_rate_limited(tight_api: Api) -> None:
    codes = [tight_api.client.get(f"/v/{'x' * 22}").status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]
    refused = tight_api.client.get("/api/v1/public/certificates/" + "y" * 22)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 21  # one request every 20 s
    assert tight_api.client.get("/api/v1/health").status_code in (200, 503)  # not limited


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_docs_load_nothing_from_another_host(api: Api) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200
    links = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    links += re.findall(r"""url: ?["']([^"']+)["']""", page.text)
    assert links and all(link.startswith("/") for link in links), links
    for link in links:
        assert api.client.get(link).status_code == 200, link
    assert api.client.get("/redoc").status_code == 404


def test_a_version_is_queued_for_the_customers_contacts_when_mail_is_on(
    settings: Settings,
    database_url: str,
    influx: Any,
    prefix: str,
) -> None:
    mailing = settings.model_copy(
        update={
            "database_url": database_url,
            "certificate_smtp_host": "127.0.0.1",
            "certificate_smtp_from": "certificates@coldtrace.test",
        }
    )
    api = Api(mailing)
    try:
        vehicle, device = f"{prefix}-van", f"{prefix}-logger"
        from tests.world import setup_fleet

        setup_fleet(api, vehicle, device)
        contacts = ["goods-in@acme.test", "quality@acme.test"]
        customer = api.ok("PUT", "/customers/acme/contacts", json={"contact_emails": contacts})
        assert customer["contact_emails"] == contacts
        bad = api.client.put(
            "/api/v1/customers/acme/contacts",
            json={"contact_emails": ["not an address"]},
            headers=api.admin,
        )
        assert bad.status_code == 422
        write_run(influx, device)
        d = api.ok("POST", "/deliveries", json=plan(vehicle))
        run(api, d["id"], "start", T0)
        run(api, d["id"], "deliver", T0 + 40 * MIN)
        run(api, d["id"], "close")
        e = api.ok("POST", "/deliveries", json=plan(vehicle, customer="bistro", start=T0))
        run(api, e["id"], "start", T0)
        run(api, e["id"], "deliver", T0 + 40 * MIN)
        run(api, e["id"], "close")  # bistro has no contact address: nothing to send
        [v1] = versions(api, d["id"])
        with api.app.state.sessions() as session:
            queued = session.scalars(select(CertificateMail)).all()
            assert [(m.certificate_id, m.recipients, m.sent_ms) for m in queued] == [
                (v1["id"], contacts, None)
            ]
    finally:
        api.close()


@pytest.mark.parametrize(
    "partial",
    [{}, {"timezone": "Europe/Paris"}],
    ids=["no time zone", "a time zone but not the rest"],
)
def test_a_version_from_before_the_document_has_its_page_only(
    api: Api,
    fleet: tuple[str, str],
    partial: dict[str, str],
) -> None:
    """Versions issued before certificates carried the document's content (no time zone;
    or one, but no issuer, signer, ...: the page offered the document, which then failed
    with 500): the page shows the table; the document and its PDF answer 404, not an
    error."""
    d = api.ok("POST", "/deliveries", json=plan(fleet[0]))["id"]
    with api.app.state.sessions() as session:
        delivery = session.get_one(Delivery, d)
        legacy = Store(session, "test").issue_certificate(
            delivery,
            "compliant",
            {"delivery_id": d, "verdict": "compliant"} | partial,
            api.settings.certificate_key,
        )
        session.commit()
        public_id = legacy.public_id
    page = api.client.get(f"/v/{public_id}")
    assert (page.status_code, status_of(page.text)) == (200, "valid")
    assert 'id="document"' not in page.text
    assert "certificate.pdf" not in page.text  # no link to a 404
    assert f'<a href="/v/{public_id}/certificate.json">' in page.text
    for path in ("document", "certificate.pdf"):
        assert api.client.get(f"/v/{public_id}/{path}").status_code == 404

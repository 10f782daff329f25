"""A scripted delivery's certificate through the API, on SQLite and PostgreSQL: one product
excursion, one data gap on the air probe, the air probe's calibration expired in the device
registry, a customer in Paris reading French. The customer's key fetches its JSON and its
PDF (another customer's gets 404); the PDF, read back with pdftoppm and pdftotext, says the
verdict, the MKT and the breach in Paris time, in French and in English; the JSON attached
to it is the API's and verifies."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from coldtrace import signing
from coldtrace.certificates.document import DocumentRequest, extract_signed_json
from coldtrace.certificates.pdf import render_pdf
from coldtrace.deliveries.models import Delivery
from coldtrace.deliveries.store import Store
from coldtrace.influx import InfluxClient
from tests.conftest import Api, pdf_text, run_coldtrace
from tests.world import MIN, T0, add_breach, iso, plan, run, track

pytestmark = pytest.mark.skipif(
    shutil.which("pdftoppm") is None, reason="poppler-utils (deploy/bootstrap.sh)"
)
DAY = 24 * 60 * MIN
PARIS = "Europe/Paris"


def write_scripted(influx: InfluxClient, device: str) -> None:
    """90 minutes, a reading every 30 s: the product at 6.5 C from minute 10 to 40 (above
    the chilled +4 C for 30 min), nothing from the air probe from minute 50 to 70."""
    lines = []
    for i in range(90 * 2 + 1):
        minute, ts = i / 2, T0 + i * 30_000
        lat, lon, speed = track(minute)
        product = 6.5 if 10 <= minute < 40 else 3.0
        lines += [
            f"position,device={device} lat={lat},lon={lon},speed_kmh={speed},seq={i}i {ts}",
            f"temperature,device={device},probe=product celsius={product},seq={i}i {ts}",
            f"device_health,device={device} seq={i}i,door=false {ts}",
        ]
        if not 50 < minute < 70:
            lines.append(f"temperature,device={device},probe=air celsius=2.5,seq={i}i {ts}")
    influx.write("\n".join(lines).encode())


@pytest.fixture
def scripted(api: Api, fleet: tuple[str, str], influx: InfluxClient) -> dict[str, Any]:
    """The scripted delivery, closed: its current certificate as the API returns it."""
    vehicle, device = fleet
    api.ok(
        "POST",
        "/customers",
        json={
            "id": "labo",
            "name": "Laboratoire Nord",
            "language": "fr",
            "timezone": "Europe/Paris",
        },
    )
    for probe, due in (("product", T0 + 300 * DAY), ("air", T0 - 10 * DAY)):
        api.ok(
            "POST",
            f"/devices/{device}/calibrations",
            json={
                "probe": probe,
                "calibrated": iso(T0 - 355 * DAY),
                "due": iso(due),
                "reference": f"CAL-{probe}",
            },
        )
    write_scripted(influx, device)
    add_breach(api, device, T0 + 10 * MIN, T0 + 40 * MIN, rule="excursion_high")
    d = api.ok("POST", "/deliveries", json=plan(vehicle, customer="labo", reference="ORD-PDF"))
    run(api, d["id"], "start", T0)
    run(api, d["id"], "deliver", T0 + 90 * MIN)
    run(api, d["id"], "close")
    [certificate] = api.ok("GET", f"/deliveries/{d['id']}/certificates")
    return dict(certificate)


def pages_of(pdf: bytes, tmp_path: Path) -> int:
    (tmp_path / "c.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "30", "-png", "c.pdf", "p"], cwd=tmp_path, check=True)
    return len(list(tmp_path.glob("p-*.png")))


def test_the_scripted_deliverys_body(scripted: dict[str, Any]) -> None:
    body = scripted["body"]
    assert (scripted["verdict"], body["verdict"]) == ("not_compliant", "not_compliant")
    assert (body["customer"], body["timezone"]) == (
        {"name": "Laboratoire Nord", "language": "fr"},
        PARIS,
    )
    assert body["pickup"] == {
        "address": "MIN Rungis",
        "lat": 48.757,
        "lon": 2.351,
        "time": "2026-01-05T09:00:00+01:00",
    }
    assert body["dropoff"]["time"] == "2026-01-05T10:30:00+01:00"
    [excursion] = body["breaches"]
    assert (excursion["rule"], excursion["start"], excursion["end"], excursion["peak_c"]) == (
        "excursion_high",
        iso(T0 + 10 * MIN),
        iso(T0 + 40 * MIN),
        6.5,
    )
    assert [(g["probe"], g["start"], g["end"]) for g in body["gaps"]] == [
        ("air", iso(T0 + 50 * MIN), iso(T0 + 70 * MIN))
    ]
    calibrations = {p["probe"]: p["calibration"] for p in body["probes"]}
    assert calibrations == {
        "product": {
            "status": "valid",
            "calibrated": iso(T0 - 355 * DAY),
            "due": iso(T0 + 300 * DAY),
            "reference": "CAL-product",
        },
        "air": {
            "status": "expired",
            "calibrated": iso(T0 - 355 * DAY),
            "due": iso(T0 - 10 * DAY),
            "reference": "CAL-air",
        },
    }
    assert body["recording_interval_s"] == 30.0
    assert body["signer"]["name"] == "coldtrace automated certification"


def test_the_customer_fetches_its_pdf_in_french_and_english(
    api: Api, scripted: dict[str, Any], tmp_path: Path
) -> None:
    labo = api.key("customer", "labo")
    r = api.client.get(f"/api/v1/certificates/{scripted['id']}/pdf", headers=labo)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert pages_of(r.content, tmp_path) == 2
    french = pdf_text(r.content, tmp_path)
    mkt = scripted["body"]["mkt_c"]
    assert "NON CONFORME" in french
    assert f"Température cinétique moyenne {mkt:.1f} °C".replace(".", ",") in french
    # The excursion 08:10..08:40 UTC: 09:10..09:40 in Paris.
    assert "05/01/2026 09:10 (UTC+01:00)" in french and "05/01/2026 09:40 (UTC+01:00)" in french
    assert "EXPIRÉ · CAL-air" in french

    r = api.client.get(f"/api/v1/certificates/{scripted['id']}/pdf?language=en", headers=labo)
    assert r.status_code == 200, r.text
    english = pdf_text(r.content, tmp_path)
    assert "NOT COMPLIANT" in english
    assert f"Mean kinetic temperature {mkt:.1f} °C" in english
    assert "2026-01-05 09:10 (UTC+01:00)" in english and "2026-01-05 09:40 (UTC+01:00)" in english

    # The QR code's address, printed under it: the version's public verification page.
    assert f"{api.settings.public_url}/v/{scripted['body']['public_id']}" in english

    # The JSON attached is the one the API serves, and it verifies with the published key.
    attached = json.loads(extract_signed_json(r.content))
    assert attached == api.ok("GET", f"/certificates/{scripted['id']}", labo)
    published = api.ok("GET", "/certificates/public-key", labo)
    [read] = signing.read_certificates(extract_signed_json(r.content))
    assert signing.check([signing.public_key(published["pem"])], read) == ""


def test_another_customer_gets_404(api: Api, scripted: dict[str, Any]) -> None:
    api.ok("POST", "/customers", json={"id": "other", "name": "Other"})
    other = api.key("customer", "other")
    for path in (f"/certificates/{scripted['id']}/pdf", f"/certificates/{scripted['id']}"):
        assert api.client.get(f"/api/v1{path}", headers=other).status_code == 404


def cli(api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    """`coldtrace ARGS` on the API's store, InfluxDB and signing key (its run dir)."""
    s = api.settings
    return run_coldtrace(
        *args,
        COLDTRACE_RUN_DIR=str(s.run_dir),
        COLDTRACE_DATABASE_URL=str(s.database_url),
        COLDTRACE_INFLUX_URL=s.influx_url,
        COLDTRACE_INFLUX_DATABASE=s.influx_database,
    )


def test_the_operators_terminal(
    api: Api,
    scripted: dict[str, Any],
    fleet: tuple[str, str],
    tmp_path: Path,
) -> None:
    _, device = fleet
    pdf = tmp_path / "ORD-PDF.pdf"
    got = cli(api, "certificates", "get", "ORD-PDF", "-o", str(pdf), "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == api.ok("GET", f"/certificates/{scripted['id']}")
    assert pages_of(pdf.read_bytes(), tmp_path) == 2
    assert "NON CONFORME" in pdf_text(pdf.read_bytes(), tmp_path)

    table = cli(api, "certificates", "get", "ORD-PDF")
    header, row = table.stdout.splitlines()
    assert header.split()[:3] == ["DELIVERY", "VERSION", "VERDICT"]
    assert row.split()[:3] == ["ORD-PDF", "1", "not_compliant"]

    verified = cli(api, "certificates", "verify", str(pdf), "--json")
    assert verified.returncode == 0, verified.stderr
    assert [(r["certificate"], r["valid"]) for r in json.loads(verified.stdout)] == [
        (scripted["id"], True)
    ]
    # A PDF whose attached certificate was altered does not verify, and says why.
    forged = dict(scripted) | {"body": scripted["body"] | {"verdict": "compliant"}}
    forged["verdict"] = "compliant"
    (tmp_path / "forged.pdf").write_bytes(render_pdf(DocumentRequest(forged)))
    refused = cli(api, "certificates", "verify", str(tmp_path / "forged.pdf"), "--json")
    assert refused.returncode == 1
    assert "changed after signing" in json.loads(refused.stdout)[0]["why"]
    (tmp_path / "not.pdf").write_bytes(b"%PDF-1.7\nnothing")
    broken = cli(api, "certificates", "verify", str(tmp_path / "not.pdf"))
    assert broken.returncode == 2 and broken.stderr.startswith("error: ")
    assert len(broken.stderr.splitlines()) == 1

    listed = json.loads(cli(api, "deliveries", "list", "--customer", "labo", "--json").stdout)
    assert [(d["reference"], d["state"], d["certificate"], d["verdict"]) for d in listed] == [
        ("ORD-PDF", "closed", 1, "not_compliant")
    ]
    breaches = json.loads(cli(api, "breaches", "list", "--device", device, "--json").stdout)
    assert [(b["rule"], b["start"], b["end"]) for b in breaches] == [
        ("excursion_high", iso(T0 + 10 * MIN), iso(T0 + 40 * MIN))
    ]
    missing = cli(api, "certificates", "get", "ORD-NONE")
    assert missing.returncode == 2
    assert missing.stderr.splitlines()[-1] == (  # after the migrations' log lines
        f"error: no delivery 'ORD-NONE' in {api.settings.sqlalchemy_url}: see `coldtrace "
        "deliveries list`, or set COLDTRACE_DATABASE_URL to the operator's store"
    )


def test_the_terminal_says_when_a_certificate_is_issued(api: Api, fleet: tuple[str, str]) -> None:
    """`certificates get` on a delivery not closed yet said "no certificate of delivery", as
    if something were missing: it names the state the delivery is in, in one line."""
    vehicle, _ = fleet
    d = api.ok("POST", "/deliveries", json=plan(vehicle, reference="ORD-LATER"))

    def said(reference: str) -> tuple[int, str, str]:
        got = cli(api, "certificates", "get", reference)
        return got.returncode, got.stdout, got.stderr

    when = "its certificate is issued when the delivery closes"
    assert said("ORD-LATER") == (2, "", f"error: delivery 'ORD-LATER' is planned: {when}\n")
    run(api, d["id"], "start", T0)
    assert said("ORD-LATER") == (2, "", f"error: delivery 'ORD-LATER' is in_transit: {when}\n")
    run(api, d["id"], "deliver", T0 + 60 * MIN)
    assert said("ORD-LATER") == (2, "", f"error: delivery 'ORD-LATER' is delivered: {when}\n")
    gone = api.ok("POST", "/deliveries", json=plan(vehicle, start=T0 + DAY, reference="ORD-GONE"))
    run(api, gone["id"], "cancel")
    assert said(str(gone["id"])) == (
        2,
        "",
        f"error: delivery '{gone['id']}' is cancelled: a cancelled delivery has no certificate\n",
    )


def test_a_version_from_before_documents_has_no_pdf(
    api: Api,
    fleet: tuple[str, str],
) -> None:
    """A version issued before certificates carried the document's content (an older body):
    409 saying how to get one, not a 500."""
    vehicle, _ = fleet
    d = api.ok("POST", "/deliveries", json=plan(vehicle))
    with api.app.state.sessions() as session:
        delivery = session.get(Delivery, d["id"])
        assert delivery is not None
        old = {"delivery_id": d["id"], "verdict": "compliant", "readings": 10}
        issued = Store(session, "test").issue_certificate(
            delivery, "compliant", old, api.settings.certificate_key
        )
        session.commit()
    r = api.client.get(f"/api/v1/certificates/{issued.id}/pdf", headers=api.admin)
    assert r.status_code == 409
    assert f"/deliveries/{d['id']}/reevaluate" in r.json()["detail"]

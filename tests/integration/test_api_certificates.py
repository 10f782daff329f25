"""Signed certificates through the API, on SQLite and PostgreSQL: every version a closed
delivery gets verifies with the public key the API publishes (with our code, with openssl
alone, and with `coldtrace certificates verify`), and a tampered one does not."""

from __future__ import annotations

import base64
import json
import logging
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coldtrace import signing
from coldtrace.deliveries.automation import sweep
from coldtrace.deliveries.store import wall_ms
from coldtrace.influx import InfluxClient
from tests.conftest import Api, rotated, run_coldtrace
from tests.world import MIN, T0, add_breach, iso, plan, run


def public_key_of(api: Api, headers: dict[str, str] | None = None) -> dict[str, Any]:
    published: dict[str, Any] = api.ok("GET", "/certificates/public-key", headers)
    return published


def verifies(published: dict[str, Any], certificate: dict[str, Any]) -> bool:
    public = signing.public_key(published["pem"])
    return signing.verify(public, certificate["body"], certificate["signature"])


def coldtrace_verify(api: Api, file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`coldtrace certificates verify` with the API's settings (its run dir's signing key)."""
    return run_coldtrace(
        "certificates", "verify", str(file), *args, COLDTRACE_RUN_DIR=str(api.settings.run_dir)
    )


def test_a_closed_deliverys_certificate_verifies_with_the_published_key(
    api: Api,
    closed_delivery: int,
) -> None:
    customer = api.key("customer", "acme")  # the delivery's customer: a lab checking it
    published = public_key_of(api, customer)
    assert published["algorithm"] == "Ed25519"
    [certificate] = api.ok("GET", f"/deliveries/{closed_delivery}/certificates", customer)
    assert (certificate["algorithm"], certificate["key_id"]) == ("Ed25519", published["key_id"])
    assert certificate["body"]["delivery_id"] == closed_delivery
    assert verifies(published, certificate)
    assert verifies(published, api.ok("GET", f"/certificates/{certificate['id']}", customer))

    tampered = certificate | {"body": certificate["body"] | {"verdict": "not_compliant"}}
    assert not verifies(published, tampered)
    other = Ed25519PrivateKey.generate()
    assert not verifies({"pem": signing.public_key_pem(other.public_key())}, certificate)

    bistro = api.key("customer", "bistro")  # someone else's customer: as if it did not exist
    r = api.client.get(f"/api/v1/deliveries/{closed_delivery}/certificates", headers=bistro)
    assert r.status_code == 404
    r = api.client.get(f"/api/v1/certificates/{certificate['id']}", headers=bistro)
    assert r.status_code == 404


def test_a_superseded_version_stays_signed(
    api: Api,
    fleet: tuple[str, str],
    closed_delivery: int,
) -> None:
    _, device = fleet
    add_breach(api, device, T0 + 15 * MIN, T0 + 25 * MIN)  # found late, live only
    certs = api.ok("POST", f"/deliveries/{closed_delivery}/reevaluate")
    assert [(c["version"], c["verdict"], c["superseded"] is None) for c in certs] == [
        (2, "incomplete", True),
        (1, "compliant", False),
    ]
    published = public_key_of(api)
    assert all(verifies(published, c) for c in certs)
    assert certs[0]["signature"] != certs[1]["signature"]
    # Each signature covers its own body only: version 1's does not vouch for version 2.
    assert not verifies(published, certs[1] | {"body": certs[0]["body"]})


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl (deploy/bootstrap.sh)")
def test_openssl_alone_verifies_the_canonical_body(
    api: Api,
    closed_delivery: int,
    tmp_path: Path,
) -> None:
    """What README "Verifying a certificate" tells a lab to do, without coldtrace."""
    [certificate] = api.ok("GET", f"/deliveries/{closed_delivery}/certificates")
    (tmp_path / "public.pem").write_text(public_key_of(api)["pem"])
    body = json.dumps(
        certificate["body"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    (tmp_path / "body.json").write_bytes(body.encode())
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(certificate["signature"]))
    command = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "public.pem", "-rawin"]
    command += ["-in", "body.json", "-sigfile", "sig.bin"]
    ok = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout, ok.stderr
    (tmp_path / "body.json").write_bytes(body.replace('"compliant"', '"not_compliant"').encode())
    bad = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert bad.returncode != 0


def test_cli_verifies_what_the_api_returns_and_refuses_a_tampered_file(
    api: Api,
    closed_delivery: int,
    tmp_path: Path,
) -> None:
    certs = api.ok("GET", f"/deliveries/{closed_delivery}/certificates")
    saved = tmp_path / "certificates.json"
    saved.write_text(json.dumps(certs))

    done = coldtrace_verify(api, saved)  # with the configured key
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == ["CERTIFICATE", "DELIVERY", "VERSION", "KEY_ID", "VALID", "WHY"]
    assert row.split() == [
        str(certs[0]["id"]),
        str(closed_delivery),
        "1",
        certs[0]["key_id"],
        "yes",
    ]

    public = tmp_path / "public.pem"
    public.write_text(public_key_of(api)["pem"])
    tampered = tmp_path / "tampered.json"
    body = certs[0]["body"] | {"breaches": []} | {"end": certs[0]["body"]["start"]}
    tampered.write_text(json.dumps(certs[0] | {"body": body}))
    done = coldtrace_verify(api, tampered, "--public-key", str(public), "--json")
    assert done.returncode == 1, done.stderr
    [result] = json.loads(done.stdout)
    assert result["valid"] is False
    assert result["why"] == "the signature does not match the body: changed after signing"

    stranger = tmp_path / "stranger.pem"
    strangers = Ed25519PrivateKey.generate().public_key()
    stranger.write_text(signing.public_key_pem(strangers))
    done = coldtrace_verify(api, saved, "--public-key", str(stranger), "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)[0]["why"] == (
        f"signed with key {certs[0]['key_id']}, not {signing.key_id(strangers)}: "
        "pass its --public-key"
    )

    done = coldtrace_verify(api, public)
    assert done.returncode == 2 and "error:" in done.stderr


def test_after_a_key_rotation_the_api_verifies_what_a_listed_retired_key_signed(
    api: Api, closed_delivery: int, tmp_path: Path
) -> None:
    certs = api.ok("GET", f"/deliveries/{closed_delivery}/certificates")
    old = public_key_of(api)
    with rotated(api, old["pem"]) as listed:
        answers = listed.ok("POST", "/certificates/verify", content=json.dumps(certs))
        assert [(a["valid"], a["why"]) for a in answers] == [(True, "")]
    with rotated(api, "") as unlisted:  # the old key compromised: not listed
        answers = unlisted.ok("POST", "/certificates/verify", content=json.dumps(certs))
        current = public_key_of(unlisted)["key_id"]
        assert [(a["valid"], a["why"]) for a in answers] == [
            (False, f"signed with key {old['key_id']}, not {current}")
        ]

    # The CLI reads the setting too, and a bad one stops it, naming the setting.
    saved = tmp_path / "certificates.json"
    saved.write_text(json.dumps(certs))
    done = run_coldtrace(
        "certificates",
        "verify",
        str(saved),
        COLDTRACE_RUN_DIR=str(api.settings.run_dir),
        COLDTRACE_CERTIFICATE_RETIRED_PUBLIC_KEYS="old.pem",
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "configuration error: COLDTRACE_CERTIFICATE_RETIRED_PUBLIC_KEYS: text that is not a "
        "PEM block: only PEM public key blocks are read (give the retired keys' public.pem "
        "files one after another, as GET /api/v1/certificates/public-key gave them)"
    )


# -- the certificate judges the delivery from its stored readings ----------------------------


def warm(minute: float) -> float | None:
    """The product at 6.5 C from minute 10 to 40 (30 min above +4 C), else 3.0 C."""
    return 6.5 if 10 <= minute < 40 else 3.0


def write_readings(
    influx: InfluxClient,
    device: str,
    product: Callable[[float], float | None],
    halves: Iterable[int] = range(121),
    air: bool = True,
) -> None:
    """Readings every 30 s (half-minute ``i`` at T0 + i x 30 s, seq i) as ingest stores them:
    a GPS fix moving 0.001 degree a minute, the product (None: not written) and the air at
    2.5 C (unless ``air`` is False)."""
    lines = []
    for i in halves:
        ts, minute = T0 + i * 30_000, i / 2
        lines += [
            f"position,device={device} lat={48.75 + minute / 1000},lon=2.35,seq={i}i {ts}",
            f"device_health,device={device} seq={i}i,door=false {ts}",
        ]
        if (c := product(minute)) is not None:
            lines.append(f"temperature,device={device},probe=product celsius={c},seq={i}i {ts}")
        if air:
            lines.append(f"temperature,device={device},probe=air celsius=2.5,seq={i}i {ts}")
    influx.write("\n".join(lines).encode())


def delivered(api: Api, vehicle: str, minutes: int = 60) -> int:
    """A delivery from T0 to T0 + ``minutes``, closed (its first certificate issued)."""
    d = api.ok("POST", "/deliveries", json=plan(vehicle))
    run(api, d["id"], "start", T0)
    run(api, d["id"], "deliver", T0 + minutes * MIN)
    run(api, d["id"], "close")
    return int(d["id"])


def health(api: Api) -> tuple[int, list[str]]:
    r = api.client.get("/api/v1/health")
    return r.status_code, r.json()["reasons"]


def metric(api: Api, name: str) -> str:
    values = dict(line.rsplit(" ", 1) for line in api.client.get("/metrics").text.splitlines())
    return values[name]


def test_warm_product_is_not_compliant_even_without_a_live_breach(
    api: Api,
    fleet: tuple[str, str],
    influx: InfluxClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    vehicle, device = fleet
    write_readings(influx, device, warm)
    with caplog.at_level(logging.ERROR, logger="deliveries.automation"):
        delivery = delivered(api, vehicle)
    [cert] = api.ok("GET", f"/deliveries/{delivery}/certificates")
    body = cert["body"]
    assert (cert["verdict"], body["verdict"]) == ("not_compliant", "not_compliant")
    assert body["breaches"] == [
        {
            "id": None,  # the live rules stage stored none
            "device": device,
            "probe": "product",
            "rule": "excursion_high",
            "severity": "major",
            "start": iso(T0 + 10 * MIN),
            "end": iso(T0 + 40 * MIN),
            "duration_min": 30.0,
            "peak_c": 6.5,
            "limit_c": 4.0,
            "degree_minutes": 75.0,  # 2.5 C above the limit for 30 min
            "mkt_c": 6.5,
            "suppressed": False,
            "where": {"lat": 48.76, "lon": 2.35},  # the fix of minute 10
        }
    ]
    product = next(p for p in body["probes"] if p["probe"] == "product")
    # 121 readings, each holding 30 s until minute 60 (the end: holds nothing):
    # 30 min at 3.0 C and 30 min at 6.5 C
    assert product == {
        "device": device,
        "probe": "product",
        "readings": 121,
        "faults": 0,
        "first_reading": iso(T0),
        "last_reading": iso(T0 + 60 * MIN),
        "min_c": 3.0,
        "max_c": 6.5,
        "mean_c": 4.75,
        "in_range_min": 30.0,
        "out_of_range_min": 30.0,
        "in_range_pct": 50.0,
        "mkt_c": 4.94,
        "interval_s": 30.0,
        # no calibration record: stated, not judged (the chilled profile requires none)
        "calibration": {"status": "missing", "calibrated": None, "due": None, "reference": None},
    }
    assert (body["readings"], body["min_c"], body["max_c"]) == (242, 2.5, 6.5)
    assert (body["out_of_range_min"], body["mkt_c"], body["gaps"]) == (30.0, 4.94, [])
    # ... and the disagreement with the live rules stage is reported, counted and shown
    assert body["disagreements"] == [
        {
            "found_by": "evaluation",
            "device": device,
            "probe": "product",
            "rule": "excursion_high",
            "start": iso(T0 + 10 * MIN),
            "live_breach_id": None,
        }
    ]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "found by the evaluation only" in errors[0].getMessage()
    assert metric(api, "coldtrace_certificate_disagreements_total") == "1"
    assert metric(api, "coldtrace_certificates_disagreeing") == "1"
    assert api.ok("GET", f"/deliveries/{delivery}")["certificate"] == {
        "id": cert["id"],
        "version": 1,
        "verdict": "not_compliant",
        "disagreements": 1,
    }
    status, reasons = health(api)
    assert (status, len(reasons)) == (503, 1)
    assert reasons[0].startswith(f"delivery {delivery}: certificate version 1 has 1 breach(es)")

    # The live stage stores its breach (late): the next sweep's version agrees again.
    live = add_breach(
        api, device, T0 + 10 * MIN, T0 + 40 * MIN, rule="excursion_high", updated_at=wall_ms() + 1
    )
    state = api.app.state
    assert sweep(state.sessions, state.source, state.settings, state.certifier) == 1
    certs = api.ok("GET", f"/deliveries/{delivery}/certificates")
    assert [(c["version"], c["verdict"]) for c in certs] == [
        (2, "not_compliant"),
        (1, "not_compliant"),
    ]
    assert [b["id"] for b in certs[0]["body"]["breaches"]] == [live]
    assert certs[0]["body"]["disagreements"] == []
    assert api.ok("GET", f"/deliveries/{delivery}")["certificate"]["disagreements"] == 0
    assert health(api) == (200, [])
    assert metric(api, "coldtrace_certificate_disagreements_total") == "1"  # found once
    assert metric(api, "coldtrace_certificates_disagreeing") == "0"


def test_a_compartment_probe_that_never_reported_is_incomplete(
    api: Api,
    fleet: tuple[str, str],
    influx: InfluxClient,
) -> None:
    vehicle, device = fleet
    write_readings(influx, device, lambda minute: 3.0, air=False)
    [cert] = api.ok("GET", f"/deliveries/{delivered(api, vehicle)}/certificates")
    assert cert["verdict"] == "incomplete"
    assert cert["body"]["silent_probes"] == [{"device": device, "probe": "air"}]
    assert cert["body"]["reasons"] == [f"{device}/air never reported"]


def test_a_gap_longer_than_the_profile_allows_is_incomplete(
    api: Api,
    fleet: tuple[str, str],
    influx: InfluxClient,
) -> None:
    vehicle, device = fleet
    # no product temperature from minute 20 to 31 (11 min; chilled allows 10)
    write_readings(influx, device, lambda minute: None if 20 < minute < 31 else 3.0)
    [cert] = api.ok("GET", f"/deliveries/{delivered(api, vehicle)}/certificates")
    assert cert["verdict"] == "incomplete"
    assert cert["body"]["gaps"] == [
        {
            "device": device,
            "probe": "product",
            "start": iso(T0 + 20 * MIN),
            "end": iso(T0 + 31 * MIN),
            "minutes": 11.0,
        }
    ]


def test_late_readings_after_close_supersede_the_certificate(
    api: Api,
    fleet: tuple[str, str],
    influx: InfluxClient,
) -> None:
    """A tunnel: the readings of minutes 20.5..44.5 arrive after the close; the product was
    at 6.5 C from minute 25 to 55."""
    vehicle, device = fleet
    tunnel = range(41, 90)  # half-minutes 20.5 .. 44.5

    def late_warm(minute: float) -> float:
        return 6.5 if 25 <= minute < 55 else 3.0

    write_readings(influx, device, late_warm, [i for i in range(121) if i not in tunnel])
    delivery = delivered(api, vehicle)
    [first] = api.ok("GET", f"/deliveries/{delivery}/certificates")
    assert first["verdict"] == "incomplete"
    assert [(g["probe"], g["start"], g["end"]) for g in first["body"]["gaps"]] == [
        (probe, iso(T0 + 20 * MIN), iso(T0 + 45 * MIN)) for probe in ("air", "product")
    ]
    # 6.5 C from minute 45 to 55 is 10 min: no breach (chilled: after 15 min)
    assert first["body"]["breaches"] == []

    state = api.app.state
    assert sweep(state.sessions, state.source, state.settings, state.certifier) == 0  # nothing new
    write_readings(influx, device, late_warm, tunnel)  # the backlog lands
    assert sweep(state.sessions, state.source, state.settings, state.certifier) == 1
    assert sweep(state.sessions, state.source, state.settings, state.certifier) == 0
    certs = api.ok("GET", f"/deliveries/{delivery}/certificates")
    assert [(c["version"], c["verdict"], c["superseded"] is None) for c in certs] == [
        (2, "not_compliant", True),
        (1, "incomplete", False),
    ]
    body = certs[0]["body"]
    assert body["gaps"] == [] and body["readings"] == 242
    assert [(b["rule"], b["start"], b["end"]) for b in body["breaches"]] == [
        ("excursion_high", iso(T0 + 25 * MIN), iso(T0 + 55 * MIN))
    ]
    published = public_key_of(api)
    assert all(verifies(published, c) for c in certs)

"""Signed certificates through the API, on SQLite and PostgreSQL: every version a closed
delivery gets verifies with the public key the API publishes (with our code, with openssl
alone, and with `coldtrace certificates verify`), and a tampered one does not."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coldtrace import signing
from tests.conftest import Api, run_coldtrace
from tests.integration.test_api_deliveries import (  # noqa: F401 (fixtures)
    MIN,
    T0,
    add_breach,
    closed_delivery,
    fleet,
)


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
    closed_delivery: int,  # noqa: F811
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
    fleet: tuple[str, str],  # noqa: F811
    closed_delivery: int,  # noqa: F811
) -> None:
    _, device = fleet
    add_breach(api, device, T0 + 15 * MIN, T0 + 25 * MIN)  # found late
    certs = api.ok("POST", f"/deliveries/{closed_delivery}/reevaluate")
    assert [(c["version"], c["verdict"], c["superseded"] is None) for c in certs] == [
        (2, "not_compliant", True),
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
    closed_delivery: int,  # noqa: F811
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
    closed_delivery: int,  # noqa: F811
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
        "True",
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
    stranger.write_text(signing.public_key_pem(Ed25519PrivateKey.generate().public_key()))
    done = coldtrace_verify(api, saved, "--public-key", str(stranger), "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)[0]["why"].startswith(f"signed with key {certs[0]['key_id']}")

    done = coldtrace_verify(api, public)
    assert done.returncode == 2 and "error:" in done.stderr

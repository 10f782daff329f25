"""Forged certificates, each refused with its own reason by `coldtrace certificates verify`
(a process, with the key the API publishes) and by POST /api/v1/certificates/verify, on
SQLite and PostgreSQL; the genuine ones, keys reordered, still verify."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api, run_coldtrace
from tests.world import MIN, T0, add_breach


def reordered(value: Any) -> Any:
    """The same JSON with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


@pytest.fixture
def versions(api: Api, fleet: tuple[str, str], closed_delivery: int) -> list[dict[str, Any]]:
    """Versions 2 (current, not compliant: a breach found late) and 1 (compliant, superseded)
    of a delivery."""
    _, device = fleet
    add_breach(api, device, T0 + 15 * MIN, T0 + 25 * MIN)
    certs: list[dict[str, Any]] = api.ok("POST", f"/deliveries/{closed_delivery}/reevaluate")
    assert [(c["version"], c["body"]["version"], c["verdict"] == "compliant") for c in certs] == [
        (2, 2, False),
        (1, 1, True),
    ]
    return certs


def forgeries(
    v2: dict[str, Any], v1: dict[str, Any], other: dict[str, Any]
) -> list[tuple[str, str]]:
    """(certificate as JSON text, the reason it is refused), for each forgery of the issue."""
    key_id = v2["key_id"]
    genuine = json.dumps(v2)
    return [
        (
            json.dumps(v2 | {"key_id": "0" * 16}),
            f'key_id "{"0" * 16}" does not name the key that signed it ({key_id})',
        ),
        (json.dumps(v2 | {"algorithm": "none"}), 'algorithm "none", not Ed25519'),
        (
            json.dumps(v2 | {"verdict": "compliant"}),
            f"the envelope's verdict \"compliant\" differs from the signed body's "
            f"{json.dumps(v2['verdict'])}",
        ),
        (
            json.dumps(v2 | {"delivery_id": other["delivery_id"]}),
            f"the envelope's delivery_id {other['delivery_id']} differs from the signed body's "
            f"{v2['delivery_id']}",
        ),
        (
            json.dumps(v2 | {"version": 1}),
            "the envelope's version 1 differs from the signed body's 2",
        ),
        (  # A's envelope carrying B's body and signature
            json.dumps(v2 | {k: other[k] for k in ("body", "signature")}),
            f"the envelope's delivery_id {v2['delivery_id']} differs from the signed body's "
            f"{other['delivery_id']}",
        ),
        (  # version 1's envelope carrying version 2's body and signature
            json.dumps(v1 | {k: v2[k] for k in ("body", "signature")}),
            "the envelope's version 1 differs from the signed body's 2",
        ),
        (  # a forged "verdict" before the genuine one
            genuine.replace('"body": {', '"body": {"verdict": "compliant", ', 1),
            "duplicate key body.verdict: the JSON can be read two ways",
        ),
        (
            json.dumps(v2 | {"signature": "not base64!"}),
            "the signature is not base64 of the 64 bytes of an Ed25519 one",
        ),
        (
            json.dumps(
                v2 | {"body": v2["body"] | {"verdict": "compliant"}, "verdict": "compliant"}
            ),
            "the signature does not match the body: changed after signing",
        ),
    ]


@pytest.fixture
def other(api: Api, versions: list[dict[str, Any]]) -> dict[str, Any]:
    """Another delivery's certificate (same vehicle, the next day), signed by the same key."""
    from tests.world import plan, run

    vehicle = api.ok("GET", "/vehicles")["items"][0]["id"]
    day = 24 * 60 * MIN
    d = api.ok("POST", "/deliveries", json=plan(vehicle, start=T0 + day))
    run(api, d["id"], "start", T0 + day)
    run(api, d["id"], "deliver", T0 + day + 40 * MIN)
    run(api, d["id"], "close")
    [cert] = api.ok("GET", f"/deliveries/{d['id']}/certificates")
    return dict(cert)


def test_each_forgery_is_refused_with_its_reason_by_the_cli_and_the_api(
    api: Api, versions: list[dict[str, Any]], other: dict[str, Any], tmp_path: Path
) -> None:
    v2, v1 = versions
    cases = forgeries(v2, v1, other)
    # v1 saying it is current beside the genuine v2: the list tells (the API: its store).
    listed = [(json.dumps(v2), ""), *cases, (json.dumps(v1 | {"superseded": None}), "")]
    text = "[" + ", ".join(t for t, _ in listed) + "]"
    public = tmp_path / "public.pem"
    public.write_text(api.ok("GET", "/certificates/public-key")["pem"])
    file = tmp_path / "forged.json"
    file.write_text(text)
    done = run_coldtrace("certificates", "verify", str(file), "--public-key", str(public), "--json")
    assert done.returncode == 1, done.stderr
    rows = json.loads(done.stdout)
    expected = [why for _, why in listed[:-1]]
    expected.append("says it is current, but version 2 of its delivery is in the input")
    assert [r["why"] for r in rows] == expected
    assert [r["valid"] for r in rows] == [True] + [False] * (len(listed) - 1)

    customer = api.key("customer", "acme")
    for forged, why in cases:
        r = api.client.post("/api/v1/certificates/verify", content=forged, headers=customer)
        assert r.status_code == 200, r.text
        assert [(a["valid"], a["why"]) for a in r.json()] == [(False, why)]
    lone = json.dumps(v1 | {"superseded": None})
    r = api.client.post("/api/v1/certificates/verify", content=lone, headers=customer)
    [answer] = r.json()
    assert answer["valid"] is False
    assert answer["why"].startswith("superseded on ") and answer["why"].endswith(
        ": not the current version"
    )


def test_genuine_certificates_verify_with_their_keys_reordered(
    api: Api, versions: list[dict[str, Any]], tmp_path: Path
) -> None:
    file = tmp_path / "certificates.json"
    file.write_text(json.dumps(reordered(versions)))
    done = run_coldtrace(
        "certificates", "verify", str(file), "--json", COLDTRACE_RUN_DIR=str(api.settings.run_dir)
    )
    assert done.returncode == 0, done.stderr
    assert [(r["version"], r["valid"], r["why"]) for r in json.loads(done.stdout)] == [
        (2, True, ""),
        (1, True, ""),
    ]
    r = api.client.post("/api/v1/certificates/verify", content=file.read_text(), headers=api.admin)
    assert r.status_code == 200
    assert [(a["certificate"], a["version"], a["valid"]) for a in r.json()] == [
        (versions[0]["id"], 2, True),
        (versions[1]["id"], 1, True),
    ]


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("[]", 1, "no certificate in it: nothing verified"),
        ('{"body": {}', 2, "not JSON: Expecting"),
        ('[{"id": 1}]', 2, "not a certificate (or list of them)"),
    ],
)
def test_unusable_input_and_an_empty_list(
    api: Api, tmp_path: Path, text: str, code: int, message: str
) -> None:
    file = tmp_path / "input.json"
    file.write_text(text)
    done = run_coldtrace(
        "certificates", "verify", str(file), COLDTRACE_RUN_DIR=str(api.settings.run_dir)
    )
    assert done.returncode == code
    assert done.stderr.startswith(f"error: {file}: {message}") and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    r = api.client.post("/api/v1/certificates/verify", content=text, headers=api.admin)
    assert r.status_code == 422
    assert r.json()["detail"].startswith(f"body: {message}")


def openssl_recipe() -> str:
    """The ```sh block of docs/certificates.md that follows "With openssl alone"."""
    doc = (Path(__file__).parents[2] / "docs" / "certificates.md").read_text()
    after = doc[doc.index("With openssl alone") :]
    return after[after.index("```sh\n") + 6 : after.index("\n```\n")]


@pytest.mark.skipif(
    shutil.which("openssl") is None or shutil.which("pdfdetach") is None,
    reason="openssl, poppler-utils (deploy/bootstrap.sh)",
)
def test_an_auditor_with_the_pdf_alone_runs_the_documented_recipe(
    api: Api, versions: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The PDF a customer received and public.pem: the documented pdfdetach line writes the
    recipe's cert.json (the docs said `pdfdetach -saveall`, which writes certificate.json,
    not the cert.json the recipe reads), and the recipe verifies it."""
    v2, _ = versions
    (tmp_path / "public.pem").write_text(api.ok("GET", "/certificates/public-key")["pem"])
    pdf = api.client.get(f"/api/v1/certificates/{v2['id']}/pdf", headers=api.admin)
    assert pdf.status_code == 200, pdf.text
    (tmp_path / "cert.pdf").write_bytes(pdf.content)
    doc = (Path(__file__).parents[2] / "docs" / "certificates.md").read_text()
    [detach] = re.findall(r"`(pdfdetach [^`]*)`", doc)
    done = subprocess.run(
        ["bash", "-c", f"{detach}\n{openssl_recipe()}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "Signature Verified Successfully" in done.stdout
    assert json.loads((tmp_path / "cert.json").read_text()) == v2


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl (deploy/bootstrap.sh)")
def test_the_documented_openssl_recipe_applies_the_same_rules(
    api: Api, versions: list[dict[str, Any]], other: dict[str, Any], tmp_path: Path
) -> None:
    v2, v1 = versions
    (tmp_path / "public.pem").write_text(api.ok("GET", "/certificates/public-key")["pem"])

    def recipe(text: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "cert.json").write_text(text)
        return subprocess.run(
            ["bash", "-c", openssl_recipe()], cwd=tmp_path, capture_output=True, text=True
        )

    for genuine in (v2, v1, reordered(v2)):
        done = recipe(json.dumps(genuine))
        assert done.returncode == 0, done.stderr
        assert "Signature Verified Successfully" in done.stdout
    for forged, _ in forgeries(v2, v1, other):
        done = recipe(forged)
        assert done.returncode != 0, forged
        assert "Signature Verified Successfully" not in done.stdout

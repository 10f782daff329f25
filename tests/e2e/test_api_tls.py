"""`coldtrace api` serving HTTPS itself (COLDTRACE_API_TLS_CERTFILE/KEYFILE), as a process:
a client trusting the certificate's CA gets its answers with HSTS; one trusting another CA
refuses it; plain HTTP to that port gets no answer. Served over plain HTTP, no HSTS."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from coldtrace.api.app import HSTS
from coldtrace.devtools.services import free_port
from coldtrace.settings import Settings
from coldtrace.tls import ensure_development_ca, make_ca
from tests.conftest import REPO, Api, wait_for


@pytest.fixture
def https_api(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, the CA's PEM) of a `coldtrace api` serving HTTPS with a CA's certificate."""
    tls = ensure_development_ca(tmp_path / "tls")
    port = free_port()
    env = {
        **os.environ,
        "COLDTRACE_RUN_DIR": str(settings.run_dir),
        "COLDTRACE_INFLUX_URL": settings.influx_url,
        "COLDTRACE_INFLUX_DATABASE": settings.influx_database,
        "COLDTRACE_DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}",
        "COLDTRACE_DELIVERY_SWEEP_S": "0",
        "COLDTRACE_API_TLS_CERTFILE": str(tls / "server.pem"),
        "COLDTRACE_API_TLS_KEYFILE": str(tls / "server.key"),
    }
    with open(tmp_path / "api.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coldtrace.cli", "api", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"https://localhost:{port}"
    trust = ssl.create_default_context(cafile=str(tls / "ca.pem"))

    def answers() -> bool:
        try:
            return httpx.get(f"{base}/api/v1/health", verify=trust, timeout=2).status_code > 0
        except httpx.TransportError:
            assert proc.poll() is None, (tmp_path / "api.log").read_text()
            return False

    try:
        wait_for(answers, 60, "the API over HTTPS")
        yield base, tls / "ca.pem"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_https_with_the_right_ca_answers_with_hsts(
    https_api: tuple[str, Path], tmp_path: Path
) -> None:
    base, ca = https_api
    r = httpx.get(f"{base}/api/v1/health", verify=ssl.create_default_context(cafile=str(ca)))
    assert r.status_code in (200, 503)  # the health of the stores is not the question here
    assert r.headers["Strict-Transport-Security"] == HSTS
    assert r.json()["status"] in ("ok", "failing")

    other = tmp_path / "other-ca.pem"
    other.write_bytes(make_ca("someone else's CA")[1].public_bytes(serialization.Encoding.PEM))
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{base}/api/v1/health", verify=ssl.create_default_context(cafile=str(other)))
    with pytest.raises(httpx.TransportError):
        httpx.get(base.replace("https://", "http://") + "/api/v1/health")


def test_plain_http_sends_no_hsts(api: Api) -> None:
    r = api.client.get("/api/v1/health")
    assert r.status_code in (200, 503)
    assert "Strict-Transport-Security" not in r.headers

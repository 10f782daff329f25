"""The development CA of `coldtrace services` (coldtrace/tls.py)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from coldtrace.tls import ensure_development_ca


def test_the_development_ca_signs_a_localhost_certificate_once(tmp_path: Path) -> None:
    d = ensure_development_ca(tmp_path / "tls")
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((d / "server.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    assert x509.load_der_x509_certificate((d / "ca.der").read_bytes()) == ca
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(server.public_key(), ec.EllipticCurvePublicKey)
    assert {(d / k).stat().st_mode & 0o777 for k in ("ca.key", "server.key")} == {0o600}
    before = (d / "server.pem").read_bytes()
    ensure_development_ca(d)
    assert (d / "server.pem").read_bytes() == before, "kept while it exists"

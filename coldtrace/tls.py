"""A development certificate authority and the broker's server certificate, made with
pyca/cryptography: what `coldtrace services up` gives the development broker's TLS listener.
Production uses a real CA's certificates instead (docs/security.md "TLS").

Files in the directory given (PEM unless said): ``ca.pem`` and ``ca.der`` (the certificate
devices and clients trust; the firmware reads DER), ``ca.key``, ``server.pem`` and
``server.key`` (names ``localhost`` and 127.0.0.1). Made once; kept while they exist.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Long enough for a development run dir, short enough not to pass for a real one.
VALID_DAYS = 365


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA (P-256), valid from a day ago for VALID_DAYS."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _sign_leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    name: str,
    usage: x509.ObjectIdentifier,
    alt_names: list[x509.GeneralName],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def server_certificate(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, host: str = "localhost"
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server certificate for `host` and 127.0.0.1, signed by the CA."""
    names: list[x509.GeneralName] = [
        x509.DNSName(host),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    return _sign_leaf(ca_key, ca, host, x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, names)


def issue_client_certificate(directory: Path, username: str, out: Path) -> tuple[Path, Path]:
    """A client certificate for `username` (its common name: the broker's username on the
    client-certificate listener), signed by the CA in `directory` (ensure_development_ca);
    (certificate, key) written as PEM into `out`."""
    ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{directory / 'ca.key'} is not the EC key ensure_development_ca makes")
    key, cert = _sign_leaf(ca_key, ca, username, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH, [])
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / f"{username}.pem", out / f"{username}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def ensure_development_ca(directory: Path) -> Path:
    """The files of the module docstring in `directory`, made if any is missing; returns it.
    Private keys are readable by their owner only."""
    files = ("ca.pem", "ca.der", "ca.key", "server.pem", "server.key")
    if all((directory / f).exists() for f in files):
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = make_ca("coldtrace development CA")
    key, cert = server_certificate(ca_key, ca)
    for name, data in (
        ("ca.key", _pem_key(ca_key)),
        ("server.key", _pem_key(key)),
        ("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        ("ca.der", ca.public_bytes(serialization.Encoding.DER)),
        ("server.pem", cert.public_bytes(serialization.Encoding.PEM)),
    ):
        path = directory / name
        path.write_bytes(data)
        if name.endswith(".key"):
            path.chmod(0o600)
    return directory

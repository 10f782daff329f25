"""Ed25519 signatures over a canonical JSON form: what lets a lab check a certificate offline.

Pure: imports only ``cryptography``. The canonical form of a JSON object is its UTF-8
encoding with object keys sorted (at every depth), no whitespace (separators ``,`` and
``:``), non-ASCII characters as themselves (no ``\\u`` escapes) and no NaN or infinity,
which is Python's ``json.dumps(body, sort_keys=True, separators=(",", ":"),
ensure_ascii=False, allow_nan=False).encode()``. Signatures travel as standard base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "Ed25519"
RAW_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def private_key(text: str) -> Ed25519PrivateKey:
    """From PEM (PKCS#8, as ``openssl genpkey -algorithm ed25519`` writes it) or from the
    base64 of its 32 raw bytes; ValueError saying what is wrong (never the key itself)."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError("not a readable unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("a PEM private key, but not an Ed25519 one")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("neither PEM nor base64") from None
    if len(raw) != RAW_KEY_BYTES:
        raise ValueError(f"base64 of {len(raw)} bytes, not the {RAW_KEY_BYTES} of an Ed25519 key")
    return Ed25519PrivateKey.from_private_bytes(raw)


def new_private_key() -> str:
    """A fresh key as base64 of its raw bytes (the form `private_key` reads)."""
    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw).decode()


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def public_key(pem: str) -> Ed25519PublicKey:
    """From PEM (SubjectPublicKeyInfo, as `public_key_pem` writes it); ValueError if not."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a readable PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("a PEM public key, but not an Ed25519 one")
    return key


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----", re.DOTALL)


def public_keys(text: str) -> list[Ed25519PublicKey]:
    """Every key of PEM public key blocks written one after another (``cat old1.pem
    old2.pem``); ValueError naming the block (1-based) that is not an Ed25519 public key, or
    saying what else the text holds."""
    keys, end = [], 0
    for n, block in enumerate(_PEM_BLOCK.finditer(text), 1):
        if text[end : block.start()].strip():
            raise ValueError(f"text before PEM block {n}: only PEM public key blocks are read")
        try:
            keys.append(public_key(block.group()))
        except ValueError as exc:
            raise ValueError(f"PEM block {n}: {exc}") from None
        end = block.end()
    if text[end:].strip():
        raise ValueError("text that is not a PEM block: only PEM public key blocks are read")
    return keys


def key_id(key: Ed25519PublicKey) -> str:
    """Names a key without revealing anything: the first 16 hex digits of the SHA-256 of its
    32 raw public bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, body: Mapping[str, Any]) -> str:
    """The base64 signature of the body's canonical form."""
    return base64.b64encode(key.sign(canonical(body))).decode()


def verify(key: Ed25519PublicKey, body: Mapping[str, Any], signature: str) -> bool:
    """Whether `signature` is the key's over the body's canonical form (the signature alone:
    `check` is what decides whether a certificate verifies)."""
    try:
        key.verify(base64.b64decode(signature, validate=True), canonical(body))
    except (InvalidSignature, ValueError):  # ValueError: not base64, or NaN in the body
        return False
    return True


# -- strict verification of certificates as the API returns them -------------------------------

# Envelope fields the signature does not cover: the server's bookkeeping and the signature's
# own description. Every other envelope field (verdict, delivery_id, version, ...) must be in
# the signed body with the same value, or a forger could show one thing beside a body saying
# another.
BOOKKEEPING = frozenset({"id", "issued", "superseded", "body", "algorithm", "signature", "key_id"})


class Unreadable(ValueError):
    """The input is no certificate at all (not JSON, or not the API's shape): exit 2."""


class _Object(dict[str, Any]):
    """A JSON object that remembers the keys it held more than once (json keeps the last,
    another parser may keep the first: a forged "verdict" before the genuine one)."""

    duplicates: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        obj.duplicates = tuple(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
    return obj


def _constant(name: str) -> None:
    raise Unreadable(f"{name} is not JSON")


def read_certificates(text: str) -> list[dict[str, Any]]:
    """The certificates of a JSON text holding one certificate or a list of them (as
    GET /api/v1/certificates/{id} and /api/v1/deliveries/{id}/certificates return them),
    remembering duplicate keys for `check`. Unreadable if it is not JSON or not that shape;
    an empty list is returned as such (it verifies nothing: the caller says so)."""
    if not text.strip():  # e.g. what `curl ... > cert.json` leaves when the API is down
        raise Unreadable("empty: a certificate's JSON (or its PDF) was expected")
    try:
        loaded = json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except ValueError as exc:  # json.JSONDecodeError, Unreadable
        raise Unreadable(f"not JSON: {exc}") from None
    certificates = loaded if isinstance(loaded, list) else [loaded]
    if not all(isinstance(c, dict) and isinstance(c.get("body"), dict) for c in certificates):
        raise Unreadable(
            "not a certificate (or list of them) as GET /api/v1/certificates/{id} or "
            "/api/v1/deliveries/{id}/certificates returns it"
        )
    return certificates


def _duplicates(value: Any, path: str) -> str | None:
    """The first duplicate key at any depth, as a path (``body.verdict``), or None."""
    if isinstance(value, _Object) and value.duplicates:
        return f"{path}.{value.duplicates[0]}" if path else value.duplicates[0]
    if isinstance(value, dict):
        children = [(f"{path}.{k}" if path else k, v) for k, v in value.items()]
    elif isinstance(value, list):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    else:
        return None
    for where, child in children:
        found = _duplicates(child, where)
        if found:
            return found
    return None


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON (``1`` is not ``true``, ``1`` is not ``"1"``)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def check(
    keys: Sequence[Ed25519PublicKey], certificate: Mapping[str, Any], advice: str = ""
) -> str:
    """Why the certificate does not verify with any of the trusted `keys` (the signing key
    and the retired ones still vouched for), or "" when it does: no duplicate key at any
    depth, signed, algorithm Ed25519, a signature that is base64 of 64 bytes, a key_id naming
    one of `keys`, valid over the canonical body with that key, and every envelope field
    outside BOOKKEEPING present in the body with the same value. One reason, the first that
    fails; `advice` ends the reason given when the signer is none of `keys` (the CLI's
    ": pass its --public-key", which a web page must not tell its reader)."""
    duplicate = _duplicates(certificate, "")
    if duplicate:
        return f"duplicate key {duplicate}: the JSON can be read two ways"
    signature, algorithm = certificate.get("signature"), certificate.get("algorithm")
    if signature is None:
        return "not signed (issued before certificates were signed)"
    if algorithm != ALGORITHM:
        return f"algorithm {json.dumps(algorithm)}, not {ALGORITHM}"
    try:
        raw = base64.b64decode(signature, validate=True) if isinstance(signature, str) else b""
    except binascii.Error:
        raw = b""
    if len(raw) != SIGNATURE_BYTES:
        return f"the signature is not base64 of the {SIGNATURE_BYTES} bytes of an Ed25519 one"
    body = certificate["body"]
    trusted = {key_id(k): k for k in keys}
    named = certificate.get("key_id")
    key = trusted.get(named) if isinstance(named, str) else None
    if key is None:
        # The key_id names no trusted key: a trusted key's signature under a wrong key_id
        # is told as such, anything else as a signer this check does not know.
        signer = next((i for i, k in trusted.items() if _signed(k, raw, body)), None)
        if signer is None:
            return f"signed with key {named}, not {' or '.join(trusted)}{advice}"
        return f"key_id {json.dumps(named)} does not name the key that signed it ({signer})"
    if not _signed(key, raw, body):
        return "the signature does not match the body: changed after signing"
    for field, value in certificate.items():
        if field in BOOKKEEPING:
            continue
        if field not in body:
            return f"the envelope's {field} is not in the signed body"
        if not _same(value, body[field]):
            return (
                f"the envelope's {field} {json.dumps(value)} differs from the signed body's "
                f"{json.dumps(body[field])}"
            )
    return ""


def _signed(key: Ed25519PublicKey, raw: bytes, body: Mapping[str, Any]) -> bool:
    try:
        key.verify(raw, canonical(body))
    except InvalidSignature:
        return False
    return True


def check_all(
    keys: Sequence[Ed25519PublicKey], certificates: list[dict[str, Any]], advice: str = ""
) -> list[str]:
    """`check` for each, plus what only the list can tell: a version that says it is current
    (superseded null) while a later version of its delivery, valid, is in the same list."""
    why = [check(keys, c, advice) for c in certificates]
    latest: dict[Any, int] = {}
    for c, w in zip(certificates, why, strict=True):
        version = c["body"].get("version")
        if not w and isinstance(version, int):
            d = json.dumps(c["body"].get("delivery_id"))
            latest[d] = max(latest.get(d, version), version)
    for i, c in enumerate(certificates):
        version = c["body"].get("version")
        newer = latest.get(json.dumps(c["body"].get("delivery_id")))
        current = c.get("superseded") is None
        if not why[i] and current and isinstance(version, int) and newer and newer > version:
            why[i] = f"says it is current, but version {newer} of its delivery is in the input"
    return why

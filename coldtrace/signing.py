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
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "Ed25519"
RAW_KEY_BYTES = 32


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


def key_id(key: Ed25519PublicKey) -> str:
    """Names a key without revealing anything: the first 16 hex digits of the SHA-256 of its
    32 raw public bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, body: Mapping[str, Any]) -> str:
    """The base64 signature of the body's canonical form."""
    return base64.b64encode(key.sign(canonical(body))).decode()


def verify(key: Ed25519PublicKey, body: Mapping[str, Any], signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), canonical(body))
    except (InvalidSignature, ValueError):  # ValueError: not base64, or NaN in the body
        return False
    return True

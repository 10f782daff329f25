"""Ed25519 signatures over the canonical JSON form (coldtrace.signing), and the signing key
in the settings: generated in development, required in production, a bad one named."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coldtrace import signing
from coldtrace.devtools.services import free_port
from coldtrace.settings import ConfigError, Settings, load_settings
from tests.conftest import run_coldtrace

BODY: dict[str, Any] = {
    "delivery_id": 7,
    "customer_id": "lyon-lab",
    "verdict": "not_compliant",
    "dropoff": "Hôpital, labo",
    "breaches": [{"id": 3, "rule": "excursion", "start": "2026-01-05T08:15:00Z", "end": None}],
}


pytestmark = pytest.mark.usefixtures("clean_env")


def pem(key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_a_signature_verifies_with_the_public_key() -> None:
    key = Ed25519PrivateKey.generate()
    signature = signing.sign(key, BODY)
    assert len(base64.b64decode(signature)) == 64
    assert signing.verify(key.public_key(), BODY, signature)


@pytest.mark.parametrize(
    "change",
    [
        {"verdict": "compliant"},
        {"breaches": []},
        {"delivery_id": 8},
        {"extra": True},
    ],
)
def test_a_changed_body_fails(change: dict[str, Any]) -> None:
    key = Ed25519PrivateKey.generate()
    signature = signing.sign(key, BODY)
    assert not signing.verify(key.public_key(), BODY | change, signature)


def test_a_signature_from_another_key_fails() -> None:
    mine, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    assert not signing.verify(mine.public_key(), BODY, signing.sign(other, BODY))
    assert signing.key_id(mine.public_key()) != signing.key_id(other.public_key())


@pytest.mark.parametrize("signature", ["", "not base64!", base64.b64encode(b"x" * 64).decode()])
def test_a_malformed_signature_fails(signature: str) -> None:
    assert not signing.verify(Ed25519PrivateKey.generate().public_key(), BODY, signature)


def test_the_canonical_form_is_sorted_compact_utf8() -> None:
    body = {"b": 1, "a": {"d": "é", "c": [2, 1.5, None, True]}}
    assert signing.canonical(body) == '{"a":{"c":[2,1.5,null,true],"d":"é"},"b":1}'.encode()


def test_the_canonical_form_does_not_depend_on_key_order() -> None:
    reordered = dict(reversed(list(BODY.items())))
    reordered["breaches"] = [dict(reversed(list(b.items()))) for b in BODY["breaches"]]
    assert list(reordered) != list(BODY)
    assert signing.canonical(reordered) == signing.canonical(BODY)
    key = Ed25519PrivateKey.generate()
    assert signing.verify(key.public_key(), reordered, signing.sign(key, BODY))


def test_a_key_reads_from_pem_and_from_base64_raw() -> None:
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    from_pem = signing.private_key(pem(key))
    from_raw = signing.private_key(base64.b64encode(raw).decode() + "\n")
    expected = signing.key_id(key.public_key())
    assert (
        signing.key_id(from_pem.public_key()) == signing.key_id(from_raw.public_key()) == expected
    )
    public = signing.public_key(signing.public_key_pem(key.public_key()))
    assert signing.verify(public, BODY, signing.sign(from_raw, BODY))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("hello world", "neither PEM nor base64"),
        (base64.b64encode(b"k" * 31).decode(), "base64 of 31 bytes"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "not a readable"),
        (pem(ec.generate_private_key(ec.SECP256R1())), "not an Ed25519 one"),
    ],
)
def test_a_bad_key_says_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        signing.private_key(text)


def test_development_generates_the_signing_key(tmp_path: Path) -> None:
    a = load_settings(run_dir=tmp_path / "a")
    again = load_settings(run_dir=tmp_path / "a")
    b = load_settings(run_dir=tmp_path / "b")
    ids = [signing.key_id(s.certificate_key.public_key()) for s in (a, again, b)]
    assert ids[0] == ids[1] != ids[2]


def test_an_older_run_dir_gets_a_signing_key_added(tmp_path: Path) -> None:
    env_file = tmp_path / "secrets.env"
    env_file.write_text("COLDTRACE_MQTT_USERNAME=ingest\nCOLDTRACE_MQTT_PASSWORD=kept\n")
    s = load_settings(run_dir=tmp_path)
    assert s.mqtt_password is not None and s.mqtt_password.get_secret_value() == "kept"
    assert env_file.read_text().count("COLDTRACE_CERTIFICATE_SIGNING_KEY=") == 1
    assert load_settings(run_dir=tmp_path).certificate_key is not None


def test_a_bad_signing_key_is_named_without_echoing_it(tmp_path: Path) -> None:
    secret = base64.b64encode(b"s" * 20).decode()
    with pytest.raises(ConfigError) as info:
        load_settings(run_dir=tmp_path, certificate_signing_key=secret)
    message = str(info.value)
    assert message.startswith("COLDTRACE_CERTIFICATE_SIGNING_KEY is not an Ed25519 private key")
    assert secret not in message


def public_pem(key: Ed25519PrivateKey) -> str:
    return signing.public_key_pem(key.public_key())


ANY_KEY = Ed25519PrivateKey.generate()


def test_retired_public_keys_are_read_after_the_signing_key(tmp_path: Path) -> None:
    old, older = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    s = load_settings(
        run_dir=tmp_path, certificate_retired_public_keys=public_pem(old) + public_pem(older)
    )
    assert [signing.key_id(k) for k in s.certificate_public_keys] == [
        signing.key_id(s.certificate_key.public_key()),
        signing.key_id(old.public_key()),
        signing.key_id(older.public_key()),
    ]
    assert len(load_settings(run_dir=tmp_path).certificate_public_keys) == 1


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (
            public_pem(ANY_KEY) + pem(ANY_KEY),
            "PEM block 2: not a readable PEM public key",
        ),
        (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode(),
            "PEM block 1: a PEM public key, but not an Ed25519 one",
        ),
        (
            "old.pem\n" + public_pem(ANY_KEY),
            "text before PEM block 1: only PEM public key blocks are read",
        ),
        (
            public_pem(ANY_KEY) + "trailing",
            "text that is not a PEM block: only PEM public key blocks are read",
        ),
    ],
)
def test_a_bad_retired_public_key_is_named_at_start_up(tmp_path: Path, text: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(run_dir=tmp_path, certificate_retired_public_keys=text)
    assert str(info.value) == (
        f"COLDTRACE_CERTIFICATE_RETIRED_PUBLIC_KEYS: {why} (give the retired keys' public.pem "
        "files one after another, as GET /api/v1/certificates/public-key gave them)"
    )


def test_settings_without_a_key_cannot_sign() -> None:
    with pytest.raises(ConfigError, match="COLDTRACE_CERTIFICATE_SIGNING_KEY is not set"):
        Settings().certificate_key  # noqa: B018


def test_production_without_the_signing_key_fails_at_start_up(tmp_path: Path) -> None:
    proc = run_coldtrace(
        "api",
        COLDTRACE_ENV="production",
        COLDTRACE_API_PORT=str(free_port()),  # not 8000: the developer's own API may hold it
        COLDTRACE_RUN_DIR=str(tmp_path),
        COLDTRACE_MQTT_USERNAME="ingest",
        COLDTRACE_MQTT_PASSWORD="s3cret",
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "configuration error: COLDTRACE_CERTIFICATE_SIGNING_KEY is not set: certificates cannot"
        " be signed"
    )
    assert not (tmp_path / "secrets.env").exists()


# -- strict verification of a certificate as the API returns it ---------------------------------

SIGNER = Ed25519PrivateKey.generate()
SIGNED_BODY: dict[str, Any] = BODY | {"version": 2}


def envelope(body: dict[str, Any] = SIGNED_BODY, **change: Any) -> dict[str, Any]:
    """A certificate as GET /api/v1/certificates/{id} returns it, signed by SIGNER."""
    return {
        "id": 11,
        "delivery_id": body["delivery_id"],
        "version": body["version"],
        "issued": "2026-01-05T10:00:00Z",
        "superseded": None,
        "verdict": body["verdict"],
        "body": body,
        "algorithm": "Ed25519",
        "signature": signing.sign(SIGNER, body),
        "key_id": signing.key_id(SIGNER.public_key()),
    } | change


def reasons(text: str) -> list[str]:
    return signing.check_all([SIGNER.public_key()], signing.read_certificates(text))


def test_a_genuine_certificate_verifies_also_with_its_keys_reordered() -> None:
    genuine = envelope()
    assert reasons(json.dumps(genuine)) == [""]
    reordered = dict(reversed(list(genuine.items())))
    reordered["body"] = dict(reversed(list(SIGNED_BODY.items())))
    assert list(reordered["body"]) != list(SIGNED_BODY)
    assert reasons(json.dumps([reordered, genuine])) == ["", ""]


OTHER_BODY: dict[str, Any] = SIGNED_BODY | {"delivery_id": 8, "verdict": "compliant"}
OTHER = envelope(OTHER_BODY)


@pytest.mark.parametrize(
    ("forged", "why"),
    [
        (
            envelope(key_id="0123456789abcdef"),
            f'key_id "0123456789abcdef" does not name the key that signed it '
            f"({signing.key_id(SIGNER.public_key())})",
        ),
        (envelope(algorithm="none"), 'algorithm "none", not Ed25519'),
        (envelope(algorithm=None), "algorithm null, not Ed25519"),
        (
            envelope(verdict="compliant"),
            'the envelope\'s verdict "compliant" differs from the signed body\'s "not_compliant"',
        ),
        (envelope(delivery_id=9), "the envelope's delivery_id 9 differs from the signed body's 7"),
        (
            envelope(delivery_id=True),
            "the envelope's delivery_id true differs from the signed body's 7",
        ),
        (envelope(version=3), "the envelope's version 3 differs from the signed body's 2"),
        (envelope(profile="frozen"), "the envelope's profile is not in the signed body"),
        # A's envelope carrying B's body and signature.
        (
            envelope() | {"body": OTHER_BODY, "signature": OTHER["signature"]},
            "the envelope's delivery_id 7 differs from the signed body's 8",
        ),
        (
            envelope(signature="not base64!"),
            "the signature is not base64 of the 64 bytes of an Ed25519 one",
        ),
        (
            envelope(signature="AAAA"),
            "the signature is not base64 of the 64 bytes of an Ed25519 one",
        ),
        (envelope(signature=64), "the signature is not base64 of the 64 bytes of an Ed25519 one"),
        (envelope(signature=None), "not signed (issued before certificates were signed)"),
        (
            envelope(
                body=SIGNED_BODY | {"verdict": "compliant"},
                signature=envelope()["signature"],
                verdict="compliant",
            ),
            "the signature does not match the body: changed after signing",
        ),
    ],
)
def test_a_forged_certificate_is_refused_with_its_reason(forged: dict[str, Any], why: str) -> None:
    assert reasons(json.dumps(forged)) == [why]


def signed_by(key: Ed25519PrivateKey, **change: Any) -> dict[str, Any]:
    """`envelope()` signed by `key` instead, its key_id naming it."""
    return (
        envelope(signature=signing.sign(key, SIGNED_BODY), key_id=signing.key_id(key.public_key()))
        | change
    )


def test_another_keys_signature_is_named_with_the_callers_advice() -> None:
    foreign = signed_by(Ed25519PrivateKey.generate())
    expected = signing.key_id(SIGNER.public_key())
    assert reasons(json.dumps(foreign)) == [f"signed with key {foreign['key_id']}, not {expected}"]
    assert signing.check([SIGNER.public_key()], foreign, ": pass its --public-key") == (
        f"signed with key {foreign['key_id']}, not {expected}: pass its --public-key"
    )


RETIRED = Ed25519PrivateKey.generate()
KEYRING = [SIGNER.public_key(), RETIRED.public_key()]


def test_a_certificate_verifies_with_the_current_or_a_retired_key() -> None:
    assert signing.check(KEYRING, envelope()) == ""
    assert signing.check(KEYRING, signed_by(RETIRED)) == ""
    # The retired key no longer trusted: its certificates are invalid again.
    assert signing.check([SIGNER.public_key()], signed_by(RETIRED)) == (
        f"signed with key {signing.key_id(RETIRED.public_key())}, "
        f"not {signing.key_id(SIGNER.public_key())}"
    )


def test_a_key_outside_the_keyring_names_every_trusted_one() -> None:
    stranger = signed_by(Ed25519PrivateKey.generate())
    current, retired = (signing.key_id(k) for k in KEYRING)
    assert signing.check(KEYRING, stranger) == (
        f"signed with key {stranger['key_id']}, not {current} or {retired}"
    )


def test_a_retired_keys_id_over_a_bad_signature_is_refused() -> None:
    # key_id names the retired key, the signature is the stranger's (or the body changed).
    forged = signed_by(RETIRED, signature=signing.sign(Ed25519PrivateKey.generate(), SIGNED_BODY))
    assert signing.check(KEYRING, forged) == (
        "the signature does not match the body: changed after signing"
    )
    changed = signed_by(RETIRED, body=SIGNED_BODY | {"verdict": "compliant"}, verdict="compliant")
    assert signing.check(KEYRING, changed) == (
        "the signature does not match the body: changed after signing"
    )
    # A trusted key's signature under another trusted key's id is not taken either.
    swapped = signed_by(RETIRED, key_id=signing.key_id(SIGNER.public_key()))
    assert signing.check(KEYRING, swapped) == (
        "the signature does not match the body: changed after signing"
    )


def test_a_trusted_signature_under_an_unknown_key_id_is_named() -> None:
    renamed = signed_by(RETIRED, key_id="0123456789abcdef")
    assert signing.check(KEYRING, renamed) == (
        'key_id "0123456789abcdef" does not name the key that signed it '
        f"({signing.key_id(RETIRED.public_key())})"
    )


def test_a_duplicate_key_is_refused_at_any_depth() -> None:
    genuine = json.dumps(envelope())
    # A forged "verdict" before the genuine one: Python keeps the last, another reader the first.
    forged = genuine.replace('"body": {', '"body": {"verdict": "compliant", ', 1)
    assert json.loads(forged)["body"]["verdict"] == "not_compliant"
    assert reasons(forged) == ["duplicate key body.verdict: the JSON can be read two ways"]
    nested = genuine.replace('"rule": "excursion"', '"rule": "x", "rule": "excursion"')
    assert reasons(nested) == ["duplicate key body.breaches[0].rule: the JSON can be read two ways"]
    outer = genuine.replace('{"id": 11', '{"id": 12, "id": 11')
    assert reasons(f"[{genuine}, {outer}]") == [
        "",
        "duplicate key id: the JSON can be read two ways",
    ]


def test_a_version_saying_it_is_current_beside_a_later_one_is_refused() -> None:
    v1 = envelope(SIGNED_BODY | {"version": 1}, id=10)
    v2 = envelope()
    assert reasons(json.dumps([v2, v1 | {"superseded": "2026-01-05T10:00:00Z"}])) == ["", ""]
    assert reasons(json.dumps([v2, v1])) == [
        "",
        "says it is current, but version 2 of its delivery is in the input",
    ]
    assert reasons(json.dumps([OTHER, v1])) == ["", ""]  # another delivery's version 2


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty: a certificate's JSON (or its PDF) was expected"),
        (" \n", "empty: a certificate's JSON (or its PDF) was expected"),
        ("{", "not JSON: Expecting property name"),
        ('{"body": NaN}', "not JSON: NaN is not JSON"),
        ("[1]", "not a certificate (or list of them)"),
        ('{"body": []}', "not a certificate (or list of them)"),
    ],
)
def test_unusable_input_is_unreadable(text: str, why: str) -> None:
    with pytest.raises(signing.Unreadable, match=re.escape(why)):
        signing.read_certificates(text)


def test_an_empty_list_holds_no_certificate() -> None:
    assert signing.read_certificates("[]") == []

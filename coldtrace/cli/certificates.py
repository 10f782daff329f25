"""`coldtrace certificates`: verify certificates' Ed25519 signatures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from coldtrace.cli.operator import operator_store
from coldtrace.cli.output import emit
from coldtrace.settings import ConfigError, Settings


def _certificates_text(file: Path) -> str:
    """The certificates' JSON text in FILE: the file itself, or the signed certificate
    attached to a certificate PDF (coldtrace.certificates.document.extract_signed_json)."""
    from coldtrace.certificates.document import extract_signed_json

    data = file.read_bytes()
    return extract_signed_json(data) if data.startswith(b"%PDF-") else data.decode("utf-8")


def cmd_certificates_get(settings: Settings, args: argparse.Namespace) -> int:
    """The current certificate of a delivery (by reference or id): a summary table, its JSON
    (--json) as the API returns it, and with -o its PDF (readings from InfluxDB)."""
    from sqlalchemy.engine import make_url

    from coldtrace.certificates.document import NoDocument
    from coldtrace.certificates.pdf import render_pdf
    from coldtrace.certificates.render import (
        NotIssued,
        current_version,
        envelope,
        version_document,
    )
    from coldtrace.deliveries.source import ReadingSource
    from coldtrace.deliveries.store import NotFound
    from coldtrace.influx import InfluxClient, InfluxRejected, InfluxUnavailable

    store = operator_store(settings)
    try:
        c = current_version(store.session, args.delivery)
    except NotFound as exc:
        # Named: run elsewhere than the checkout, the default store is a new, empty one.
        url = make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)
        print(
            f"error: {exc} in {url}: see `coldtrace deliveries list`, or set "
            "COLDTRACE_DATABASE_URL to the operator's store",
            file=sys.stderr,
        )
        return 2
    except NotIssued as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output is not None:
        influx = InfluxClient(settings)
        source = ReadingSource(influx)
        try:
            pdf = render_pdf(
                version_document(
                    store.session,
                    c,
                    source,
                    settings.public_url,
                    settings.certificate_issuer_logo,
                    args.language,
                )
            )
        except (InfluxUnavailable, InfluxRejected) as exc:
            print(
                f"error: InfluxDB at {settings.influx_url}: {exc}: start it (coldtrace "
                "services up influxdb) or set COLDTRACE_INFLUX_URL",
                file=sys.stderr,
            )
            return 2
        except NoDocument as exc:
            print(f"error: {exc}: --json gives it; re-evaluate it for a PDF", file=sys.stderr)
            return 2
        finally:
            source.close()
            influx.close()
        try:
            args.output.write_bytes(pdf)
        except OSError as exc:
            print(f"error: -o {args.output}: {exc}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(envelope(c), indent=2, ensure_ascii=False))
        return 0
    b = c.body
    emit(
        [
            {
                "delivery": b.get("reference") or c.delivery_id,
                "version": c.version,
                "verdict": c.verdict,
                "readings": b.get("readings"),
                "mkt_c": b.get("mkt_c"),
                "out_of_range_min": b.get("out_of_range_min"),
                "breaches": len(b.get("breaches", [])),
                "gaps": len(b.get("gaps", [])),
                "pdf": args.output,
            }
        ],
        False,
    )
    return 0


def cmd_certificates(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when every certificate in the file verifies (signing.check_all), 1 when one does
    not or there is none, 2 when the file or the key cannot be read or there is no key."""
    from coldtrace import signing

    try:
        keys = (
            [signing.public_key(args.public_key.read_text())]
            if args.public_key
            else settings.certificate_public_keys
        )
    except (OSError, ValueError) as exc:
        print(f"error: --public-key {args.public_key}: {exc}", file=sys.stderr)
        return 2
    except ConfigError:  # not signing here: no key of this installation to check against
        print(f"error: {_no_key(settings)}", file=sys.stderr)
        return 2
    try:
        certificates = signing.read_certificates(_certificates_text(args.file))
    except (OSError, ValueError) as exc:  # Unreadable, NotACertificatePdf, not UTF-8
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    if not certificates:
        print(f"error: {args.file}: no certificate in it: nothing verified", file=sys.stderr)
        return 1
    rows: list[dict[str, object]] = [
        {
            "certificate": c.get("id"),
            "delivery": c.get("delivery_id"),
            "version": c.get("version"),
            "key_id": c.get("key_id"),
            "valid": not why,
            "why": why,
        }
        for c, why in zip(
            certificates,
            signing.check_all(keys, certificates, ": pass its --public-key"),
            strict=True,
        )
    ]
    emit(rows, args.json)
    return 0 if all(r["valid"] for r in rows) else 1


def _no_key(settings: Settings) -> str:
    """The line for a verify without --public-key where this installation has no signing
    key: where it looked, and the setting that would point it at the key."""
    pem = (
        "pass the signer's public key with --public-key "
        "(`pem` of GET /api/v1/certificates/public-key)"
    )
    if settings.env != "development":
        return f"no key to verify with (COLDTRACE_CERTIFICATE_SIGNING_KEY is not set): {pem}"
    return (
        f"no key to verify with (none in {settings.run_dir.resolve() / 'secrets.env'}): {pem}, "
        "or set COLDTRACE_RUN_DIR to the run directory of the installation that signed it"
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("certificates", help="certificates: get one (PDF, JSON), verify them")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("get", help="a delivery's current certificate")
    a.add_argument("delivery", metavar="DELIVERY", help="its reference or id")
    a.add_argument("-o", "--output", type=Path, metavar="FILE.pdf", help="write its PDF here")
    a.add_argument("--language", choices=["en", "fr"], help="default: the customer's")
    a.add_argument("--json", action="store_true", help="print it as the API returns it")
    a.set_defaults(func=cmd_certificates_get)
    p = actions.add_parser("verify", help="check Ed25519 signatures, offline")
    p.add_argument(
        "file",
        type=Path,
        metavar="FILE",
        help="a certificate or a list as the API returns (JSON), or a certificate PDF",
    )
    p.add_argument(
        "--public-key",
        type=Path,
        metavar="PEM",
        help="the signer's public key (`pem` of GET /api/v1/certificates/public-key); "
        "default: that of COLDTRACE_CERTIFICATE_SIGNING_KEY",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_certificates, generate_secrets=False)

"""`coldtrace`: one command, a subcommand per component. Settings are built here, once."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from coldtrace import cli_devices, dashboards_cli, gateway_cli
from coldtrace.contract import json_schema
from coldtrace.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from deliveries.store import Store
    from simulators.compare import Report


def table(rows: Sequence[dict[str, object]]) -> str:
    if not rows:
        return "(nothing)"
    cols = list(rows[0])
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    head = "  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True))
    body = [
        "  ".join(
            v.rjust(w) if v.removeprefix("-").replace(".", "", 1).isdigit() else v.ljust(w)
            for v, w in zip(row, widths, strict=True)
        )
        for row in cells
    ]
    return "\n".join([head, *body])


def _emit(rows: list[dict[str, object]], as_json: bool) -> None:
    print(json.dumps(rows, indent=2) if as_json else table(rows))


# -- subcommands -----------------------------------------------------------------------------


def cmd_services(settings: Settings, args: argparse.Namespace) -> int:
    from coldtrace.services import DEFAULT_SERVICES, SERVICES, LocalServices

    unknown = [n for n in args.names if n not in SERVICES]
    if unknown:
        print(
            f"error: unknown service {unknown[0]!r} (one of {', '.join(SERVICES)})", file=sys.stderr
        )
        return 2
    services = LocalServices(settings)
    if args.action == "up":
        services.up(args.names or DEFAULT_SERVICES)
    elif args.action == "down":
        stopped = services.down()
        if not args.json:
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    _emit(services.status(), args.json)
    return 0


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from coldtrace.bootstrap import ingest_service
    from ingest import lock
    from ingest.consumer import BrokerRefused

    settings.mqtt_login  # noqa: B018 (its login, or ConfigError: before anything starts)
    try:
        held = lock.take(settings)  # before connecting: the broker session is the other's
    except lock.AlreadyRunning as exc:
        print(f"error: {exc}: stop it first (kill {exc.pid or '<pid>'})", file=sys.stderr)
        return 2
    try:
        return ingest_service(settings).run()
    except BrokerRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        held.close()


def _register_sim_devices(settings: Settings, vehicles: int) -> None:
    from coldtrace.services import LocalServices
    from simulators.fleet import device_id

    LocalServices(settings).register_devices(device_id(i) for i in range(vehicles))


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from coldtrace.services import device_password
    from simulators.publish import simulate

    if args.scenario:
        return _simulate_scenario(settings, args)
    _register_sim_devices(settings, args.vehicles)
    sent = simulate(
        settings,
        lambda d: device_password(settings, d),
        vehicles=args.vehicles,
        readings=args.readings,
        interval_s=args.interval,
        speedup=args.speedup,
        per_batch=args.batch,
        seed=args.seed,
        state_file=settings.run_dir / "simulator-state.json",
        progress=_progress_printer("published") if not args.json else None,
    )
    rows: list[dict[str, object]] = [{"device": d, "sent": n} for d, n in sorted(sent.items())]
    _emit(rows, args.json)
    return 0


def _simulate_scenario(settings: Settings, args: argparse.Namespace) -> int:
    """`simulate --scenario NAME`: play it against the running pipeline, print expected
    against found; exit 1 on any mismatch."""
    import secrets
    from datetime import datetime

    from coldtrace.profiles import load_profiles
    from coldtrace.services import ServiceError, device_password
    from deliveries.trace import iso
    from simulators import scenario as scenarios
    from simulators.runner import RunFailed, Runner

    key = args.api_key or os.environ.get("COLDTRACE_API_KEY")
    if not key:
        print(
            "error: an admin API key is needed: --api-key KEY or COLDTRACE_API_KEY "
            "(`coldtrace keys create --role admin`)",
            file=sys.stderr,
        )
        return 2
    try:
        sc = scenarios.load(args.scenario)
        start = None if args.start is None else datetime.fromisoformat(args.start)
    except scenarios.ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError:
        print(
            f"error: --start {args.start!r}: use ISO 8601, e.g. 2026-11-30T08:00Z", file=sys.stderr
        )
        return 2
    prefix = args.prefix or f"sim{secrets.token_hex(3)}"
    now_ms = int(time.time() * 1000)
    placed = scenarios.place(
        sc,
        prefix,
        load_profiles(settings.alerts_profiles_file),
        now_ms,
        settings.close_grace_s * 1000,
        None if start is None else round(start.timestamp() * 1000),
    )
    if placed.epoch_ms + placed.duration_ms > now_ms:
        print(
            "error: --start: the scenario would end in the future; start it earlier",
            file=sys.stderr,
        )
        return 2
    missing = scenarios.missing_settings(placed, settings, now_ms)
    if missing:
        setting = " ".join(f"{n}='{v}'" for n, v in missing.items())
        print(
            f"error: scenario {sc.name} needs ingest run with {setting} (and this command "
            f"with the same): restart ingest so, then run again with --prefix {prefix} "
            f"--start {iso(placed.epoch_ms)}",
            file=sys.stderr,
        )
        return 2

    def progress(line: str) -> None:
        if not args.json:
            print(f"    {line}", file=sys.stderr, flush=True)

    api = args.api or f"http://{settings.api_host}:{settings.api_port}"
    runner = Runner(settings, api, key, lambda d: device_password(settings, d), progress)
    try:
        report = runner.run(placed)
    except (RunFailed, ServiceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        runner.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(f"scenario {sc.name}: {sc.title}")
        print(f"devices {prefix}-*, t+0 = {report.start}\n")
        print(table([dataclasses.asdict(c) for c in report.checks]))
        bad = len(report.mismatches)
        print(f"\n{bad} mismatch{'es' if bad != 1 else ''}" if bad else "\nall as expected")
    return 1 if report.mismatches else 0


def _progress_printer(label: str) -> Callable[[int, int], None]:
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 2 or done == total:
            last[0] = now
            pct = 100 * done // max(total, 1)
            print(f"    {label} {done}/{total} readings ({pct}%)", file=sys.stderr, flush=True)

    return show


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """The `demo` scenario told in five steps (coldtrace/demo.py); exit 0 when nothing was
    lost, every delivery closed with its certificate and all was as the scenario expects."""
    from api.process import ApiFailed, ApiProcess
    from coldtrace import demo
    from coldtrace.influx import InfluxClient
    from coldtrace.profiles import load_profiles
    from coldtrace.services import LocalServices, ServiceError, device_password, free_port
    from ingest import lock
    from ingest.process import IngestFailed, IngestProcess
    from ingest.report import landed
    from simulators import scenario as scenarios
    from simulators.runner import RunFailed, Runner

    running = lock.holder(settings)
    if running is not None:
        print(
            f"error: ingest already running (pid {running}): the demo runs its own ingest; "
            f"stop that one (kill {running}), then run the demo again",
            file=sys.stderr,
        )
        return 2
    print("1/5 starting Mosquitto and InfluxDB on 127.0.0.1 ...", flush=True)
    try:
        LocalServices(settings).up()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sc = scenarios.load(demo.SCENARIO)
    now_ms = int(time.time() * 1000)
    placed = scenarios.place(
        sc,
        f"demo{demo.next_round(settings.run_dir)}",
        load_profiles(settings.alerts_profiles_file),
        now_ms,
        settings.close_grace_s * 1000,
    )
    env = {
        **os.environ,
        "COLDTRACE_RUN_DIR": str(settings.run_dir.resolve()),
        "COLDTRACE_MQTT_HOST": settings.mqtt_host,
        "COLDTRACE_MQTT_PORT": str(settings.mqtt_port),
        "COLDTRACE_INFLUX_URL": settings.influx_url,
        "COLDTRACE_INFLUX_DATABASE": settings.influx_database,
        "COLDTRACE_DATABASE_URL": settings.sqlalchemy_url,
        # its deliveries link to their Grafana dashboard (told at the end)
        "COLDTRACE_GRAFANA_URL": settings.grafana_url or demo.GRAFANA_DEFAULT,
    }
    # The scenario's rules settings (a van whose door is judged by its own profile; a
    # silence longer than the replayed round's lag behind the wall clock), the same for
    # ingest and the API: the API judges the certificates by them.
    alerts = scenarios.ingest_settings([placed], now_ms)
    print("2/5 starting the API with its delivery sweep (log: run/api.log) ...", flush=True)
    api = ApiProcess({**env, **alerts}, settings.run_dir / "api.log")
    health = free_port()  # the demo's own: 8081 may be taken
    ingest = IngestProcess(
        settings,
        settings.run_dir / "ingest.log",
        COLDTRACE_INGEST_HEALTH_PORT=str(health),
        **alerts,
    )
    influx = InfluxClient(settings)

    def progress(line: str) -> None:
        print(f"    {line}", flush=True)

    try:
        api.start()
        print("3/5 starting ingest with its rules stage (log: run/ingest.log) ...", flush=True)
        ingest.start()
        before = landed(influx)
        minutes = placed.duration_ms // 60_000
        print(
            f"4/5 {sc.title} ({minutes} simulated minutes; boxes {placed.prefix}-van-NN) ...",
            flush=True,
        )
        runner = Runner(
            settings.model_copy(update={"ingest_health_port": health}),
            api.base,
            api.key,
            lambda d: device_password(settings, d),
            progress,
        )
        try:
            report = runner.run(placed)
        finally:
            runner.close()
        print("5/5 reading back what the pipeline made of it ...", flush=True)
        call = demo.api_client(api.base, api.key)
        books = demo.books(demo.sent(placed), before, landed(influx))
        rows, breaches = demo.deliveries(call, placed)
        delivery, link = demo.dashboard_link(call, rows)
    except (ApiFailed, IngestFailed, RunFailed, demo.DemoFailed) as exc:
        print(
            f"error: {str(exc).splitlines()[0]} (see run/api.log, run/ingest.log)", file=sys.stderr
        )
        return 1
    finally:
        ingest.stop()
        api.stop()
        influx.close()
    _tell(settings, books, rows, breaches, report, api.key)
    grafana = settings.grafana_url or demo.GRAFANA_DEFAULT
    print(demo.grafana_hint(grafana, settings.influx_url, delivery, link))
    bad = report.mismatches
    lost = sum(int(str(r["lost"])) for r in books)
    closed = all(r["verdict"] != demo.NO_CERTIFICATE for r in rows)
    return 0 if lost == 0 and closed and not bad else 1


def _tell(
    settings: Settings,
    van_books: list[dict[str, object]],
    rows: list[dict[str, object]],
    breaches: list[dict[str, object]],
    report: Report,
    key: str,
) -> None:
    """The story's ending: the books per van, the deliveries with their verdicts and
    breaches, where the certificates are and how to open the API."""
    print("\nWhat each van sent and what became of it (sent = stored + rejected + missing):\n")
    print(table(van_books))
    total = {
        k: sum(int(str(r[k])) for r in van_books)
        for k in ("sent", "stored", "rejected", "missing", "lost")
    }
    print(
        f"\nsent {total['sent']} readings = stored {total['stored']} + rejected "
        f"{total['rejected']} + missing {total['missing']}; lost {total['lost']}"
    )
    print("\nThe deliveries (times UTC), each judged by its product's profile:\n")
    print(table(rows))
    print("\nTheir breaches:\n")
    print(table(breaches) if breaches else "(none)")
    base = f"http://{settings.api_host}:{settings.api_port}"
    verdicts = Counter(str(r["verdict"]) for r in rows)
    print("\nverdicts: " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())))
    bad = report.mismatches
    print(
        f"against the scenario's ground truth (every breach, verdict, and live against "
        f"certificate): {len(report.checks)} checks, "
        + (f"{len(bad)} mismatched:" if bad else "all as expected")
    )
    if bad:
        print(table([dataclasses.asdict(c) for c in bad]))
    warm = [r["delivery"] for r in rows if r["verdict"] == "not_compliant"]
    first = warm[0] if warm else rows[0]["delivery"] if rows else 1
    device = van_books[0]["van"] if van_books else "van-01"
    print(f"""
Open the API with the admin key this demo created; it is shown only now (coldtrace keeps
its hash):
  {key}
  .venv/bin/coldtrace api        # in another terminal; OpenAPI at {base}/docs
  curl -H "Authorization: Bearer {key}" {base}/api/v1/deliveries/{first}/certificates > cert.json
  .venv/bin/coldtrace certificates verify cert.json   # each version is signed (Ed25519)

Where to look next:
  logs        run/ingest.log, run/api.log
  ingest      while `coldtrace ingest` runs: curl 127.0.0.1:{settings.ingest_health_port}/health
  InfluxDB    curl -G {settings.influx_url}/query --data-urlencode db={settings.influx_database} \\
                --data-urlencode "q=SELECT * FROM temperature WHERE device='{device}' LIMIT 5"
  services    .venv/bin/coldtrace services status   (stop them: coldtrace services down)""")


def cmd_schema(settings: Settings, args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
    return 0


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from coldtrace.db import upgrade

    upgrade(settings.migration_url, settings.app_role)
    print(f"database at head: {settings.sqlalchemy_url.split('@')[-1]}")
    return 0


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    import gc
    import socket

    import uvicorn

    from coldtrace.bootstrap import api_app
    from coldtrace.settings import port_taken

    host, port = args.host or settings.api_host, args.port or settings.api_port
    # Bound here, before the app starts: a port taken is then one line, not uvicorn's log.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise port_taken("API_PORT", host, port, exc) from None
    app = api_app(settings)
    # A long trace allocates ~100,000 short-lived objects (and the API keeps finished ones):
    # with the default threshold (700) the collector's passes doubled a cold trace's time.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        ssl_certfile=settings.api_tls_certfile,  # HTTPS when both are set
        ssl_keyfile=settings.api_tls_keyfile,
    )
    uvicorn.Server(config).run([sock])
    return 0


def _cli_store(settings: Settings) -> Store:
    """A session on the store, acting as the local operator (named in the audit log)."""
    import getpass

    from sqlalchemy.orm import Session

    from coldtrace.db import make_engine, upgrade
    from coldtrace.profiles import load_profiles
    from deliveries.store import Store

    upgrade(settings.sqlalchemy_url)
    return Store(
        Session(make_engine(settings.sqlalchemy_url)),
        f"cli:{getpass.getuser()}",
        profiles=frozenset(load_profiles(settings.alerts_profiles_file)),
    )


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    from api.keys import Role, create_key, list_keys, revoke_key
    from deliveries.store import Conflict, NotFound

    store = _cli_store(settings)
    try:
        if args.action == "create":
            new = create_key(store, Role(args.role), args.customer, args.label)
            store.session.commit()
            row: dict[str, object] = {
                "id": new.id,
                "role": new.role.value,
                "customer": new.customer_id,
                "key": new.key,
            }
            _emit([row], args.json)
            if not args.json:
                print(
                    "\nthe key is shown only now: store it; coldtrace keeps only its hash",
                    file=sys.stderr,
                )
        elif args.action == "revoke":
            revoke_key(store, args.id)
            store.session.commit()
            print(f"key {args.id} revoked")
        else:
            rows: list[dict[str, object]] = [
                {
                    "id": k.id,
                    "prefix": k.prefix,
                    "role": k.role,
                    "customer": k.customer_id,
                    "label": k.label,
                    "revoked": k.revoked_ms is not None,
                }
                for k in list_keys(store.session)
            ]
            _emit(rows, args.json)
    except (Conflict, NotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _iso(ms: int | None) -> str | None:
    from deliveries.trace import iso

    return None if ms is None else iso(ms)


def cmd_deliveries_list(settings: Settings, args: argparse.Namespace) -> int:
    """Deliveries, newest planned first, with their current certificate's verdict."""
    from sqlalchemy import select

    from deliveries.models import Certificate, Delivery

    session = _cli_store(settings).session
    current = (
        select(Certificate.delivery_id, Certificate.version, Certificate.verdict)
        .where(Certificate.superseded_ms.is_(None))
        .subquery()
    )
    query = (
        select(Delivery, current.c.version, current.c.verdict)
        .outerjoin(current, current.c.delivery_id == Delivery.id)
        .order_by(Delivery.planned_start_ms.desc(), Delivery.id.desc())
        .limit(args.limit)
    )
    if args.state:
        query = query.where(Delivery.state == args.state)
    if args.customer:
        query = query.where(Delivery.customer_id == args.customer)
    rows: list[dict[str, object]] = [
        {
            "id": d.id,
            "reference": d.reference,
            "customer": d.customer_id,
            "profile": d.profile,
            "vehicle": d.compartment.vehicle_id,
            "state": d.state,
            "planned_start": _iso(d.planned_start_ms),
            "certificate": version,
            "verdict": verdict,
        }
        for d, version, verdict in session.execute(query).all()
    ]
    _emit(rows, args.json)
    return 0


def cmd_breaches_list(settings: Settings, args: argparse.Namespace) -> int:
    """Breaches the live rules stage stored, newest first."""
    from sqlalchemy import select

    from coldtrace.breaches import Breach

    session = _cli_store(settings).session
    query = select(Breach).order_by(Breach.start_ts.desc(), Breach.id.desc()).limit(args.limit)
    if args.device:
        query = query.where(Breach.device == args.device)
    if args.open:
        query = query.where(Breach.end_ts.is_(None))
    rows: list[dict[str, object]] = [
        {
            "id": b.id,
            "device": b.device,
            "probe": b.probe,
            "rule": b.rule,
            "severity": b.severity,
            "state": b.state,
            "start": _iso(b.start_ts),
            "end": _iso(b.end_ts),
            "peak_c": b.peak,
            "degree_minutes": round(b.degree_minutes, 1),
            "suppressed": b.suppressed,
        }
        for b in session.scalars(query)
    ]
    _emit(rows, args.json)
    return 0


def cmd_deliveries(settings: Settings, args: argparse.Namespace) -> int:
    from deliveries.importer import BadRow, parse_plans
    from deliveries.store import Conflict, NotFound

    try:
        plans = parse_plans(args.file.read_text(encoding="utf-8-sig"))
    except (BadRow, OSError) as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    store = _cli_store(settings)
    created = []
    for line, plan in enumerate(plans, start=2):
        try:
            created.append(store.create_delivery(plan))
        except (Conflict, NotFound) as exc:
            store.session.rollback()
            print(f"error: {args.file}: line {line}: {exc}; nothing imported", file=sys.stderr)
            return 2
    store.session.commit()
    rows: list[dict[str, object]] = [
        {"id": d.id, "reference": d.reference, "customer": d.customer_id, "state": d.state}
        for d in created
    ]
    _emit(rows, args.json)
    return 0


def _certificates_text(file: Path) -> str:
    """The certificates' JSON text in FILE: the file itself, or the signed certificate
    attached to a certificate PDF (coldtrace.certificates.document.extract_signed_json)."""
    from coldtrace.certificates.document import extract_signed_json

    data = file.read_bytes()
    return extract_signed_json(data) if data.startswith(b"%PDF-") else data.decode("utf-8")


def cmd_certificates_get(settings: Settings, args: argparse.Namespace) -> int:
    """The current certificate of a delivery (by reference or id): a summary table, its JSON
    (--json) as the API returns it, and with -o its PDF (readings from InfluxDB)."""
    from coldtrace.certificates.render import current_version, envelope, version_pdf
    from coldtrace.influx import InfluxClient, InfluxRejected, InfluxUnavailable
    from deliveries.source import ReadingSource
    from deliveries.store import NotFound

    store = _cli_store(settings)
    try:
        c = current_version(store.session, args.delivery)
    except NotFound as exc:
        print(f"error: {exc}: see `coldtrace deliveries list`", file=sys.stderr)
        return 2
    if args.output is not None:
        influx = InfluxClient(settings)
        source = ReadingSource(influx)
        try:
            pdf = version_pdf(
                store.session,
                c,
                source,
                settings.public_url,
                settings.certificate_issuer_logo,
                args.language,
            )
        except (InfluxUnavailable, InfluxRejected) as exc:
            print(
                f"error: InfluxDB at {settings.influx_url}: {exc}: start it (coldtrace "
                "services up influxdb) or set COLDTRACE_INFLUX_URL",
                file=sys.stderr,
            )
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
    _emit(
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


def _books_instant(text: str) -> int:
    """An ISO 8601 time (naive: UTC) -> epoch ms."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-12-01T08:00, naive is UTC)"
        ) from None
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


def cmd_books(settings: Settings, args: argparse.Namespace) -> int:
    """Print the books; exit 1 when a device's books disagree with what ingest wrote."""
    from coldtrace.influx import InfluxClient, InfluxUnavailable
    from ingest.books import load_books

    influx = InfluxClient(settings)
    try:
        books = [load_books(influx, d, args.since, args.until) for d in args.devices]
    except InfluxUnavailable as exc:
        print(
            f"error: InfluxDB at {settings.influx_url} did not answer ({exc}): start it "
            "(coldtrace services up) or set COLDTRACE_INFLUX_URL",
            file=sys.stderr,
        )
        return 2
    finally:
        influx.close()
    _emit([b.as_dict() for b in books], args.json)
    return 1 if any(b.agrees is False for b in books) else 0


def cmd_certificates(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when every certificate in the file verifies (signing.check_all), 1 when one does
    not or there is none, 2 when the file or the key cannot be read."""
    from coldtrace import signing

    try:
        public = (
            signing.public_key(args.public_key.read_text())
            if args.public_key
            else settings.certificate_key.public_key()
        )
    except (OSError, ValueError) as exc:
        print(f"error: --public-key {args.public_key}: {exc}", file=sys.stderr)
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
        for c, why in zip(certificates, signing.check_all(public, certificates), strict=True)
    ]
    _emit(rows, args.json)
    return 0 if all(r["valid"] for r in rows) else 1


# -- entry point -----------------------------------------------------------------------------


def cmd_analyze(settings: Settings, args: argparse.Namespace) -> int:
    from alerts.analysis import analyze, as_json, parse_window
    from alerts.evaluation import COMPLIANT
    from alerts.logger_csv import LoggerFileError, decode_logger_file, read_logger_csv
    from alerts.logger_times import TimeError, parse_zone
    from coldtrace.profiles import ProfileError, get_profile, load_profiles

    try:
        tz = None if args.tz is None else parse_zone(args.tz)
    except TimeError as exc:
        print(f"error: --tz: {exc}", file=sys.stderr)
        return 2
    try:
        profile = get_profile(load_profiles(settings.alerts_profiles_file), args.profile)
        text, encoding = decode_logger_file(args.file.read_bytes())
        series = read_logger_csv(
            text, tz, date_order=args.date_order, unit=args.unit, skip=args.skip
        )
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (LoggerFileError, OSError) as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    try:
        windows = [parse_window(w, series.zone) for w in args.suppress]
    except ValueError as exc:
        print(f"error: --suppress {exc}", file=sys.stderr)
        return 2
    analysis = analyze(series, profile, windows)
    if args.plot is not None:
        # matplotlib's one-time notice that it built its font cache is no news to the user
        logging.getLogger("matplotlib").setLevel(logging.WARNING)
        from alerts.chart import ChartError, plot

        try:
            plot(analysis, args.plot)
        except ChartError as exc:
            print(f"error: --plot {exc}", file=sys.stderr)
            return 2
    report = as_json(analysis)
    separator = {"\t": "tab", ";": "semicolon", ",": "comma"}[series.delimiter]
    report["read_as"] = {
        "encoding": encoding,
        "separator": separator,
        "date_order": series.date_order,
    }
    code = 0 if analysis.evaluation.verdict == COMPLIANT else 1
    if args.json:
        print(json.dumps(report, indent=2))
        return code
    print(f"{args.file}: {report['readings']} readings, {report['first']} .. {report['last']}")
    print(
        f"read as {encoding}, {separator}-separated, dates {series.date_order}, "
        f"times in {report['zone']}"
    )
    print(f"profile {profile.id} ({profile.name})\n")
    print(table(report["probes"]))  # type: ignore[arg-type]
    if series.skipped:
        print("\nnot temperatures, skipped:")
        print(table(report["skipped"]))  # type: ignore[arg-type]
    if series.footer:
        print(f"\nlines {series.footer[0]}..{series.footer[1]} after the data: footer, ignored")
    print()
    print(table(report["breaches"]) if report["breaches"] else "no breach")  # type: ignore[arg-type]
    if report["gaps"]:
        print("\ndata gaps (no temperature for longer than the record vouches for):")
        print(table(report["gaps"]))  # type: ignore[arg-type]
    if args.plot is not None:
        print(f"\nchart: {args.plot}")
    print(f"\nMKT {report['mkt_c']} C; verdict: {str(report['verdict']).upper()}")
    return code


ANALYZE_EPILOG = """\
exit status:
  0  the file is compliant with the profile
  1  not compliant, or incomplete (data gaps, probe faults: the record cannot vouch for
     the whole trip)
  2  unusable input: the file, a column, a time or an option cannot be read (the message
     says which and what to pass)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coldtrace", description="coldtrace: cold-chain telemetry pipeline"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("services", help="local Mosquitto and InfluxDB for development and tests")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument(
        "names",
        nargs="*",
        metavar="SERVICE",
        help="mosquitto, influxdb, postgresql (up: default mosquitto and influxdb)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_services)

    dashboards_cli.register(sub)
    gateway_cli.register(sub)

    p = sub.add_parser("ingest", help="MQTT -> validate -> InfluxDB, acking only what is stored")
    p.set_defaults(func=cmd_ingest)

    cli_devices.register(sub)

    p = sub.add_parser("simulate", help="publish a simulated fleet's telemetry")
    p.add_argument("--vehicles", type=int, default=10)
    p.add_argument("--readings", type=int, default=60, help="readings per vehicle")
    p.add_argument(
        "--interval", type=float, default=60.0, help="simulated seconds between readings"
    )
    p.add_argument("--speedup", type=float, default=60.0, help="time compression; 0 = flat out")
    p.add_argument("--batch", type=int, default=1, help="readings per MQTT message")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--scenario",
        metavar="NAME",
        help="play a ground-truth scenario (simulators/scenarios/NAME.yaml) against the running "
        "pipeline (ingest with its rules stage, the API) and compare with its expected outcome",
    )
    p.add_argument("--api", help="with --scenario: the API's URL (default from COLDTRACE_API_*)")
    p.add_argument("--api-key", help="with --scenario: an admin key (or COLDTRACE_API_KEY)")
    p.add_argument("--prefix", help="with --scenario: device ids PREFIX-<van> (default: new)")
    p.add_argument(
        "--start", help="with --scenario: its t+0 (ISO 8601; default: so that it ends now)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "demo", help="the demo scenario through every part: what landed, each verdict"
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "analyze",
        help="judge a temperature-logger export (CSV/TSV, any vendor) against a profile",
        epilog=ANALYZE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--profile", required=True, help="profile id, e.g. chilled, pharma")
    p.add_argument(
        "--tz",
        default=None,
        help="zone of times without an offset when the header names none: an IANA name "
        "(Europe/Paris) or an offset (+01:00); required for such files",
    )
    p.add_argument(
        "--date-order",
        choices=["dmy", "mdy", "ymd"],
        default=None,
        help="order of day, month and year in dates like 07/08/2026, when the file cannot "
        "tell (a field above 12, or rows weeks apart otherwise, decides it)",
    )
    p.add_argument(
        "--unit",
        choices=["C", "F", "K"],
        default=None,
        help="unit of temperature columns whose header states none",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="COLUMN",
        help="a column (its header) that is not a temperature; repeatable",
    )
    p.add_argument(
        "--suppress",
        action="append",
        default=[],
        metavar="START/END",
        help="a defrost or loading window (ISO 8601): excursions inside are recorded, not "
        "counted (unless critical); repeatable",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE",
        help="write a chart of each probe against the profile's range, breaches shaded "
        "(.png or .svg)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("db", help="the relational store: migrate it to the newest schema")
    p.add_argument("action", choices=["upgrade"])
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("api", help="serve the HTTP API (OpenAPI at /docs)")
    p.add_argument("--host", help="default COLDTRACE_API_HOST")
    p.add_argument("--port", type=int, help="default COLDTRACE_API_PORT")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("keys", help="API keys: create (shown once), list, revoke")
    keys = p.add_subparsers(dest="action", required=True)
    k = keys.add_parser("create")
    k.add_argument("--role", required=True, choices=["admin", "quality", "dispatcher", "customer"])
    k.add_argument("--customer", help="the customer a customer key is bound to")
    k.add_argument("--label", help="who or what uses the key")
    k.add_argument("--json", action="store_true")
    k = keys.add_parser("list")
    k.add_argument("--json", action="store_true")
    k = keys.add_parser("revoke")
    k.add_argument("id", type=int)
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("deliveries", help="deliveries: import the ordering system's CSV, list")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("import", help="create deliveries from the ordering system's CSV")
    a.add_argument("file", type=Path, metavar="FILE.csv")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_deliveries)
    a = actions.add_parser("list", help="deliveries with their certificate's verdict")
    a.add_argument("--state", help="only these (planned, in_transit, delivered, closed, ...)")
    a.add_argument("--customer", help="only this customer's")
    a.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_deliveries_list)

    p = sub.add_parser("breaches", help="breaches the rules stage stored")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("list", help="newest first")
    a.add_argument("--device", help="only this device's")
    a.add_argument("--open", action="store_true", help="only those still open")
    a.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_breaches_list)

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
    p.set_defaults(func=cmd_certificates)

    p = sub.add_parser(
        "books",
        help="a device's books: sent = stored + rejected + missing, each seq in one",
        description="Each device's readings, read back from InfluxDB: stored, rejected "
        "(dead-lettered), missing (of which dropped: reported by the device), copies refused "
        "(not in sent). Exit 1 when a device's books disagree with what ingest wrote.",
    )
    p.add_argument("devices", nargs="+", metavar="DEVICE")
    p.add_argument(
        "--since", type=_books_instant, help="readings of device time >= this (ISO 8601)"
    )
    p.add_argument("--until", type=_books_instant, help="readings of device time before this")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_books)

    p = sub.add_parser("schema", help="print the wire contract's JSON Schema")
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("COLDTRACE_RUN_DIR", str(settings.run_dir))
    try:
        result: int = args.func(settings, args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
    except ConfigError as exc:  # one only this command checks: signing key, profiles, ports
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`coldtrace ... | head -1`): nothing more to say to it, and
        # nothing left for Python to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        said = _one_line(exc, settings)
        if said is None:
            raise
        print(said, file=sys.stderr)
        return 2
    return result


def _one_line(exc: Exception, settings: Settings) -> str | None:
    """The one line for an error that already says what to do (a local service that cannot
    start, its port taken) or a relational store that cannot be reached; else None."""
    from coldtrace.services import ServiceError

    if isinstance(exc, ServiceError):
        return f"error: {exc}"
    return _database_unreachable(exc, settings)


def _database_unreachable(exc: Exception, settings: Settings) -> str | None:
    """The one line for a relational store that cannot be reached or opened, else None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    if not isinstance(exc, OperationalError):
        return None
    url = make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    return (
        f"error: database {url}: {reason}: start it (local PostgreSQL: coldtrace services up "
        "postgresql) or set COLDTRACE_DATABASE_URL"
    )


if __name__ == "__main__":
    sys.exit(main())

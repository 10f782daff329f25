"""`coldtrace demo`: the demo scenario through every part, told in five steps."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING

from coldtrace.cli.output import table
from coldtrace.settings import Settings

if TYPE_CHECKING:
    from simulators.compare import Report


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """The `demo` scenario told in five steps (coldtrace/demo.py); exit 0 when nothing was
    lost, every delivery closed with its certificate and all was as the scenario expects."""
    from coldtrace import demo
    from coldtrace.bootstrap import checked_profiles
    from coldtrace.devtools.api_process import ApiFailed, ApiProcess
    from coldtrace.devtools.ingest_process import IngestFailed, IngestProcess
    from coldtrace.devtools.services import LocalServices, ServiceError, device_password, free_port
    from coldtrace.influx import InfluxClient
    from ingest import lock
    from ingest.held import HeldReadings
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
        checked_profiles(settings),
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
    holding = HeldReadings(settings.sqlalchemy_url)  # ingest's: its held readings count

    def progress(line: str) -> None:
        print(f"    {line}", flush=True)

    try:
        api.start()
        print("3/5 starting ingest with its rules stage (log: run/ingest.log) ...", flush=True)
        ingest.start()
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
        acked = runner.acknowledged
        books = demo.books(acked, landed(influx, holding, acked))
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
        holding.engine.dispose()
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
    print(
        "\nWhat each van sent and what became of it (sent = stored + held + rejected + missing):\n"
    )
    print(table(van_books))
    total = {
        k: sum(int(str(r[k])) for r in van_books)
        for k in ("sent", "stored", "held", "rejected", "missing", "lost")
    }
    print(
        f"\nsent {total['sent']} readings = stored {total['stored']} + held {total['held']} + "
        f"rejected {total['rejected']} + missing {total['missing']}; lost {total['lost']}"
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
  .venv/bin/coldtrace certificates get {first} -o cert.pdf   # the customer's PDF (--language en|fr)
  # the address printed on the PDF (and in its QR code) opens its public verification page

Where to look next:
  logs        run/ingest.log, run/api.log
  ingest      while `coldtrace ingest` runs: curl 127.0.0.1:{settings.ingest_health_port}/health
  InfluxDB    curl -G {settings.influx_url}/query --data-urlencode db={settings.influx_database} \\
                --data-urlencode "q=SELECT * FROM temperature WHERE device='{device}' LIMIT 5"
  services    .venv/bin/coldtrace services status   (stop them: coldtrace services down)""")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="the demo scenario through every part: what landed, each verdict"
    )
    p.set_defaults(func=cmd_demo)

"""Certificate issue benchmark: how many certificates of 10-hour deliveries can one core
issue per second, PDF included?

The same delivery as benchmarks/certificate_evaluation.py (its own InfluxDB on a free
loopback port, a 10-hour van with three compartment probes read every 30 s and a GPS fix
each time, 30 minutes of warm product; a SQLite store), its certificate issued --runs
times, each time all of:

  judge        the compartment's readings read back from InfluxDB and evaluated, the live
               breaches compared, each breach's GPS fix (coldtrace.certificates.judge)
  body         the facts around it and the body (issue.context, content.certificate_body)
  sign+store   the Ed25519 signature and the new version's row (Store.issue_certificate,
               rolled back after each run so that every run issues version 1)
  readings     the readings read back again for the pictures (cold: not from the source's
               cache; coldtrace.certificates.render.readings_of), shifted a little for
               each run (``apart``)
  pdf          the PDF/A-3 rendered with the signed JSON attached (pdf.render_pdf):
               together, what GET /api/v1/certificates/{id}/pdf does

Timed as wall time and as this process's CPU time, per step and in all (what one core
spends: the InfluxDB server's share runs in its own process), with the garbage collector
set as in the API's process (coldtrace.bootstrap.api_collector). The target is at least 5
per second per core.

    .venv/bin/python benchmarks/certificate_issue.py [--runs 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from certificate_evaluation import END, START, make_delivery, write_delivery
from sqlalchemy.orm import Session

from coldtrace.bootstrap import api_collector
from coldtrace.certificates.content import certificate_body
from coldtrace.certificates.document import DocumentRequest, Readings
from coldtrace.certificates.issue import context
from coldtrace.certificates.judge import judge
from coldtrace.certificates.pdf import render_pdf
from coldtrace.certificates.render import envelope, readings_of, verify_url
from coldtrace.db import make_engine, upgrade
from coldtrace.deliveries.automation import trace_properties
from coldtrace.deliveries.models import Delivery
from coldtrace.deliveries.source import ReadingSource
from coldtrace.deliveries.store import Store
from coldtrace.devtools.machine import machine
from coldtrace.devtools.scratch import scratch_influx

TARGET_PER_S = 5.0


def apart(readings: Readings, run: int) -> Readings:
    """The readings with each temperature shifted by ``run`` x 0.1 C and each fix by ``run``
    x 0.0001 degree: every run's charts and route differ, so that no run reuses what Typst
    memoized while typesetting another (real certificates' pictures differ too)."""
    return Readings(
        {
            key: [(ts, None if c is None else c + run / 10) for ts, c in series]
            for key, series in readings.samples.items()
        },
        [(lat + run / 10_000, lon) for lat, lon in readings.fixes],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="certificates issued")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with scratch_influx(
        certificate_issuer_name="Bench Transports", certificate_timezone="Europe/Paris"
    ) as (settings, influx):
        write_delivery(influx)
        url = f"sqlite:///{settings.run_dir / 'store.db'}"
        upgrade(url)
        delivery_id = make_delivery(url)
        session = Session(make_engine(url))
        store = Store(session, "bench", clock=lambda: END)
        d = session.get_one(Delivery, delivery_id)
        source = ReadingSource(influx)
        api_collector()  # as in the API's process, which issues and renders certificates
        names = ("judge", "body", "sign+store", "readings", "pdf")
        steps: dict[str, list[float]] = {k: [] for k in names}
        steps_cpu: dict[str, list[float]] = {k: [] for k in names}
        wall, cpu, sizes = [], [], []
        verdict = ""
        for run in range(args.runs + 1):  # the first run warms caches: not counted
            t0, c0 = time.perf_counter(), time.process_time()
            evaluation, device_breaches = judge(session, d, source, settings, END)
            t1, c1 = time.perf_counter(), time.process_time()
            probes = [(p.device, p.probe) for p in evaluation.probes]
            verdict, body = certificate_body(
                trace_properties(d, START, END),
                evaluation,
                context(store, d, settings, probes),
                device_breaches,
            )
            t2, c2 = time.perf_counter(), time.process_time()
            issued = store.issue_certificate(d, verdict, body, settings.certificate_key)
            t3, c3 = time.perf_counter(), time.process_time()
            source.cache.clear()  # cold: the readings read back as after a close
            readings = apart(readings_of(session, issued, source), run)
            t4, c4 = time.perf_counter(), time.process_time()
            pdf = render_pdf(
                DocumentRequest(
                    envelope(issued), readings, verify_url(settings.public_url, issued.body)
                )
            )
            t5, c5 = time.perf_counter(), time.process_time()
            session.rollback()
            took = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
            for name, ms in zip(steps, took, strict=True):
                steps[name].append(ms * 1000)
            took_cpu = (c1 - c0, c2 - c1, c3 - c2, c4 - c3, c5 - c4)
            for name, ms in zip(steps_cpu, took_cpu, strict=True):
                steps_cpu[name].append(ms * 1000)
            wall.append(t5 - t0)
            cpu.append(c5 - c0)
            sizes.append(len(pdf))
        for series in (*steps.values(), *steps_cpu.values(), wall, cpu, sizes):
            del series[0]
        per_s_wall = 1 / statistics.median(wall)
        per_s_cpu = 1 / statistics.median(cpu)
        report = {
            "machine": machine(),
            "verdict": verdict,
            "readings": evaluation.readings,
            "runs": args.runs,
            "median_ms": {k: round(statistics.median(v), 1) for k, v in steps.items()},
            "median_cpu_ms_per_step": {
                k: round(statistics.median(v), 1) for k, v in steps_cpu.items()
            },
            "median_wall_ms": round(statistics.median(wall) * 1000, 1),
            "median_cpu_ms": round(statistics.median(cpu) * 1000, 1),
            "certificates_per_s_wall": round(per_s_wall, 2),
            "certificates_per_s_per_core": round(per_s_cpu, 2),
            "pdf_kb": round(statistics.median(sizes) / 1024, 1),
            "target_per_s": TARGET_PER_S,
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
        session.close()
        source.close()
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"{report['machine']}")
            print(
                f"a 10-hour delivery, {report['readings']} readings, verdict {verdict}; "
                f"PDF {report['pdf_kb']} kB"
            )
            print(
                "median per step: "
                + ", ".join(f"{k} {v} ms" for k, v in report["median_ms"].items())
            )
            print(
                "median CPU per step: "
                + ", ".join(f"{k} {v} ms" for k, v in report["median_cpu_ms_per_step"].items())
            )
            print(
                f"per certificate: wall {report['median_wall_ms']} ms, CPU of this process "
                f"{report['median_cpu_ms']} ms"
            )
            ok = per_s_cpu >= TARGET_PER_S
            print(
                f"{report['certificates_per_s_per_core']} certificates/s per core "
                f"({'meets' if ok else 'BELOW'} the target of {TARGET_PER_S:g}); "
                f"{report['certificates_per_s_wall']}/s wall in one process"
            )
            print(f"load average (1 min) at the end: {report['load_average_1m']}")
        return 0


if __name__ == "__main__":
    sys.exit(main())

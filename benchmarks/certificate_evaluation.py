"""Certificate evaluation benchmark: how long does judging a long delivery for its certificate
take, from the InfluxDB queries to the verdict?

Starts its own InfluxDB (LocalServices, a free loopback port, a fresh temporary run
directory), stores a 10-hour delivery as ingest would: one van, three probes of its
compartment read every 30 s (1,201 readings each, 3,603 temperatures), a GPS fix and the door
state with every reading, the product 30 minutes above +4 C (one breach, so its place is
looked up too). The delivery itself lives in a SQLite store. Then, --runs times:

  evaluation   coldtrace.certificates: judge + context + certificate_body: the
               compartment's readings read back from InfluxDB (deliveries/source.py), the
               evaluation (alerts/evaluation.py), the live breaches compared, the breach's
               GPS fix, the certificate body and its verdict
  ceiling      the same InfluxDB queries alone, sent at once as the evaluation sends them
               (the server's share: what no evaluation can beat)

    .venv/bin/python benchmarks/certificate_evaluation.py [--runs 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.orm import Session

from coldtrace.certificates.content import certificate_body
from coldtrace.certificates.issue import context
from coldtrace.certificates.judge import judge
from coldtrace.db import make_engine, upgrade
from coldtrace.deliveries.attach import delivery_segments
from coldtrace.deliveries.automation import trace_properties
from coldtrace.deliveries.lifecycle import Action
from coldtrace.deliveries.models import Delivery
from coldtrace.deliveries.source import ReadingSource
from coldtrace.deliveries.store import DeliveryPlan, Store
from coldtrace.devtools.machine import machine
from coldtrace.devtools.scratch import scratch_influx, write_lines
from coldtrace.influx import InfluxClient
from coldtrace.settings import Settings

HOURS = 10
START = 1_767_600_000_000  # 2026-01-05T08:00:00Z
END = START + HOURS * 3_600_000
DEVICE = "bench-van"
PROBES = ("product", "air", "rear")
INTERVAL_S = 30
TARGET_MS = 300


def delivery_lines() -> Iterator[str]:
    """10 hours of one van as ingest stores them, in InfluxDB line protocol."""
    for s in range(0, HOURS * 3600 + 1, INTERVAL_S):
        ts, i = START + s * 1000, s // INTERVAL_S
        lat = 48.757 + 0.8 * s / (HOURS * 3600)
        lon = 2.351 + 2.5 * s / (HOURS * 3600)
        door = "true" if s % 7200 == 3600 else "false"  # a stop every two hours
        yield f"position,device={DEVICE} lat={lat:.6f},lon={lon:.6f},seq={i}i {ts}"
        yield f"device_health,device={DEVICE} seq={i}i,boot=1i,up={s}i,door={door} {ts}"
        product = 3.0 + 0.5 * math.sin(s / 3600) + (3.0 if 14_400 <= s < 16_200 else 0.0)
        for probe, value in zip(PROBES, (product, product - 0.7, product - 0.3), strict=True):
            yield f"temperature,device={DEVICE},probe={probe} celsius={value:.2f},seq={i}i {ts}"


def write_delivery(influx: InfluxClient) -> int:
    """`delivery_lines` written; returns the number of points written."""
    return write_lines(influx, delivery_lines())


def make_delivery(url: str) -> int:
    with Session(make_engine(url)) as session:
        store = Store(session, "bench", clock=lambda: END)
        store.create_customer("bench", "Bench")
        store.create_vehicle(DEVICE, "Van", {"chiller": "chilled"})
        store.create_device(DEVICE, "logger")
        for probe in PROBES:
            store.assign(DEVICE, probe, DEVICE, "chiller", START - 3_600_000)
        d = store.create_delivery(
            DeliveryPlan(
                "bench", DEVICE, "chiller", "A", 48.757, 2.351, "B", 49.557, 4.851, START, END
            )
        )
        store.transition(d, Action.start, START, "bench")
        store.transition(d, Action.deliver, END, "bench")
        session.commit()
        return d.id


class Recording(InfluxClient):
    """An InfluxDB client that keeps the queries it was asked."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.sent: list[str] = []

    def query(self, influxql: str) -> list[dict[str, Any]]:
        self.sent.append(influxql)
        return super().query(influxql)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with scratch_influx() as (settings, influx):
        points = write_delivery(influx)
        url = f"sqlite:///{settings.run_dir / 'store.db'}"
        upgrade(url)
        delivery_id = make_delivery(url)
        session = Session(make_engine(url))
        store = Store(session, "bench", clock=lambda: END)
        d = session.get_one(Delivery, delivery_id)
        segs = delivery_segments(session, d, START, END)
        # The queries the evaluation sends (deliveries/source.py), for the ceiling.
        recorder = Recording(settings)
        judge(session, d, ReadingSource(recorder), settings, END)
        sent = recorder.sent
        recorder.close()
        source = ReadingSource(influx)
        pool = ThreadPoolExecutor(len(sent))

        evaluation_ms, ceiling_ms = [], []
        verdict = ""
        for _ in range(args.runs):  # interleaved: both see the same machine load
            t0 = time.perf_counter()
            evaluation, device_breaches = judge(session, d, source, settings, store.clock())
            probes = [(p.device, p.probe) for p in evaluation.probes]
            verdict, _body = certificate_body(
                trace_properties(d, START, END),
                evaluation,
                context(store, d, settings, probes),
                device_breaches,
            )
            evaluation_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            list(pool.map(influx.query, sent))
            ceiling_ms.append((time.perf_counter() - t0) * 1000)
        pool.shutdown()
        median = statistics.median(evaluation_ms)
        ceiling = statistics.median(ceiling_ms)
        report = {
            "machine": machine(),
            "points_written": points,
            "segments": len(segs),
            "readings_evaluated": evaluation.readings,
            "queries": len(sent),
            "verdict": verdict,
            "breaches": len(evaluation.breaches),
            "runs": args.runs,
            "evaluation_median_ms": round(median, 1),
            "evaluation_runs_ms": [round(t, 1) for t in evaluation_ms],
            "ceiling_median_ms": round(ceiling, 1),
            "ratio": round(median / ceiling, 2),
            "target_ms": TARGET_MS,
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
        session.close()
        source.close()
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"{report['machine']}; {points} points written")
            print(
                f"{report['readings_evaluated']} readings of {len(segs)} probes, "
                f"{report['queries']} InfluxDB queries; verdict {verdict}, "
                f"{report['breaches']} breach(es)"
            )
            print(f"evaluation, InfluxDB to verdict: median {report['evaluation_median_ms']} ms")
            print(f"InfluxDB queries alone (ceiling): median {report['ceiling_median_ms']} ms")
            print(f"ratio evaluation / ceiling: {report['ratio']}")
            ok = median < TARGET_MS
            print(f"median {'within' if ok else 'OVER'} the {TARGET_MS} ms target")
            print(f"load average (1 min) at the end: {report['load_average_1m']}")
        return 0


if __name__ == "__main__":
    sys.exit(main())

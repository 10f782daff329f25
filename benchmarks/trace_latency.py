"""Trace latency benchmark: how fast does `coldtrace api` serve a long delivery's trace?

Starts its own InfluxDB (LocalServices, a free loopback port, a fresh temporary run
directory), stores a 10-hour delivery as ingest would (one reading a second with a GPS fix and
the door state, both probes every 30 s: 36,000 fixes, 2,400 temperatures), one breach, then
runs `coldtrace api` as a real process on a SQLite store and times HTTP requests to it:

  trace_cold       GET /deliveries/{id}/trace, the first request for each of --requests
                   deliveries (windows a second apart): everything read from InfluxDB
  trace            GET /deliveries/{id}/trace               GeoJSON, every fix
  trace_2000       GET /deliveries/{id}/trace?max_points=2000
  readings         GET /deliveries/{id}/readings            compact series, every point
  readings_1000    GET /deliveries/{id}/readings?max_points=1000

A finished delivery's readings stay in the API's memory while InfluxDB holds as many for its
window (one count query per request checks that): all but trace_cold are such requests.

    .venv/bin/python benchmarks/trace_latency.py [--requests 30] [--json]
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
from contextlib import ExitStack
from datetime import UTC, datetime

import httpx
from sqlalchemy.orm import Session

from coldtrace.api.fleet_setup import register_chilled_van
from coldtrace.db import make_engine, upgrade
from coldtrace.devtools.api_process import ApiProcess
from coldtrace.devtools.breach_rows import breach_row
from coldtrace.devtools.machine import machine
from coldtrace.devtools.scratch import scratch_influx, write_lines
from coldtrace.influx import InfluxClient

HOURS = 10
START = 1_767_600_000_000  # 2026-01-05T08:00:00Z
DEVICE = "bench-van"
TARGET_MS = 300


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def delivery_lines() -> Iterator[str]:
    """10 hours of one van as ingest stores them, in InfluxDB line protocol."""
    for s in range(HOURS * 3600 + 1):
        ts = START + s * 1000
        lat = 48.757 + 0.8 * s / (HOURS * 3600) + 0.001 * math.sin(s / 300)
        lon = 2.351 + 2.5 * s / (HOURS * 3600)
        speed = 0.0 if (s // 1800) % 4 == 3 else 60.0  # a stop every two hours
        door = "true" if speed == 0 and s % 1800 == 60 else "false"
        yield (
            f"position,device={DEVICE} lat={lat:.6f},lon={lon:.6f},speed_kmh={speed},"
            f"hdop=0.9,seq={s}i {ts}"
        )
        yield f"device_health,device={DEVICE} seq={s}i,boot=1i,up={s * 1000}i,door={door} {ts}"
        if s % 30 == 0:
            product = 3.0 + 0.5 * math.sin(s / 3600) + (4.0 if 14_400 <= s < 16_200 else 0.0)
            for probe, value in (("product", product), ("air", product - 0.7)):
                yield (
                    f"temperature,device={DEVICE},probe={probe} celsius={value:.2f},seq={s}i {ts}"
                )


def write_delivery(influx: InfluxClient) -> int:
    """`delivery_lines` written; returns the number of points written."""
    return write_lines(influx, delivery_lines())


def timed(client: httpx.Client, paths: list[str]) -> dict[str, float]:
    """Client-side times, and the API's own from its Server-Timing header."""
    times, server, size = [], [], 0
    for path in paths:
        t0 = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        server.append(float(r.headers["server-timing"].split("dur=")[1]))
        size = len(r.content)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p90_ms": round(times[int(0.9 * (len(times) - 1))], 1),
        "max_ms": round(times[-1], 1),
        "server_median_ms": round(statistics.median(server), 1),
        "bytes": size,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=30, help="requests per endpoint")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with scratch_influx() as (settings, influx), ExitStack() as stack:
        points = write_delivery(influx)
        url = f"sqlite:///{settings.run_dir / 'store.db'}"
        upgrade(url)
        env = {
            **os.environ,
            "COLDTRACE_RUN_DIR": str(settings.run_dir),
            "COLDTRACE_INFLUX_URL": settings.influx_url,
            "COLDTRACE_INFLUX_DATABASE": "bench",
            "COLDTRACE_DATABASE_URL": url,
        }
        api_proc = ApiProcess(env).start()
        stack.callback(api_proc.stop)
        api_proc.call("POST", "/customers", json={"id": "bench", "name": "Bench"})
        register_chilled_van(api_proc.call, DEVICE, DEVICE, iso(START - 3_600_000))
        end = START + HOURS * 3_600_000
        deliveries = []
        for i in range(args.requests):  # windows a second apart: nothing in memory yet
            delivery = api_proc.call(
                "POST",
                "/deliveries",
                json={
                    "customer_id": "bench",
                    "vehicle_id": DEVICE,
                    "compartment": "chiller",
                    "pickup": {"address": "A", "lat": 48.757, "lon": 2.351},
                    "dropoff": {"address": "B", "lat": 49.557, "lon": 4.851},
                    "planned_start": iso(START),
                    "planned_end": iso(end),
                },
            )["id"]
            for action, at in (("start", START), ("deliver", end - i * 1000)):
                api_proc.call(
                    "POST",
                    f"/deliveries/{delivery}/transitions",
                    json={"action": action, "at": iso(at)},
                )
            deliveries.append(delivery)
        with Session(make_engine(url)) as session:
            session.add(
                breach_row(
                    DEVICE,
                    START + 14_400_000,
                    START + 16_200_000,
                    rule="excursion_high",
                    peak=7.5,
                    degree_minutes=100.0,
                    detected_at=0,
                    updated_at=0,
                )
            )
            session.commit()

        results: dict[str, dict[str, float]] = {}
        client = httpx.Client(
            base_url=f"{api_proc.base}/api/v1", timeout=60, headers=api_proc.headers
        )
        client.get("/fleet").raise_for_status()  # warm-up of the process itself
        results["trace_cold"] = timed(client, [f"/deliveries/{d}/trace" for d in deliveries])
        delivery = deliveries[0]
        for name, path in (
            ("trace", f"/deliveries/{delivery}/trace"),
            ("trace_2000", f"/deliveries/{delivery}/trace?max_points=2000"),
            ("readings", f"/deliveries/{delivery}/readings"),
            ("readings_1000", f"/deliveries/{delivery}/readings?max_points=1000"),
        ):
            client.get(path).raise_for_status()  # its readings in memory
            results[name] = timed(client, [path] * args.requests)
        report = {
            "machine": machine(),
            "points_written": points,
            "requests_per_endpoint": args.requests,
            "target_ms": TARGET_MS,
            "load_average_1m": round(os.getloadavg()[0], 2),
            "results": results,
        }
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"{report['machine']}; {points} points; {args.requests} requests each")
            print(
                f"{'endpoint':<15}{'median ms':>10}{'p90 ms':>10}{'max ms':>10}"
                f"{'api ms':>10}{'bytes':>12}"
            )
            for name, r in results.items():
                print(
                    f"{name:<15}{r['median_ms']:>10}{r['p90_ms']:>10}{r['max_ms']:>10}"
                    f"{r['server_median_ms']:>10}{r['bytes']:>12}"
                )
            for name in ("trace_cold", "trace"):
                ok = results[name]["median_ms"] < TARGET_MS
                print(f"{name} median {'within' if ok else 'OVER'} the {TARGET_MS} ms target")
            print(f"load average (1 min) at the end: {report['load_average_1m']}")
        return 0


if __name__ == "__main__":
    sys.exit(main())

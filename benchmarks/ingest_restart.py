"""Ingest restart benchmark: after a restart, how long until every van of a fleet has its ack?

After a restart ingest knows no device: it primes each device's ledger from InfluxDB at the
device's first batch (ingest/history.py), and acks nothing of a batch before its devices are
primed and the batch stored. Per run, on its own Mosquitto and InfluxDB (LocalServices, free
loopback ports, a fresh temporary run directory) and a fresh InfluxDB database:

  history   written straight to InfluxDB as ingest writes it (ingest.lines): `--readings`
            readings per device one a minute up to the batch below (4 points each), dead
            letters spread over the devices (`--dead-letters` in all, each refusing one seq
            the device never stored), and on every `--gap-every`-th device an open seq gap
            of 5 seqs
  restart   `coldtrace ingest` started once and stopped (its persistent MQTT session
            exists), one 5-reading batch per device published at QoS 1 into that session
            by one gateway account carrying every box (the vans' batches waiting while
            ingest restarts), then ingest started again and timed, from its process start,
            until every device's ack (contract v1.1, retained on its ack topic) arrived;
            each ack checked against the books written (`from` the device's first seq,
            `seq` up to its open gap or its batch's last seq, `high` its batch's last seq);
            CPU seconds of ingest (since its start) and InfluxDB over that time, and the
            InfluxDB queries made (its `httpd` statistics)
  empty     the same start with nothing waiting, timed to a healthy /health: what a restart
            costs before any device is primed

With `--rules PROFILE` ingest runs its rules stage too, every probe and door judged by that
profile (COLDTRACE_ALERTS_DEFAULT_PROFILE), and after a restart the stage rebuilds each
device's engines from InfluxDB's readings and the store's breaches at its first batch. On
every `--warm-every`-th device both probes sit at WARM_C for the last WARM readings of the
history and through its batch, so the device has open breaches when ingest restarts: the
store holds, before the restart, the breaches an engine fed the stored history reports (as
the stage would have stored them). Timed on top: until the stage has judged every device's
batch (its /metrics `alerts_readings_evaluated_total`), and the InfluxDB queries made by
then; the breaches stored after are checked against an engine fed the history and the batch
(each open breach kept open, none opened twice, nothing else found).

    .venv/bin/python benchmarks/ingest_restart.py [--devices 300] [--readings 200]
        [--dead-letters 3000] [--gap-every 10] [--rules chilled] [--warm-every 5]
        [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.engine import ProbeEngine
from alerts.readings import DOOR, samples_of
from alerts.rules import HOUR_MS, ProbeRules, door_rules
from alerts.store import BreachStore
from coldtrace.bootstrap import checked_profiles
from coldtrace.breaches import Breach
from coldtrace.contract import Ack, Reading, TelemetryBatch, ack_topic, telemetry_topic
from coldtrace.devtools.ingest_process import IngestProcess, ingest_in
from coldtrace.devtools.machine import machine
from coldtrace.devtools.scratch import scratch_settings
from coldtrace.devtools.services import LocalServices, device_password
from coldtrace.devtools.wait import wait_for
from coldtrace.influx import InfluxClient, Precision
from coldtrace.records import PlacedReading
from coldtrace.settings import Settings
from ingest.decode import Rejection
from ingest.ledger import GapChange, SeqGap
from ingest.lines import gap_line, reading_lines, rejection_line
from simulators.fleet import batches, make_fleet

CLK_TCK = os.sysconf("SC_CLK_TCK")
INTERVAL_S = 60.0  # a reading a minute
BATCH = 5  # readings in the batch each device sends after the restart
GAP = 5  # seqs missing in an open gap
DEAD_STRIDE = 7  # the dead-lettered seqs of a device: 3, 10, 17, ...
ACK_TIMEOUT_S = 600.0
WARM = 40  # readings at the end of a warm device's history at WARM_C (and its batch)
WARM_C = 9.0  # above every chilled profile's limit: breaches open, and stay open
BreachKey = tuple[str, str, str, int, int | None]  # device, probe, rule, start, end (ms)


class BenchmarkFailed(Exception):
    pass


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_s(pid: int | None) -> float:
    """utime + stime of a process, in seconds, from /proc/<pid>/stat."""
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# -- the fleet's history -----------------------------------------------------------------------


class Fleet:
    """Each device's history as line protocol, the batch it sends after the restart, and the
    ack its books call for."""

    def __init__(self, args: argparse.Namespace, prefix: str, now_ms: int) -> None:
        self.reading_lines: list[str] = []  # ms precision
        self.ns_lines: list[str] = []  # gaps and dead letters
        self.payloads: dict[str, bytes] = {}
        self.expected: dict[str, Ack] = {}
        # device -> (its readings stored before the restart, its batch after), as placed
        self.placed: dict[str, tuple[list[PlacedReading], list[PlacedReading]]] = {}
        start_ms = now_ms - int((args.readings + BATCH) * INTERVAL_S * 1000)
        letters = 0
        for i, van in enumerate(make_fleet(args.devices, 1, prefix=prefix)):
            (whole,) = batches(van, start_ms, args.readings + BATCH, INTERVAL_S, 10**6)
            readings = whole.readings
            if args.rules and i % args.warm_every == 0:
                readings = readings[: args.readings - WARM] + [
                    warm(r) for r in readings[args.readings - WARM :]
                ]
            history = readings[: args.readings]
            sent = TelemetryBatch(
                device=van.device, boot=van.boot, readings=readings[args.readings :]
            )
            stored: list[PlacedReading] = []
            batch_last = sent.readings[-1].seq
            # Dead letters spread evenly: device i gets its share of the total.
            share = args.dead_letters * (i + 1) // args.devices - letters
            letters += share
            dead = {3 + DEAD_STRIDE * j for j in range(share)}
            gap = (
                range(args.readings - 2 * GAP, args.readings - GAP)
                if i % args.gap_every == 0
                else range(0)
            )
            for r in history:
                if r.seq in dead or r.seq in gap:
                    continue
                assert r.ts is not None
                stored.append(PlacedReading(van.device, van.boot, r, r.ts, False))
                reading_lines(stored[-1], self.reading_lines)
            self.placed[van.device] = (
                stored,
                [PlacedReading(van.device, van.boot, r, r.ts or 0, False) for r in sent.readings],
            )
            topic = telemetry_topic(van.device)
            for n, seq in enumerate(sorted(dead)):
                rej = Rejection("invalid_reading", "bench", 1, b"{}", van.device, seq)
                self.ns_lines.append(rejection_line(rej, topic, now_ms * 1_000_000 - 10**9 * n - i))
            if gap:
                opened = history[gap.stop - 1].ts  # seq gap.stop: revealed it
                assert opened is not None
                found = SeqGap(
                    gap.start, gap.stop - 1, opened, "ingest", [[gap.start, gap.stop - 1]]
                )
                self.ns_lines.append(gap_line(GapChange(van.device, found, GAP)))
            self.payloads[van.device] = sent.model_dump_json(by_alias=True).encode()
            through = gap.start - 1 if gap else batch_last
            self.expected[van.device] = Ack.model_validate(
                {"from": 1, "seq": through, "high": batch_last}
            )

    def store_breaches(self, settings: Settings, url: str, profile_id: str) -> set[BreachKey]:
        """Store, as the rules stage would have before the restart, the breaches an engine
        fed each device's stored history reports (per probe and door, by the profile);
        returns the breaches an engine fed its batch too reports: what the store must hold
        once the restarted stage has judged the batches."""
        profile = checked_profiles(settings)[profile_id]
        horizon_ms = round(settings.alerts_late_horizon_h * HOUR_MS)
        store = BreachStore(url)
        now_ms = int(time.time() * 1000)
        late_after_ms = round(settings.alerts_late_after_s * 1000)
        expected: set[BreachKey] = set()
        for device, (history, batch) in self.placed.items():
            before, after = samples_of(history, []), samples_of(batch, [])
            for key in before.keys() | after.keys():
                rules = door_rules(profile) if key == DOOR else ProbeRules(profile)
                if rules is None:
                    continue
                engine = ProbeEngine(rules, horizon_ms)
                events = engine.add(before.get(key, []))
                if events:
                    store.apply(device, key, profile.id, events, now_ms, late_after_ms, [])
                engine.add(after.get(key, []))
                expected |= {(device, key, b.rule, b.start, b.end) for b in engine.breaches()}
        store.engine.dispose()
        return expected

    def write(self, influx: InfluxClient) -> int:
        """Write the history in 5,000-point requests; returns the number of points."""
        parts: tuple[tuple[list[str], Precision], ...] = (
            (self.reading_lines, "ms"),
            (self.ns_lines, "ns"),
        )
        for lines, precision in parts:
            for i in range(0, len(lines), 5000):
                influx.write("\n".join(lines[i : i + 5000]).encode(), precision)
        return len(self.reading_lines) + len(self.ns_lines)


def warm(r: Reading) -> Reading:
    return r.model_copy(update={"probes": dict.fromkeys(r.probes, WARM_C)})


def stored_breaches(url: str) -> set[BreachKey]:
    """The breaches the store holds (withdrawn ones aside)."""
    store = BreachStore(url)
    with Session(store.engine) as s:
        rows = s.scalars(select(Breach).where(Breach.state != "withdrawn")).all()
        found = {(b.device, b.probe, b.rule, b.start_ts, b.end_ts) for b in rows}
    store.engine.dispose()
    return found


# -- the vans' side: one gateway account carrying every box ------------------------------------


class Vans:
    """Publishes each device's batch and records when each device's first ack arrives."""

    def __init__(self, settings: Settings, gateway: str, devices: list[str]) -> None:
        self.devices = devices
        self.acks: dict[str, tuple[float, Ack]] = {}
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=gateway, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(gateway, device_password(settings, gateway))
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()
        self.client.subscribe([(ack_topic(d), 1) for d in devices])
        if not self.subscribed.wait(30):
            raise BenchmarkFailed("the gateway's ack subscriptions were not granted")

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        if all(not c.is_failure for c in codes):
            self.subscribed.set()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        at = time.time()
        device = msg.topic.split("/")[-2]
        with self.lock:
            self.acks.setdefault(device, (at, Ack.model_validate_json(msg.payload)))

    def publish(self, payloads: dict[str, bytes]) -> None:
        infos = [self.client.publish(telemetry_topic(d), p, qos=1) for d, p in payloads.items()]
        for info in infos:
            info.wait_for_publish(60)
            if not info.is_published():
                raise BenchmarkFailed("a batch was not PUBACKed by the broker")

    def all_acked(self) -> bool:
        with self.lock:
            return len(self.acks) == len(self.devices)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- one run -----------------------------------------------------------------------------------


def influx_queries(influx: InfluxClient) -> int:
    """Queries InfluxDB has answered since its start (its `httpd` statistics)."""
    rows = influx.rows("SHOW STATS FOR 'httpd'")
    return int(rows[0]["queryReq"])


def run_once(
    settings: Settings, services: LocalServices, args: argparse.Namespace, run: int, token: str
) -> dict[str, Any]:
    database = f"restart_{token}_{run}"
    own = settings.model_copy(update={"influx_database": database})
    prefix = f"{token}r{run}"
    fleet = Fleet(args, prefix, int(time.time() * 1000))
    devices = list(fleet.payloads)
    gateway = f"{prefix}-gw"
    services.register_devices([gateway])
    services.broker_accounts.set_gateway(gateway, devices)
    services.reload("mosquitto")
    influx = InfluxClient(own)
    influx.create_database()
    points = fleet.write(influx)
    say(f"run {run}: {points} points of history for {len(devices)} devices")
    workdir = settings.run_dir / f"run{run}"
    workdir.mkdir()
    rules = {} if args.rules is None else {"COLDTRACE_ALERTS_DEFAULT_PROFILE": args.rules}
    ingest = ingest_in(own, workdir, COLDTRACE_INFLUX_DATABASE=database, **rules)
    store_url = ingest.env["COLDTRACE_DATABASE_URL"]
    vans = Vans(settings, gateway, devices)
    try:
        t0 = time.time()
        ingest.start(timeout_s=120)
        empty_s = time.time() - t0
        empty_cpu = cpu_s(ingest.pid)
        ingest.stop()  # the store is migrated now (ingest's start)
        breaches = set()
        if args.rules is not None:
            breaches = fleet.store_breaches(settings, store_url, args.rules)
            say(f"run {run}: {len(breaches)} breaches, {len(stored_breaches(store_url))} stored")
        vans.publish(fleet.payloads)
        judged = None if args.rules is None else len(devices) * BATCH
        result = timed_restart(services, ingest, vans, influx, judged)
    finally:
        ingest.stop()
        vans.close()
    if args.rules is not None:
        found = stored_breaches(store_url)
        if found != breaches:
            raise BenchmarkFailed(
                f"breaches stored after the restart not as an engine fed everything finds:"
                f" {len(found - breaches)} more, e.g. {sorted(found - breaches)[:1]};"
                f" {len(breaches - found)} missing, e.g. {sorted(breaches - found)[:1]}"
            )
    wrong = {d: a for d, (_, a) in vans.acks.items() if a != fleet.expected[d]}
    if wrong:
        device, ack = next(iter(wrong.items()))
        raise BenchmarkFailed(
            f"{len(wrong)} acks not as the books say, e.g. {device}: {ack} "
            f"instead of {fleet.expected[device]}"
        )
    influx.query(f'DROP DATABASE "{database}"')
    influx.close()
    return {"empty_start_s": round(empty_s, 3), "empty_start_ingest_cpu_s": empty_cpu, **result}


def timed_restart(
    services: LocalServices,
    ingest: IngestProcess,
    vans: Vans,
    influx: InfluxClient,
    judged: int | None,
) -> dict[str, Any]:
    """Times the restart until every ack, then (``judged``: the readings the rules stage is
    to judge, None while it is off) until the stage judged that many; CPU and queries up to
    the later of the two."""
    influxd = services.pid("influxdb")
    queries0 = influx_queries(influx)
    influx_cpu0 = cpu_s(influxd)
    t0 = time.time()
    ingest.start(wait_healthy=False)

    def acked() -> bool:
        ingest.check_running()
        return vans.all_acked()

    wait_for(acked, ACK_TIMEOUT_S, "every device's ack")
    rules: dict[str, Any] = {}
    if judged is not None:
        metrics = wait_for(lambda: rules_judged(ingest, judged), ACK_TIMEOUT_S, "the rules")
        rules = {
            "rules_judged_s": round(time.time() - t0, 3),
            "rules_engines": int(metrics["coldtrace_alerts_engines"]),
        }
    ingest_cpu = cpu_s(ingest.pid)
    influx_cpu = cpu_s(influxd) - influx_cpu0
    # Less this query itself: SHOW STATS counts as one.
    queries = influx_queries(influx) - queries0 - 1
    times = sorted(at - t0 for at, _ in vans.acks.values())
    return {
        "first_ack_s": round(times[0], 3),
        "median_ack_s": round(statistics.median(times), 3),
        "last_ack_s": round(times[-1], 3),
        "ingest_cpu_s": ingest_cpu,
        "influxd_cpu_s": round(influx_cpu, 2),
        "influx_queries": queries,
        **rules,
    }


def rules_judged(ingest: IngestProcess, readings: int) -> dict[str, float] | None:
    """Ingest's /metrics once its rules stage has judged ``readings``, judging none wrong
    (BenchmarkFailed on an error, or a breach reported opened: the restart found it again)."""
    metrics = ingest.metrics()
    if metrics["coldtrace_alerts_errors_total"] or metrics["coldtrace_alerts_quarantined_probes"]:
        raise BenchmarkFailed(f"the rules stage failed: {ingest.logtext()}")
    opened = [k for k, v in metrics.items() if 'transition="opened"' in k and v]
    if opened:
        raise BenchmarkFailed(f"breaches opened again after the restart: {opened}")
    evaluated = metrics["coldtrace_alerts_readings_evaluated_total"]
    return metrics if evaluated >= readings else None


# -- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--devices", type=int, default=300)
    p.add_argument("--readings", type=int, default=200, help="stored per device before")
    p.add_argument("--dead-letters", type=int, default=3000, help="in all, over the devices")
    p.add_argument("--gap-every", type=int, default=10, help="an open gap on every Nth device")
    p.add_argument("--rules", help="judge by this profile's rules in ingest too (default: off)")
    p.add_argument(
        "--warm-every", type=int, default=5, help="with --rules: open breaches on every Nth device"
    )
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args()
    if min(args.devices, args.gap_every, args.warm_every, args.runs) < 1 or args.dead_letters < 0:
        p.error("counts must be at least 1 (--dead-letters at least 0)")
    per_device = -(-args.dead_letters // args.devices)
    if 3 + DEAD_STRIDE * per_device >= args.readings - 2 * GAP:
        p.error(
            f"--readings must exceed {3 + DEAD_STRIDE * per_device + 2 * GAP} for that many"
            " dead letters per device"
        )
    if args.rules and args.readings <= WARM:
        p.error(f"--readings must exceed {WARM} with --rules (a warm device's last {WARM})")
    return args


def benchmark(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    token = "b" + uuid.uuid4().hex[:6]
    settings = scratch_settings(run_dir)
    services = LocalServices(settings)
    try:
        services.up(["mosquitto", "influxdb"])
        say(f"services up in {run_dir} (mqtt :{settings.mqtt_port}, {settings.influx_url})")
        runs = []
        for run in range(1, args.runs + 1):
            runs.append(run_once(settings, services, args, run, token))
            say(f"run {run}: {runs[-1]}")
    finally:
        services.down()
    return {
        "machine": machine(),
        "load_average": os.getloadavg(),
        "config": {
            "devices": args.devices,
            "readings_per_device": args.readings,
            "dead_letters": args.dead_letters,
            "open_gaps": len(range(0, args.devices, args.gap_every)),
            "batch_readings": BATCH,
            "ingest_batch_messages": settings.ingest_batch_messages,
            "rules_profile": args.rules,
            "warm_devices": len(range(0, args.devices, args.warm_every)) if args.rules else 0,
        },
        "runs": runs,
        "median": {k: statistics.median(r[k] for r in runs) for k in runs[0]},
    }


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(128 + s))
    run_dir = Path(tempfile.mkdtemp(prefix="coldtrace-restart-bench-"))
    try:
        report = benchmark(args, run_dir)
    except BenchmarkFailed as exc:
        say(f"FAILED: {exc} (run directory kept for its logs: {run_dir})")
        return 1
    shutil.rmtree(run_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    c = report["config"]
    print(f"machine: {report['machine']}; load average at the end {report['load_average']}")
    print(
        f"fleet:   {c['devices']} devices, {c['readings_per_device']} readings each stored,"
        f" {c['dead_letters']} dead letters, {c['open_gaps']} open gaps; one {BATCH}-reading"
        f" batch per device waiting; ingest batches of up to {c['ingest_batch_messages']};"
        f" rules {c['rules_profile'] or 'off'} ({c['warm_devices']} devices with open breaches)"
    )
    print(
        f"{'metric':28}"
        + "".join(f"{'run ' + str(i + 1):>10}" for i in range(len(report["runs"])))
        + f"{'median':>10}"
    )
    for key, med in report["median"].items():
        values = "".join(f"{r[key]:>10.2f}" for r in report["runs"])
        print(f"{key:28}{values}{med:>10.2f}")
    print("times in s from ingest's process start; CPU in s (ingest: since its start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

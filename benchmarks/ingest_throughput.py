"""Ingest throughput benchmark: how close does `coldtrace ingest` get to its two ceilings?

Starts its own Mosquitto and InfluxDB (LocalServices, free loopback ports, a fresh temporary
run directory) and measures, per run, on the same generated readings:

  influx_ceiling    the exact line protocol ingest writes, POSTed in 5,000-point bodies by
                    one HTTP client: what InfluxDB can take at most
  mqtt_ceiling      the same payloads published at QoS 1 by `mosquitto_pub -l -M 1000` (one
                    process per device, in-flight window 1000) and counted by one
                    `mosquitto_sub -c`: what the broker can move at most
  e2e_live          ingest running, the same mosquitto_pub devices fed flat out through
                    pipes; InfluxDB polled every 100 ms for the highest stored seq per device
                    (scanning only from the oldest message not yet seen): throughput,
                    latency, CPU per process
  e2e_drain         ingest down while the devices publish; then ingest started and timed
                    until the broker's backlog is stored

Every run and phase uses device ids of its own, so nothing collides in InfluxDB.

    .venv/bin/python benchmarks/ingest_throughput.py [--devices 10]
        [--messages-per-device 2000] [--readings-per-message 10] [--runs 3] [--rules chilled]
        [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from coldtrace.contract import TELEMETRY_SUBSCRIPTION, TelemetryBatch, telemetry_topic
from coldtrace.devtools.ingest_process import IngestFailed, IngestProcess, ingest_in
from coldtrace.devtools.machine import cpu_model
from coldtrace.devtools.scratch import scratch_settings
from coldtrace.devtools.services import INGEST_MQTT_USER, LocalServices, device_password
from coldtrace.influx import InfluxClient
from coldtrace.records import PlacedReading
from coldtrace.settings import Settings
from ingest.lines import reading_lines
from simulators.fleet import batches, make_fleet

REPO = Path(__file__).resolve().parent.parent
DATABASE = "bench"
POINTS_PER_BODY = 5000
POLL_INTERVAL_S = 0.1
READING_INTERVAL_S = 1.0
STALL_TIMEOUT_S = 120.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchmarkFailed(Exception):
    pass


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- generated data ----------------------------------------------------------------------------


@dataclass
class DeviceStream:
    """One device's pre-serialized messages and the last seq each one carries."""

    device: str
    password: str
    payloads: list[bytes] = field(default_factory=list)
    last_seqs: list[int] = field(default_factory=list)
    first_ts: list[int] = field(default_factory=list)  # device time of each message's 1st reading


@dataclass
class Phase:
    prefix: str
    streams: list[DeviceStream]
    readings: int

    @property
    def messages(self) -> int:
        return sum(len(s.payloads) for s in self.streams)


@dataclass
class RunData:
    live: Phase
    drain: Phase
    influx_bodies: list[bytes]
    influx_points: int


class LineChunker:
    """Collects line protocol and cuts it into pre-encoded bodies of exactly N points."""

    def __init__(self, points_per_body: int) -> None:
        self.size = points_per_body
        self.pending: list[str] = []
        self.bodies: list[bytes] = []
        self.points = 0

    def add(self, lines: list[str]) -> None:
        self.pending.extend(lines)
        self.points += len(lines)
        while len(self.pending) >= self.size:
            self.bodies.append("\n".join(self.pending[: self.size]).encode())
            del self.pending[: self.size]

    def finish(self) -> list[bytes]:
        if self.pending:
            self.bodies.append("\n".join(self.pending).encode())
            self.pending = []
        return self.bodies


def serialize(batch: TelemetryBatch) -> bytes:
    return batch.model_dump_json(by_alias=True, exclude_defaults=True).encode()


def build_phase(
    settings: Settings,
    args: argparse.Namespace,
    prefix: str,
    seed: int,
    chunker: LineChunker | None = None,
    ceiling_prefix: str = "",
) -> Phase:
    """Generate the phase's payloads; with a chunker, also the line protocol ingest would write
    for the same readings (under the ceiling prefix's device ids, so they never collide)."""
    count = args.messages_per_device * args.readings_per_message
    start_ms = int(time.time() * 1000) - int(count * READING_INTERVAL_S * 1000)
    streams = []
    for van in make_fleet(args.devices, seed, prefix=prefix):
        stream = DeviceStream(van.device, device_password(settings, van.device))
        line_device = ceiling_prefix + van.device.removeprefix(prefix)
        for batch in batches(van, start_ms, count, READING_INTERVAL_S, args.readings_per_message):
            stream.payloads.append(serialize(batch))
            stream.last_seqs.append(batch.readings[-1].seq)
            stream.first_ts.append(batch.readings[0].ts or start_ms)
            if chunker is not None:
                chunker.add(ingest_lines(batch, line_device))
        streams.append(stream)
    return Phase(prefix, streams, count * args.devices)


def ingest_lines(batch: TelemetryBatch, device: str) -> list[str]:
    out: list[str] = []
    for r in batch.readings:
        assert r.ts is not None
        reading_lines(PlacedReading(device, batch.boot, r, r.ts, False), out)
    return out


def prefixes(token: str, run: int) -> dict[str, str]:
    base = f"{token}r{run}"
    return {"live": f"{base}l", "drain": f"{base}d", "influx": f"{base}i"}


def build_run(settings: Settings, args: argparse.Namespace, token: str, run: int) -> RunData:
    names = prefixes(token, run)
    chunker = LineChunker(POINTS_PER_BODY)
    live = build_phase(settings, args, names["live"], 2 * run, chunker, names["influx"])
    drain = build_phase(settings, args, names["drain"], 2 * run + 1)
    return RunData(live, drain, chunker.finish(), chunker.points)


# -- CPU accounting ----------------------------------------------------------------------------


def proc_cpu_s(pid: int | None) -> float:
    """utime + stime of a process, in seconds, from /proc/<pid>/stat."""
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def publisher_cpu_s() -> float:
    """This process and its finished children: the mosquitto_pub devices (and any ingest
    process already stopped, which the phases never straddle)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_snapshot(pids: dict[str, int | None]) -> dict[str, float]:
    snap = {name: proc_cpu_s(pid) for name, pid in pids.items()}
    snap["publisher (mosquitto_pub + this process)"] = publisher_cpu_s()
    return snap


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before[name], 2) for name in before}


# -- phase a: InfluxDB ceiling -----------------------------------------------------------------


def measure_influx_ceiling(settings: Settings, data: RunData, readings: int) -> dict[str, float]:
    with httpx.Client(base_url=settings.influx_url, timeout=60) as http:
        params = {"db": DATABASE, "precision": "ms"}
        t0 = time.perf_counter()
        for body in data.influx_bodies:
            resp = http.post("/write", params=params, content=body)
            if resp.status_code != 204:
                raise BenchmarkFailed(f"influx write: HTTP {resp.status_code} {resp.text[:300]}")
        elapsed = time.perf_counter() - t0
    points_per_reading = data.influx_points / readings
    return {
        "seconds": round(elapsed, 3),
        "points": data.influx_points,
        "points_per_reading": points_per_reading,
        "points_per_s": data.influx_points / elapsed,
        "readings_per_s": data.influx_points / elapsed / points_per_reading,
    }


# -- phase b: Mosquitto ceiling ----------------------------------------------------------------


def broker_args(settings: Settings, user: str, password: str) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(settings.mqtt_port), "-u", user, "-P", password]


def ingest_password(settings: Settings) -> str:
    assert settings.mqtt_password is not None
    return settings.mqtt_password.get_secret_value()


def subscriber_args(settings: Settings, client_id: str) -> list[str]:
    auth = broker_args(settings, INGEST_MQTT_USER, ingest_password(settings))
    return ["mosquitto_sub", *auth, "-q", "1", "-c", "-i", client_id, "-t", TELEMETRY_SUBSCRIPTION]


def write_payload_files(phase: Phase, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for s in phase.streams:
        path = directory / f"{s.device}.jsonl"
        path.write_bytes(b"".join(p + b"\n" for p in s.payloads))
        files[s.device] = path
    return files


def start_mosquitto_pub(
    settings: Settings,
    stream: DeviceStream,
    stdin: Path | int,
    procs: list[subprocess.Popen[Any]],
) -> subprocess.Popen[Any]:
    """One device's publisher, reading payload lines from a file or (subprocess.PIPE) a pipe."""
    argv = [
        "mosquitto_pub",
        *broker_args(settings, stream.device, stream.password),
        "-t",
        telemetry_topic(stream.device),
        "-l",
        "-q",
        "1",
        "-M",
        "1000",  # in-flight window (default 20): a device sending a backlog
        "-i",
        f"bench-pub-{stream.device}",
    ]
    if isinstance(stdin, Path):
        with stdin.open("rb") as source:
            proc = subprocess.Popen(argv, stdin=source, stderr=subprocess.PIPE)
    else:
        proc = subprocess.Popen(argv, stdin=stdin, stderr=subprocess.PIPE, bufsize=0)
    procs.append(proc)
    return proc


def measure_mqtt_ceiling(
    settings: Settings, phase: Phase, workdir: Path, procs: list[subprocess.Popen[Any]]
) -> dict[str, float]:
    files = write_payload_files(phase, workdir)
    sub_id = f"bench-sub-{uuid.uuid4().hex[:8]}"
    # Create the persistent session and its subscription first, so nothing published before
    # the counting subscriber has connected is lost (the broker queues it in the session).
    subprocess.run([*subscriber_args(settings, sub_id), "-E"], check=True, timeout=30)
    t0 = time.perf_counter()
    pubs = [start_mosquitto_pub(settings, s, files[s.device], procs) for s in phase.streams]
    sub = subprocess.Popen(
        [*subscriber_args(settings, sub_id), "-C", str(phase.messages)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    procs.append(sub)
    stop_subscriber_if_a_publisher_fails(pubs, sub)
    try:
        sub_exit = wait_or_kill(sub, "mosquitto_sub")
        elapsed = time.perf_counter() - t0
        for pub in pubs:
            check_exit(pub, wait_or_kill(pub, "mosquitto_pub"), "mosquitto_pub")
        check_exit(sub, sub_exit, "mosquitto_sub")
    finally:
        discard_session(settings, sub_id)
    return {
        "seconds": round(elapsed, 3),
        "messages_per_s": phase.messages / elapsed,
        "readings_per_s": phase.readings / elapsed,
    }


def stop_subscriber_if_a_publisher_fails(
    pubs: list[subprocess.Popen[Any]], sub: subprocess.Popen[Any]
) -> None:
    """Without this, a publisher that failed (say, refused) leaves the counting subscriber
    waiting for messages that will never come."""

    def watch() -> None:
        for pub in pubs:
            if pub.wait() != 0 and sub.poll() is None:
                sub.kill()

    threading.Thread(target=watch, name="watch-mosquitto-pub", daemon=True).start()


def wait_or_kill(proc: subprocess.Popen[Any], what: str, timeout_s: float = 600) -> int:
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise BenchmarkFailed(f"{what} did not finish within {timeout_s:.0f}s") from None


def check_exit(proc: subprocess.Popen[Any], code: int, what: str) -> None:
    if code != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise BenchmarkFailed(f"{what} exited with {code}: {err[:500]}")


def discard_session(settings: Settings, client_id: str) -> None:
    """Connect with a clean start and no expiry, so the broker drops the client's persistent
    session and stops queueing the next phases' messages for it."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(INGEST_MQTT_USER, ingest_password(settings))
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(settings.mqtt_host, settings.mqtt_port, clean_start=True)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise BenchmarkFailed(f"could not connect as {client_id} to discard its session")
    finally:
        client.disconnect()
        client.loop_stop()


# -- ingest as a process -----------------------------------------------------------------------


def bench_ingest(settings: Settings, workdir: Path, profile: str | None) -> IngestProcess:
    """`coldtrace ingest` with its own health port and sqlite db; with a profile, every
    device's readings are judged by the rules stage too. Its client id is the ingest
    account's username (the broker makes it so: use_username_as_clientid), so each run
    discards that session afterwards."""
    rules = {} if profile is None else {"COLDTRACE_ALERTS_DEFAULT_PROFILE": profile}
    return ingest_in(settings, workdir, **rules)


# -- publishing --------------------------------------------------------------------------------


class Publisher:
    """The devices: one `mosquitto_pub -l` per device (its own credentials, QoS 1, the same
    in-flight window as in mqtt_ceiling), fed its payloads through a pipe by one thread each,
    all released together. A message's hand-off time is when its line went into the pipe; a
    device has all its PUBACKs when its mosquitto_pub exits. A C publisher, as in the
    ceiling, so the load generator takes little of the CPU that broker, ingest and InfluxDB
    share (paho devices in Python took a third of a core at these rates)."""

    def __init__(
        self, settings: Settings, phase: Phase, procs: list[subprocess.Popen[Any]]
    ) -> None:
        self.phase = phase
        self.pubs = [
            start_mosquitto_pub(settings, s, subprocess.PIPE, procs) for s in phase.streams
        ]
        self.sent_at: dict[str, list[float]] = {s.device: [] for s in phase.streams}
        self.acked_at: list[float] = []  # when each device had all its PUBACKs
        self.errors: list[BaseException] = []
        self.go = threading.Barrier(len(phase.streams) + 1)
        self.threads = [
            threading.Thread(target=self._run, args=(pub, s), daemon=True)
            for pub, s in zip(self.pubs, phase.streams, strict=True)
        ]
        for t in self.threads:
            t.start()

    def _run(self, pub: subprocess.Popen[Any], stream: DeviceStream) -> None:
        try:
            assert pub.stdin is not None
            sent_at = self.sent_at[stream.device]
            self.go.wait()
            for payload in stream.payloads:
                sent_at.append(time.time())
                pub.stdin.write(payload + b"\n")
            pub.stdin.close()
            check_exit(pub, wait_or_kill(pub, "mosquitto_pub"), "mosquitto_pub")
            self.acked_at.append(time.time())
        except BaseException as exc:  # surfaced by join()
            self.errors.append(exc)

    def release(self) -> None:
        self.go.wait()

    def join(self) -> None:
        for t in self.threads:
            t.join()
        if self.errors:
            raise BenchmarkFailed(f"publishing failed: {self.errors[0]!r}")

    def first_sent(self) -> float:
        return min(times[0] for times in self.sent_at.values() if times)

    def timings(self) -> dict[str, float]:
        """Seconds from the first hand-off to the last hand-off and to the last PUBACK."""
        first = self.first_sent()
        return {
            "handoff_s": round(max(t[-1] for t in self.sent_at.values()) - first, 3),
            "all_acked_s": round(max(self.acked_at) - first, 3),
        }


# -- watching InfluxDB -------------------------------------------------------------------------


def max_seqs(influx: InfluxClient, prefix: str, since_ms: int) -> dict[str, int]:
    rows = influx.rows(
        f"SELECT max(seq) FROM device_health WHERE device =~ /^{prefix}/ "
        f"AND time >= {since_ms}ms GROUP BY device"
    )
    return {r["device"]: int(r["max"]) for r in rows}


def stored_count(influx: InfluxClient, prefix: str) -> int:
    rows = influx.rows(f"SELECT count(seq) FROM device_health WHERE device =~ /^{prefix}/")
    return int(rows[0]["count"]) if rows else 0


Poll = tuple[float, dict[str, int], float]  # (time visible, max seq per device, query s)


class SeqWatcher:
    """Highest stored seq per device, polled cheaply.

    Unbounded, `max(seq) ... GROUP BY device` scans every point the phase stored so far: at
    200k readings that cost InfluxDB ~40 ms of CPU per poll, a large share of its CPU in the
    phase it was meant to observe. Each poll therefore only scans from the device time of the
    oldest message not yet seen: a device's seqs and times rise together, so the answer for
    every message still awaited is the same.
    """

    def __init__(self, influx: InfluxClient, phase: Phase) -> None:
        self.influx = influx
        self.phase = phase
        self.high = {s.device: 0 for s in phase.streams}
        self.seen = {s.device: 0 for s in phase.streams}  # messages of each device seen

    def poll(self) -> dict[str, int]:
        for device, seq in max_seqs(self.influx, self.phase.prefix, self.since_ms()).items():
            self.high[device] = max(self.high[device], seq)
        for s in self.phase.streams:
            n = self.seen[s.device]
            while n < len(s.last_seqs) and s.last_seqs[n] <= self.high[s.device]:
                n += 1
            self.seen[s.device] = n
        return dict(self.high)

    def since_ms(self) -> int:
        waiting = [s.first_ts[self.seen[s.device]] for s in self.phase.streams if not self.done(s)]
        return min(waiting, default=0)

    def done(self, stream: DeviceStream | None = None) -> bool:
        streams = [stream] if stream else self.phase.streams
        return all(self.seen[s.device] == len(s.last_seqs) for s in streams)


def poll_until_stored(
    influx: InfluxClient, phase: Phase, on_poll: Callable[[], None]
) -> list[Poll]:
    """Poll every 100 ms until each device's last seq is visible; the time of a poll is when
    its answer arrived."""
    watcher = SeqWatcher(influx, phase)
    polls: list[Poll] = []
    progress, last_change = -1, time.monotonic()
    while True:
        tick = time.monotonic()
        seqs = watcher.poll()
        polls.append((time.time(), seqs, time.monotonic() - tick))
        on_poll()
        if watcher.done():
            return polls
        if sum(seqs.values()) != progress:
            progress, last_change = sum(seqs.values()), time.monotonic()
        elif time.monotonic() - last_change > STALL_TIMEOUT_S:
            raise BenchmarkFailed(f"{phase.prefix}: no progress for {STALL_TIMEOUT_S:.0f}s")
        time.sleep(max(0.0, POLL_INTERVAL_S - (time.monotonic() - tick)))


def visible_times(stream: DeviceStream, polls: list[Poll]) -> list[float]:
    """For each message, the time of the first poll at which its last seq was stored."""
    out: list[float] = []
    for t, seqs, _ in polls:
        high = seqs.get(stream.device, 0)
        while len(out) < len(stream.last_seqs) and stream.last_seqs[len(out)] <= high:
            out.append(t)
    if len(out) != len(stream.last_seqs):
        raise BenchmarkFailed(f"{stream.device}: not every message became visible")
    return out


def latencies_ms(publisher: Publisher, polls: list[Poll]) -> list[float]:
    lat: list[float] = []
    for s in publisher.phase.streams:
        seen = visible_times(s, polls)
        lat.extend((v - p) * 1000 for v, p in zip(seen, publisher.sent_at[s.device], strict=True))
    return sorted(lat)


def poll_stats(polls: list[Poll]) -> dict[str, float]:
    return {
        "polls": len(polls),
        "poll_query_ms_mean": round(statistics.mean(p[2] for p in polls) * 1000, 1),
    }


def machine_busy(cpu_s: dict[str, float], seconds: float) -> float:
    """Share of all CPUs the measured processes used over the phase (1.0 = every core)."""
    return sum(cpu_s.values()) / (seconds * (os.cpu_count() or 1))


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def verify_no_loss(influx: InfluxClient, phase: Phase) -> None:
    stored = stored_count(influx, phase.prefix)
    if stored != phase.readings:
        raise BenchmarkFailed(
            f"LOSS: {phase.prefix}: sent {phase.readings} readings, InfluxDB holds {stored}"
        )


# -- phases c and d: end to end ----------------------------------------------------------------


def server_pids(services: LocalServices, ingest: IngestProcess) -> dict[str, int | None]:
    return {
        "mosquitto": services.pid("mosquitto"),
        "influxd": services.pid("influxdb"),
        "ingest": ingest.pid,
    }


def measure_live(
    settings: Settings,
    services: LocalServices,
    ingest: IngestProcess,
    phase: Phase,
    procs: list[subprocess.Popen[Any]],
) -> dict[str, Any]:
    ingest.start()
    influx = InfluxClient(settings)
    try:
        publisher = Publisher(settings, phase, procs)
        before = cpu_snapshot(server_pids(services, ingest))
        publisher.release()
        polls = poll_until_stored(influx, phase, ingest.check_running)
        publisher.join()  # done already (all stored); reaps the mosquitto_pubs for the CPU count
        after = cpu_snapshot(server_pids(services, ingest))
        verify_no_loss(influx, phase)
    finally:
        influx.close()
    elapsed = polls[-1][0] - publisher.first_sent()
    lat = latencies_ms(publisher, polls)
    cpu = cpu_delta(before, after)
    return {
        "seconds": round(elapsed, 3),
        "readings_per_s": phase.readings / elapsed,
        "latency_p50_ms": percentile(lat, 50),
        "latency_p99_ms": percentile(lat, 99),
        **publisher.timings(),
        **poll_stats(polls),
        "cpu_s": cpu,
        "machine_busy": machine_busy(cpu, elapsed),
        "stored": phase.readings,
    }


def publish_all(settings: Settings, phase: Phase, procs: list[subprocess.Popen[Any]]) -> float:
    publisher = Publisher(settings, phase, procs)
    t0 = time.perf_counter()
    publisher.release()
    publisher.join()
    return time.perf_counter() - t0


def measure_drain(
    settings: Settings,
    services: LocalServices,
    ingest: IngestProcess,
    phase: Phase,
    procs: list[subprocess.Popen[Any]],
) -> dict[str, Any]:
    ingest.stop()
    say(f"  drain: ingest stopped; publishing {phase.messages} messages into its session")
    publish_s = publish_all(settings, phase, procs)
    influx = InfluxClient(settings)
    try:
        before = cpu_snapshot(server_pids(services, ingest))  # ingest: not running (nan)
        t0 = time.time()
        ingest.start()
        before["ingest"] = 0.0  # a new process: all its CPU time belongs to the drain
        polls = poll_until_stored(influx, phase, ingest.check_running)
        after = cpu_snapshot(server_pids(services, ingest))
        verify_no_loss(influx, phase)
    finally:
        influx.close()
    elapsed = polls[-1][0] - t0
    cpu = cpu_delta(before, after)
    return {
        "seconds": round(elapsed, 3),
        "readings_per_s": phase.readings / elapsed,
        "first_stored_s": round(next(t for t, seqs, _ in polls if any(seqs.values())) - t0, 3),
        "publish_while_down_s": round(publish_s, 3),
        **poll_stats(polls),
        "cpu_s": cpu,
        "machine_busy": machine_busy(cpu, elapsed),
        "stored": phase.readings,
    }


# -- one run -----------------------------------------------------------------------------------


def run_once(
    settings: Settings,
    services: LocalServices,
    args: argparse.Namespace,
    token: str,
    run: int,
    procs: list[subprocess.Popen[Any]],
) -> dict[str, Any]:
    say(f"run {run}: generating payloads and line protocol")
    data = build_run(settings, args, token, run)
    readings = data.live.readings
    say(f"run {run}: influx ceiling ({data.influx_points} points, {len(data.influx_bodies)} POSTs)")
    influx = measure_influx_ceiling(settings, data, readings)
    say(f"  {influx['points_per_s']:,.0f} points/s = {influx['readings_per_s']:,.0f} readings/s")
    say(f"run {run}: mosquitto ceiling ({data.live.messages} messages)")
    workdir = settings.run_dir / f"run{run}"
    broker = measure_mqtt_ceiling(settings, data.live, workdir / "payloads", procs)
    say(f"  {broker['messages_per_s']:,.0f} msg/s = {broker['readings_per_s']:,.0f} readings/s")
    ingest = bench_ingest(settings, workdir, args.rules)
    try:
        say(f"run {run}: e2e live ({readings} readings)")
        live = measure_live(settings, services, ingest, data.live, procs)
        say(f"  {live['readings_per_s']:,.0f} readings/s, p50 {live['latency_p50_ms']:.0f} ms")
        drain = measure_drain(settings, services, ingest, data.drain, procs)
        say(f"  drain {drain['readings_per_s']:,.0f} readings/s")
    finally:
        ingest.stop()
        discard_session(settings, settings.mqtt_client_id)
    return {"influx_ceiling": influx, "mqtt_ceiling": broker, "e2e_live": live, "e2e_drain": drain}


# -- services ----------------------------------------------------------------------------------


@contextmanager
def local_services(run_dir: Path) -> Iterator[tuple[Settings, LocalServices]]:
    settings = scratch_settings(run_dir, influx_database=DATABASE)
    services = LocalServices(settings)
    try:
        services.up()
        yield settings, services
    finally:
        services.down()


def all_devices(args: argparse.Namespace, token: str) -> list[str]:
    devices = []
    for run in range(1, args.runs + 1):
        names = prefixes(token, run)
        for prefix in (names["live"], names["drain"]):
            devices += [f"{prefix}-{i + 1:02d}" for i in range(args.devices)]
    return devices


def stop_leftovers(procs: list[subprocess.Popen[Any]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- report ------------------------------------------------------------------------------------


def command_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "mosquitto": command_version(["mosquitto", "-h"]),
        "influxd": command_version(["influxd", "version"]),
    }


METRICS: list[tuple[str, str, str]] = [
    ("influx ceiling points/s", "influx_ceiling", "points_per_s"),
    ("influx ceiling readings/s", "influx_ceiling", "readings_per_s"),
    ("mosquitto ceiling msg/s", "mqtt_ceiling", "messages_per_s"),
    ("mosquitto ceiling readings/s", "mqtt_ceiling", "readings_per_s"),
    ("e2e live readings/s", "e2e_live", "readings_per_s"),
    ("e2e live latency p50 ms", "e2e_live", "latency_p50_ms"),
    ("e2e live latency p99 ms", "e2e_live", "latency_p99_ms"),
    ("e2e live last hand-off s", "e2e_live", "handoff_s"),
    ("e2e live last PUBACK s", "e2e_live", "all_acked_s"),
    ("e2e live all stored s", "e2e_live", "seconds"),
    ("e2e live mean poll query ms", "e2e_live", "poll_query_ms_mean"),
    ("e2e drain readings/s", "e2e_drain", "readings_per_s"),
    ("e2e drain first stored s", "e2e_drain", "first_stored_s"),
    ("e2e drain all stored s", "e2e_drain", "seconds"),
]


def ratios(run: dict[str, Any]) -> dict[str, float]:
    influx = run["influx_ceiling"]["readings_per_s"]
    broker = run["mqtt_ceiling"]["readings_per_s"]
    live = run["e2e_live"]["readings_per_s"]
    drain = run["e2e_drain"]["readings_per_s"]
    return {
        "live/influx_ceiling": live / influx,
        "live/mqtt_ceiling": live / broker,
        "drain/influx_ceiling": drain / influx,
        "drain/mqtt_ceiling": drain / broker,
    }


def table_rows(runs: list[dict[str, Any]]) -> list[tuple[str, list[float]]]:
    rows = [(label, [r[phase][key] for r in runs]) for label, phase, key in METRICS]
    rows += [(f"ratio {name}", [ratios(r)[name] for r in runs]) for name in ratios(runs[0])]
    for phase in ("e2e_live", "e2e_drain"):
        for proc in runs[0][phase]["cpu_s"]:
            rows.append((f"{phase} cpu s: {proc}", [r[phase]["cpu_s"][proc] for r in runs]))
        rows.append((f"{phase} machine busy (all CPUs)", [r[phase]["machine_busy"] for r in runs]))
    return rows


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {label: statistics.median(values) for label, values in table_rows(runs)}


def fmt(value: float) -> str:
    if value < 10:
        return f"{value:.2f}"
    return f"{value:,.0f}"


def print_table(report: dict[str, Any]) -> None:
    runs = report["runs"]
    header = ["metric", *(f"run {i + 1}" for i in range(len(runs))), "median"]
    rows = [
        [label, *(fmt(v) for v in values), fmt(statistics.median(values))]
        for label, values in table_rows(runs)
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells))


def print_report(report: dict[str, Any]) -> None:
    m, c = report["machine"], report["config"]
    print(f"machine: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}")
    print(f"         {m['mosquitto']}; influxd {m['influxd']}")
    print(
        f"load:    {c['devices']} devices x {c['messages_per_device']} messages x "
        f"{c['readings_per_message']} readings = {c['readings_per_phase']:,} readings per phase,"
        f" {c['points_per_reading']:.0f} points per reading; ingest batch "
        f"{c['ingest_batch_messages']} msgs / {c['ingest_batch_delay_ms']} ms, "
        f"max inflight {c['ingest_max_inflight']}; rules {c['rules_profile'] or 'off'}"
    )
    print()
    print_table(report)
    print()
    print(
        "latency = first 100 ms InfluxDB poll showing a message's last seq minus the time it was"
        " handed to its device's mosquitto_pub (resolution 100 ms); drain is timed from"
        " ingest's process start."
        " Polls scan only from the oldest message not yet seen (an unbounded max(seq) costs"
        " InfluxDB ~40 ms CPU per poll at 200k readings)."
    )
    print(
        "cpu s = CPU seconds (user+system) each process used during the phase; machine busy ="
        " their sum / (phase seconds x nproc). Times (s) count from the first hand-off (live)"
        " or ingest's start (drain)."
    )
    print("ratios of the medians:")
    for name, value in report["median_ratios"].items():
        print(f"  {name:22s} {value:.2f}")


# -- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--devices", type=int, default=10)
    p.add_argument("--messages-per-device", type=int, default=2000)
    p.add_argument("--readings-per-message", type=int, default=10)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--rules",
        metavar="PROFILE",
        help="judge every reading by this profile's rules in ingest too (default: rules off)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args()
    if min(args.devices, args.messages_per_device, args.readings_per_message, args.runs) < 1:
        p.error("all counts must be at least 1")
    if args.devices > 99:
        p.error("--devices is at most 99 (device ids are <prefix>-NN)")
    return args


def config(
    args: argparse.Namespace, settings: Settings, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "devices": args.devices,
        "messages_per_device": args.messages_per_device,
        "readings_per_message": args.readings_per_message,
        "runs": args.runs,
        "readings_per_phase": args.devices * args.messages_per_device * args.readings_per_message,
        "points_per_reading": runs[0]["influx_ceiling"]["points_per_reading"],
        "ingest_batch_messages": settings.ingest_batch_messages,
        "ingest_batch_delay_ms": settings.ingest_batch_delay_ms,
        "ingest_max_inflight": settings.ingest_max_inflight,
        "rules_profile": args.rules,
        "poll_interval_ms": int(POLL_INTERVAL_S * 1000),
    }


def benchmark(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    token = "b" + uuid.uuid4().hex[:6]
    procs: list[subprocess.Popen[Any]] = []
    with local_services(run_dir) as (settings, services):
        try:
            say(f"services up in {run_dir} (mqtt :{settings.mqtt_port}, {settings.influx_url})")
            services.register_devices(all_devices(args, token))
            runs = [
                run_once(settings, services, args, token, run, procs)
                for run in range(1, args.runs + 1)
            ]
        finally:
            stop_leftovers(procs)
    med = medians(runs)
    return {
        "machine": machine(),
        "config": config(args, settings, runs),
        "runs": runs,
        "median": med,
        "median_ratios": {
            name: med[f"e2e {phase} readings/s"] / med[f"{ceiling} readings/s"]
            for name, phase, ceiling in (
                ("live/influx_ceiling", "live", "influx ceiling"),
                ("live/mqtt_ceiling", "live", "mosquitto ceiling"),
                ("drain/influx_ceiling", "drain", "influx ceiling"),
                ("drain/mqtt_ceiling", "drain", "mosquitto ceiling"),
            )
        },
    }


def exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop everything


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    run_dir = Path(tempfile.mkdtemp(prefix="coldtrace-bench-"))
    try:
        report = benchmark(args, run_dir)
    except (BenchmarkFailed, IngestFailed) as exc:
        say(f"FAILED: {exc} (run directory kept for its logs: {run_dir})")
        return 1
    shutil.rmtree(run_dir, ignore_errors=True)  # InfluxDB data and payload files: large
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

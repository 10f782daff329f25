"""Gateway benchmark: serial lines to end-to-end acknowledgement, and the spool's cost.

spool        in process, on a fresh SQLite file (WAL, synchronous FULL): readings committed
             per second in box batches (one commit per line of `--per-line` readings) and
             in logger lines (one commit per reading), and the publish cycle (a batch read
             out, then acked away) per reading
end_to_end   its own Mosquitto and InfluxDB (LocalServices, a temporary run directory), the
             gateway's account made as `coldtrace devices` makes it (a generated ACL
             section carrying the box), `coldtrace ingest` and `coldtrace gateway run` as
             real processes; `--readings` readings of one box written as JSON lines into a
             pseudo-terminal, timed from the first byte until the spool is empty (every
             reading stored and acked); CPU seconds of the gateway process per reading

  .venv/bin/python benchmarks/gateway_throughput.py [--readings 50000] [--per-line 50]
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
import time
from pathlib import Path
from typing import Any

from coldtrace.devtools.gateway_process import GatewayProcess
from coldtrace.devtools.ingest_process import ingest_in
from coldtrace.devtools.machine import machine
from coldtrace.devtools.scratch import scratch_settings
from coldtrace.devtools.serial_wire import Wire
from coldtrace.devtools.services import LocalServices, device_password
from coldtrace.devtools.wait import wait_for
from gateway.spool import Spool, read_status

CLK_TCK = os.sysconf("SC_CLK_TCK")
T0 = 1_784_073_573_000  # 2026-07-14T23:59:33Z


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def reading(seq: int) -> dict[str, Any]:
    return {
        "seq": seq,
        "ts": T0 + 2000 * seq,
        "up": 2000 * seq,
        "probes": {"air": 3.25, "product": 2.5},
        "door": False,
        "battery_v": 12.6,
    }


def box_lines(device: str, readings: int, per_line: int) -> bytes:
    """A tethered box's JSON lines, `per_line` readings a line, as its firmware writes them."""
    return b"".join(
        json.dumps({"device": device, "boot": 1, "readings": [reading(s) for s in seqs]}).encode()
        + b"\n"
        for seqs in (range(i, min(i + per_line, readings)) for i in range(0, readings, per_line))
    )


def spool_cost(directory: Path, readings: int, per_line: int) -> dict[str, float]:
    spool = Spool(directory / "spool.db", readings * 2)
    start = time.perf_counter()
    for first in range(0, readings, per_line):
        spool.add("box", 1, [reading(s) for s in range(first, min(first + per_line, readings))])
    batched = time.perf_counter() - start
    logger_n = min(readings // 10, 2000)
    start = time.perf_counter()
    for _ in range(logger_n):
        spool.add("reefer", 1, [{"ts": T0, "up": 0, "probes": {"air": 3.0}}], number=True)
    single = time.perf_counter() - start
    start = time.perf_counter()
    sent: dict[str, int] = {}
    drained = 0
    while (batch := spool.next_batch(sent, 200)) is not None:
        spool.ack(batch.device, 0, batch.last_seq)
        drained += batch.count
    cycle = time.perf_counter() - start
    spool.close()
    assert drained == readings + logger_n
    return {
        "batched_readings_per_s": readings / batched,
        "batched_us_per_reading": 1e6 * batched / readings,
        "single_us_per_reading": 1e6 * single / logger_n,
        "publish_ack_us_per_reading": 1e6 * cycle / drained,
    }


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def end_to_end(run_dir: Path, readings: int, per_line: int, run: int) -> dict[str, float]:
    settings = scratch_settings(run_dir)
    services = LocalServices(settings)
    services.up()
    work = run_dir / f"run-{run}"
    work.mkdir()
    gateway, box = f"bench-gw-{run}", f"bench-box-{run}"
    try:
        services.register_devices([gateway])
        services.broker_accounts.set_gateway(gateway, [box])
        services.reload("mosquitto")
        (work / "gw.secret").write_text(device_password(settings, gateway))
        wire = Wire(work / "by-id", "box")
        config = work / "gateway.toml"
        config.write_text(
            f'gateway = "{gateway}"\nspool = "{work / "spool.db"}"\nstatus_interval_s = 1\n'
            f'[broker]\nport = {settings.mqtt_port}\npassword_file = "{work / "gw.secret"}"\n'
            f'[[ports]]\nname = "box"\nkind = "box"\npath = "{wire.link}"\n'
            f'carries = ["{box}"]\n'
        )
        ingest = ingest_in(settings, work, COLDTRACE_INGEST_BATCH_DELAY_MS="20").start()
        gw = GatewayProcess(config, work / "gateway.log").start()
        gw.wait_open()
        assert gw.proc is not None
        data = box_lines(box, readings, per_line)
        cpu0 = cpu_s(gw.proc.pid)
        start = time.perf_counter()
        wire.write(data, timeout=300)

        def drained() -> bool:
            status = read_status(work / "spool.db")
            acked = {d["device"]: d["acked_seq"] for d in status["devices"]}
            return acked.get(box) == readings - 1 and status["depth"] == 0

        wait_for(drained, 600, "every reading acked")
        elapsed = time.perf_counter() - start
        cpu = cpu_s(gw.proc.pid) - cpu0
        gw.stop()
        ingest.stop()
        wire.close()
    finally:
        services.down()
    return {
        "readings_per_s": readings / elapsed,
        "gateway_cpu_us_per_reading": 1e6 * cpu / readings,
        "readings_per_gateway_cpu_s": readings / cpu,
        "bytes_per_reading": len(data) / readings,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=50_000)
    parser.add_argument("--per-line", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(128 + s))
    run_dir = Path(tempfile.mkdtemp(prefix="coldtrace-gw-bench-"))
    spool_runs, e2e_runs = [], []
    try:
        for run in range(args.runs):
            spool_runs.append(spool_cost(run_dir / f"spool-{run}", args.readings, args.per_line))
            say(f"spool run {run}: {spool_runs[-1]}")
            e2e_runs.append(end_to_end(run_dir, args.readings, args.per_line, run))
            say(f"end-to-end run {run}: {e2e_runs[-1]}")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    report = {
        "machine": machine(),
        "readings": args.readings,
        "per_line": args.per_line,
        "runs": args.runs,
        "spool_median": {k: statistics.median(r[k] for r in spool_runs) for k in spool_runs[0]},
        "end_to_end_median": {k: statistics.median(r[k] for r in e2e_runs) for k in e2e_runs[0]},
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for section in ("spool_median", "end_to_end_median"):
            print(section)
            for k, v in report[section].items():
                print(f"  {k:32} {v:12,.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Broker persistence benchmark: what Mosquitto's autosave settings cost, and what a crash loses.

For each setting, a Mosquitto of its own (free loopback port, fresh persistence directory):
ingest's persistent session is made and left offline (as while ingest restarts), then
`--messages` telemetry batches (10 readings, about 1.3 KB each) are published at QoS 1 by
`mosquitto_pub -l` and queued for it. Measured: the publish rate and the broker's CPU time
per message (from /proc), then the broker is killed with SIGKILL right after the last PUBACK,
restarted, and the messages still queued for the session counted: what the crash lost.

    .venv/bin/python benchmarks/broker_persistence.py [--messages 20000] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from coldtrace.devtools.services import free_port
from simulators.fleet import batches, make_fleet

SETTINGS = {
    # name: (autosave_on_changes, autosave_interval)
    "interval 10 s (before)": (False, 10),
    "interval 1 s": (False, 1),
    "on changes, every 10,000": (True, 10000),
    "on changes, every 1,000": (True, 1000),
}
TOPIC = "coldtrace/v1/{}/telemetry"


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(conf: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    port = int(conf.read_text().split("listener ")[1].split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = ["mosquitto_sub", "-p", str(port), "-t", "x", "-W", "1", "-C", "1", "-i", "p"]
        done = subprocess.run([*probe, "-q", "0"], capture_output=True, check=False)
        if done.returncode in (0, 27):  # 27: timed out waiting for a message, so it connected
            return proc
        time.sleep(0.1)
    raise RuntimeError("mosquitto did not start")


def session(port: int, *extra: str) -> list[str]:
    return ["mosquitto_sub", "-p", str(port), "-c", "-i", "ingest", "-q", "1", "-t", "#", *extra]


def one(on_changes: bool, interval: int, payloads: list[str], tmp: Path) -> dict[str, float]:
    port = free_port()
    data = tmp / f"data-{port}"
    data.mkdir()
    conf = tmp / f"mosquitto-{port}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {data}/\nautosave_on_changes {str(on_changes).lower()}\n"
        f"autosave_interval {interval}\nmax_queued_messages 2000000\nmax_queued_bytes 0\n"
        "max_inflight_messages 1000\n" + ("user root\n" if os.geteuid() == 0 else "")
        # as root Mosquitto drops to its own user, who could not write here (as services.py)
    )
    broker = start(conf)
    try:
        subprocess.run(session(port, "-E"), check=True)  # subscribe, then go offline
        # A clean restart saves the session: only the queue is at stake in the crash below.
        broker.terminate()
        broker.wait()
        broker = start(conf)
        cpu0, t0 = cpu_s(broker.pid), time.monotonic()
        pub = subprocess.run(
            [
                *("mosquitto_pub", "-p", str(port), "-t", TOPIC.format("van")),
                "-q",
                "1",
                "-M",
                "1000",
                "-l",
            ],
            input="\n".join(payloads).encode() + b"\n",
            check=True,
        )
        assert pub.returncode == 0
        elapsed, cpu = time.monotonic() - t0, cpu_s(broker.pid) - cpu0
        broker.send_signal(signal.SIGKILL)
        broker.wait()
        broker = start(conf)
        got = subprocess.run(session(port, "-W", "5"), capture_output=True, check=False)
        kept = sum(1 for line in got.stdout.splitlines() if line.startswith(b"{"))
    finally:
        broker.kill()
        broker.wait()
    n = len(payloads)
    return {
        "msg_per_s": n / elapsed,
        "broker_cpu_us_per_msg": cpu / n * 1e6,
        "lost_in_crash": n - kept,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    van = make_fleet(1, seed=3, prefix="bench")[0]
    payloads = [
        b.model_dump_json(exclude_defaults=True)
        for b in batches(van, 1_764_000_000_000, args.messages * 10, 1.0, 10)
    ]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (on_changes, interval) in SETTINGS.items():
            runs = [one(on_changes, interval, payloads, Path(tmp)) for _ in range(args.runs)]
            results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    if args.json:
        print(json.dumps({"messages": args.messages, "machine": machine, "median": results}))
        return
    print(f"{args.messages} messages of {len(payloads[0])} B, median of {args.runs} ({machine})")
    for name, r in results.items():
        print(
            f"  {name:28} {r['msg_per_s']:8.0f} msg/s  {r['broker_cpu_us_per_msg']:6.1f} us/msg"
            f"  lost in a crash: {r['lost_in_crash']:.0f}"
        )


if __name__ == "__main__":
    main()

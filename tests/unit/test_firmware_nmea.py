"""The firmware's NMEA parser, run on the real MicroPython interpreter."""

from __future__ import annotations

import calendar
import json
import random
from functools import reduce
from pathlib import Path

from coldtrace.devtools.board import run
from tests.conftest import NMEA_FIXTURE

FEED = """
import json, nmea
from binascii import hexlify
gps = nmea.Gps()
fixes, gga, rejected, dates = [], 0, [], {}
for line in open(%r, "rb").read().split(b"\\n"):
    if not line.strip():
        continue
    s = gps.feed(line, 0)
    if s is None:
        rejected.append(hexlify(line).decode())
    elif s[0] == "RMC" and s[2] is not None:
        fixes.append([s[1], s[2], s[3], s[4], gps.utc_ms])
    elif s[0] == "GGA" and s[1] is not None:
        gga += 1
print(json.dumps({"fixes": fixes, "gga": gga, "rejected": rejected, "count": gps.rejected}))
"""


def sentence(body: str) -> str:
    check = reduce(lambda a, c: a ^ ord(c), body, 0)
    return f"${body}*{check:02X}\r\n"


def test_recorded_drive_keeps_every_valid_fix_and_rejects_the_three_defects(
    tmp_path: Path,
) -> None:
    out = run(FEED % str(NMEA_FIXTURE), tmp_path / "flash")

    # ../shared/README.md: three field defects on purpose, every other fix kept.
    assert out["count"] == 3
    assert [bytes.fromhex(r).strip() for r in out["rejected"]] == [
        b"$GNRMC,235938.00,A,4845.91019,N,00221.28661,E,13.005,5.06,140726,,,A,V*00",
        b"$GNRMC,235943.00,A,4846.50369,N,0022",
        b"\x00\xc3\xbf$GNRMC,garbage",
    ]
    lines = NMEA_FIXTURE.read_bytes().decode("latin-1").split("\r\n")
    valid_rmc = [ln for ln in lines if ln.startswith("$GNRMC") and ",A," in ln]
    assert len(out["fixes"]) == len(valid_rmc) - 2 == 60  # two of the A fixes are damaged
    assert out["gga"] == 60

    first = out["fixes"][0]  # $GNRMC,235933.00,A,4845.31758,N,00221.23316,E,22.415,...,140726
    assert first[0] == calendar.timegm((2026, 7, 14, 23, 59, 33)) * 1000
    assert abs(first[1] - (48 + 45.31758 / 60)) < 1e-9
    assert abs(first[2] - (2 + 21.23316 / 60)) < 1e-9
    assert abs(first[3] - 22.415 * 1.852) < 1e-9

    # Time runs on across midnight: the date rolls over from the 14th to the 15th of July.
    times = [f[0] for f in out["fixes"]]
    assert times == sorted(set(times))
    assert calendar.timegm((2026, 7, 15, 0, 0, 0)) * 1000 in times
    assert times[-1] > calendar.timegm((2026, 7, 15, 0, 0, 0)) * 1000 > times[0]
    assert all(f[4] == f[0] for f in out["fixes"]), "the clock source follows each RMC"


def test_hemispheres_talkers_and_void_fixes(tmp_path: Path) -> None:
    lines = [
        sentence("GPRMC,120000.50,A,3351.0000,S,15112.6000,W,10.0,90.0,010125,,,A"),
        sentence("GLGGA,120001.00,3351.0000,S,15112.6000,W,1,05,2.5,10.0,M,0,M,,"),
        sentence("GARMC,120002.00,A,3351.0000,S,15112.6000,W,10.0,90.0,010125,,,A"),
        sentence("GNRMC,120003.00,V,,,,,,,010125,,,N"),
        sentence("GNGGA,120003.00,,,,,0,00,99.99,,,,,,"),
        sentence("GNRMC,256003.00,A,3351.0000,S,15112.6000,W,10.0,90.0,010125,,,A"),
    ]
    code = f"""
import json, nmea
print(json.dumps([nmea.parse(line) for line in {[ln.encode() for ln in lines]!r}]))
"""
    out = run(code, tmp_path / "flash")
    t0 = calendar.timegm((2025, 1, 1, 12, 0, 0)) * 1000
    assert out[0][:2] == ["RMC", t0 + 500]
    assert out[0][2] == -(33 + 51 / 60) and out[0][3] == -(151 + 12.6 / 60)
    assert out[1] == ["GGA", -(33 + 51 / 60), -(151 + 12.6 / 60), 2.5]
    assert out[2][:4] == ["RMC", t0 + 2000, -(33 + 51 / 60), -(151 + 12.6 / 60)], "Galileo"
    assert out[3] == ["RMC", t0 + 3000, None, None, None], "void: time, no position"
    assert out[4] == ["GGA", None, None, None]
    assert out[5] is None, "hour 25 is not a time"


def test_noise_never_raises(tmp_path: Path) -> None:
    rng = random.Random(5)
    good = sentence("GNRMC,235933.00,A,4845.31758,N,00221.23316,E,22.415,5.06,140726,,,A,V")
    noise = [bytes(rng.randrange(256) for _ in range(rng.randrange(90))) for _ in range(300)]
    flipped = []
    for _ in range(300):
        i = rng.randrange(1, len(good) - 5)  # one character of the sentence changed
        c = chr(rng.choice([x for x in range(32, 127) if x != ord(good[i])]))
        flipped.append((good[:i] + c + good[i + 1 :]).encode())
    cut = [good[:n].encode() for n in range(len(good))]
    (tmp_path / "lines.json").write_text(
        json.dumps([b.decode("latin-1") for b in noise + flipped + cut])
    )
    code = """
import json, nmea
lines = [s.encode() for s in json.load(open("../lines.json"))]
print(json.dumps([nmea.parse(b) for b in lines]))
"""
    out = run(code, tmp_path / "flash")
    assert len(out) == 300 + 300 + len(good)
    assert all(r is None for r in out[300:600]), "a changed character breaks the checksum"
    assert all(r is None for r in out[600 : 600 + len(good) - 2]), "a cut sentence is rejected"

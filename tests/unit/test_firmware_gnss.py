"""GNSS talkers, two-digit years and the device clock's bounds, on the real MicroPython
interpreter with the field's NMEA files (../shared/fixtures/field, copied into
tests/fixtures/field)."""

from __future__ import annotations

import calendar
import time
from functools import reduce
from pathlib import Path

import pytest

from coldtrace.devtools.board import run
from tests.conftest import REPO

FIELD = REPO / "tests" / "fixtures" / "field"
TALKERS = ["GP", "GL", "GA", "GB", "BD", "GQ", "GI", "GN"]

# Each line through a Gps, then its clock set from the GPS time as the firmware's sampler
# does (firmware/app.py: only while nothing else has set it).
FEED = """
import json, nmea
from clock import Clock, Uptime
gps, clock = nmea.Gps(), Clock(Uptime())
out = []
for line in %r:
    s = gps.feed(line, 0)
    if not clock.synced() and gps.utc_ms is not None:
        clock.set(gps.utc_ms, "gps", 0)
    out.append(list(s) if s is not None else None)
print(json.dumps({"parsed": out, "utc": gps.utc_ms, "fix": gps.current(0),
                  "synced": clock.synced(), "source": clock.source,
                  "unsupported": gps.unsupported, "rejected": gps.rejected}))
"""


def sentence(body: str) -> bytes:
    check = reduce(lambda a, c: a ^ ord(c), body, 0)
    return f"${body}*{check:02X}".encode()


def feed(tmp_path: Path, lines: list[bytes]) -> dict:
    return run(FEED % (lines,), tmp_path / "flash")


def test_case_02_beidou_and_galileo_give_fixes_and_gps_time(tmp_path: Path) -> None:
    lines = (FIELD / "case-02-beidou-galileo-talkers.nmea").read_bytes().splitlines()
    gsv = sentence("GBGSV,1,1,01,05,40,083,46")  # a valid sentence the parser does not use
    out = feed(tmp_path, [*lines, gsv])
    kinds = [p[0] for p in out["parsed"]]
    assert kinds == ["RMC", "GGA", "RMC", "RMC", ""]
    t0 = calendar.timegm((2026, 7, 14, 10, 15, 30)) * 1000
    rmc = [p for p in out["parsed"] if p[0] == "RMC"]
    assert [p[1] for p in rmc] == [t0, t0 + 1000, t0 + 2000]
    assert rmc[0][2] == 48 + 51.23456 / 60 and rmc[0][3] == 2 + 21.54321 / 60
    for p in [*rmc, [None, None, *out["parsed"][1][1:3]]]:  # the van moves a few metres
        assert abs(p[2] - 48.85391) < 5e-5 and abs(p[3] - 2.35905) < 5e-5
    assert [round(p[4], 2) for p in rmc] == [23.15] * 3  # 12.5 kn
    assert out["parsed"][1][3] == 0.9  # HDOP of the BeiDou GGA
    assert (out["synced"], out["source"], out["utc"]) == (True, "gps", t0 + 2000)
    assert (out["unsupported"], out["rejected"]) == (1, 0)
    assert out["fix"] == {
        "lat": rmc[-1][2],
        "lon": rmc[-1][3],
        "speed_kmh": rmc[-1][4],
        "hdop": 0.9,
    }


@pytest.mark.parametrize("talker", TALKERS)
def test_every_standard_talker_gives_rmc_and_gga(tmp_path: Path, talker: str) -> None:
    out = feed(
        tmp_path,
        [
            sentence(f"{talker}RMC,101530.00,A,4851.23456,N,00221.54321,E,12.5,87.0,140726,,,A"),
            sentence(f"{talker}GGA,101530.00,4851.23456,N,00221.54321,E,1,09,0.9,41.2,M,46.5,M,,"),
            sentence(f"{talker}VTG,87.0,T,,M,12.5,N,23.2,K,A"),
        ],
    )
    assert [p[0] for p in out["parsed"]] == ["RMC", "GGA", ""]
    assert out["synced"] and out["unsupported"] == 1


def test_a_talker_that_is_no_gnss_is_counted_not_used(tmp_path: Path) -> None:
    out = feed(
        tmp_path, [sentence("XXRMC,101530.00,A,4851.23456,N,00221.54321,E,12.5,87.0,140726,,,A")]
    )
    assert out["parsed"] == [[""]] and out["unsupported"] == 1 and not out["synced"]


def test_case_04_year_99_is_1999_and_refused_as_a_clock_source(tmp_path: Path) -> None:
    lines = (FIELD / "case-04-two-digit-year-99.nmea").read_bytes().splitlines()
    out = feed(tmp_path, lines)
    [rmc] = out["parsed"]
    assert rmc[1] == calendar.timegm((1999, 8, 22, 10, 15, 30)) * 1000  # not 2099
    assert (out["synced"], out["source"]) == (False, None)


@pytest.mark.parametrize(
    ("yy", "year"), [("80", 1980), ("99", 1999), ("00", 2000), ("26", 2026), ("79", 2079)]
)
def test_two_digit_years_are_windowed(tmp_path: Path, yy: str, year: int) -> None:
    out = feed(tmp_path, [sentence(f"GNRMC,000000.00,V,,,,,,,0101{yy},,,N")])
    assert out["parsed"][0][1] == calendar.timegm((year, 1, 1, 0, 0, 0)) * 1000


CLOCK = """
import json
from clock import BUILD_EPOCH_MS, MAX_AHEAD_MS, Clock, Uptime, ntp_sync
clock = Clock(Uptime())
day = 86400000
out = [clock.set(BUILD_EPOCH_MS - 1, "gps"), clock.set(BUILD_EPOCH_MS + MAX_AHEAD_MS + 1, "gps"),
       clock.synced(), ntp_sync(clock), clock.synced(), BUILD_EPOCH_MS, MAX_AHEAD_MS // day]
print(json.dumps(out))
"""


def test_the_clock_refuses_times_before_the_build_or_years_after(tmp_path: Path) -> None:
    # an NTP server 80 years ahead (2099 for 2019) is refused like the GPS
    far = run(CLOCK, tmp_path / "flash", {"ntp_after_ms": 0, "ntp_skew_s": 80 * 365 * 86400})
    assert far[:5] == [False, False, False, False, False]
    build, ahead_days = far[5:]
    assert build == calendar.timegm((2026, 1, 1, 0, 0, 0)) * 1000 and ahead_days == 3660
    assert build <= time.time() * 1000, "the build date is not in the future"
    honest = run(CLOCK, tmp_path / "flash2", {"ntp_after_ms": 0})
    assert honest[:5] == [False, False, False, True, True]


def test_a_device_whose_gps_says_1999_keeps_its_readings_unsynced(tmp_path: Path) -> None:
    from tests.unit.test_firmware_device import run_on_gps

    source, utc, stamps = run_on_gps(
        tmp_path,
        FIELD / "case-04-two-digit-year-99.nmea",
        3.0,
        600,
        '[d.clock.source, d.gps.utc_ms, [r["ts"] for r in readings]]',
    )
    assert utc == calendar.timegm((1999, 8, 22, 10, 15, 30)) * 1000  # read, and refused
    assert source is None and stamps and set(stamps) == {None}

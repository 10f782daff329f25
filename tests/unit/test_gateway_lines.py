"""The gateway's pure parts: line framing, box and logger lines, the ack, GNSS time and
track (with the field's NMEA files)."""

from __future__ import annotations

import calendar
import json
from functools import reduce
from pathlib import Path

from coldtrace.contract import MIN_TS_MS
from gateway.decode import (
    BoxBatch,
    LoggerColumns,
    LoggerReading,
    Refused,
    ack,
    box_line,
    logger_line,
)
from gateway.framing import LineFramer
from gateway.gnss import Gnss
from tests.conftest import NMEA_FIXTURE

FIELD = Path(__file__).resolve().parents[1] / "fixtures" / "field"


def sentence(body: str) -> bytes:
    check = reduce(lambda a, c: a ^ ord(c), body, 0)
    return f"${body}*{check:02X}".encode()


def box(device: str, boot: int, seqs: list[int], ts: int | None = None) -> bytes:
    """A batch as the firmware writes it (MicroPython json.dumps: ', ' and ': ')."""
    readings = [
        {"seq": s, "ts": ts, "up": 1000 * s, "probes": {"air": 3.5, "product": None}} for s in seqs
    ]
    return json.dumps({"device": device, "boot": boot, "readings": readings}).encode()


def test_framer_keeps_whole_lines_across_chunks_and_discards_overlong_ones() -> None:
    f = LineFramer(limit=10)
    assert f.feed(b"abc") == []
    assert f.feed(b"def\r\nxy") == [b"abcdef"]
    assert f.feed(b"\n\n\r\n") == [b"xy"]  # empty lines left out
    # 11 bytes without a line end: discarded up to its end, never cut into a shorter line
    assert f.feed(b"0123456789A") == []
    assert f.feed(b"BCD\nok\n") == [b"ok"]
    assert f.overlong == 1
    # A complete over-long line in one chunk
    assert f.feed(b"0123456789AB\nfine\n") == [b"fine"]
    assert f.overlong == 2
    assert f.feed(b"partial") == []
    assert f.reset() == 7
    assert f.feed(b"next\n") == [b"next"]


def test_box_line_as_the_box_wrote_it() -> None:
    got = box_line(box("van-1", 3, [7, 8]))
    assert isinstance(got, BoxBatch)
    assert (got.device, got.boot, got.torn, got.dropped) == ("van-1", 3, 0, [])
    assert got.readings == [
        {"seq": 7, "ts": None, "up": 7000, "probes": {"air": 3.5, "product": None}},
        {"seq": 8, "ts": None, "up": 8000, "probes": {"air": 3.5, "product": None}},
    ]


def test_a_box_reset_mid_line_keeps_the_next_batch_and_counts_the_fragment() -> None:
    whole = box("van-1", 4, [9])
    fragment = box("van-1", 3, [8])[:41]
    got = box_line(fragment + whole)
    assert isinstance(got, BoxBatch)
    assert (got.boot, [r["seq"] for r in got.readings], got.torn) == (4, [9], 41)


def test_box_lines_refused() -> None:
    assert box_line(b"\x00\xff\xfe garbage at 9600 baud") == Refused(
        "garbage", repr(b"\x00\xff\xfe garbage at 9600 baud")
    )
    cut = box_line(box("van-1", 1, [1])[:-10])
    assert isinstance(cut, Refused) and cut.reason == "garbage"
    wrong = box_line(box("van-1", 1, [1]).replace(b"3.5", b'"3.5"'))
    assert isinstance(wrong, Refused) and wrong.reason == "invalid"
    backwards = box_line(box("van-1", 1, [2, 1]))
    assert isinstance(backwards, Refused) and backwards.reason == "invalid"


def test_logger_line_columns_units_times_and_headers() -> None:
    fahrenheit = LoggerColumns({"return_air": 1, "supply_air": 2}, unit="F", time_column=0)
    assert logger_line(b"2026-07-14 10:00:00,38.3,35.6", fahrenheit) == LoggerReading(
        {"return_air": 3.5, "supply_air": 2.0}, 1_784_023_200_000
    )
    paris = LoggerColumns(
        {"return_air": 1, "supply_air": 2},
        delimiter=";",
        time_column=0,
        time_format="%d/%m/%Y %H:%M",
        timezone="Europe/Paris",
    )
    assert logger_line(b"14/07/2026 12:00;3,5;", paris) == LoggerReading(
        {"return_air": 3.5, "supply_air": None}, 1_784_023_200_000
    )
    assert logger_line(b"time,return (F),supply (F)", fahrenheit) == Refused(
        "header", repr(b"time,return (F),supply (F)")
    )
    assert logger_line(b"10:00,3.5", fahrenheit) == Refused(
        "garbage", "no column 2 in b'10:00,3.5'"
    )
    assert logger_line(b"10:00,nan,inf", fahrenheit) == Refused(
        "garbage", "'nan' is not a temperature"
    )
    assert logger_line(b"14/07/2026,3.5,3.5", fahrenheit) == Refused(
        "garbage", "no time as '%Y-%m-%d %H:%M:%S' in b'14/07/2026,3.5,3.5'"
    )
    assert isinstance(logger_line(b"\xff\xfe1,2,3", fahrenheit), Refused)
    no_time = LoggerColumns({"air": 0})
    assert logger_line(b"-18.5", no_time) == LoggerReading({"air": -18.5}, None)


def test_ack_payload() -> None:
    got = ack(b'{"from":1,"seq":18233}')
    assert got is not None and (got.first, got.seq) == (1, 18233)
    assert ack(b'{"seq": 5}') is None
    assert ack(b"online") is None


def test_gnss_time_and_track_from_the_recorded_drive() -> None:
    g = Gnss()
    lines = [ln for ln in NMEA_FIXTURE.read_bytes().split(b"\n") if ln.strip()]
    damaged = sum(not g.feed(line, 1000 * i) for i, line in enumerate(lines))
    assert damaged == 3  # ../shared README: three defects on purpose
    first_fix = calendar.timegm((2026, 7, 14, 23, 59, 33)) * 1000
    fix = g.fix_at(first_fix)
    assert fix is not None
    assert abs(fix["lat"] - (48 + 45.31758 / 60)) < 1e-9
    assert abs(fix["lon"] - (2 + 21.23316 / 60)) < 1e-9
    assert g.fix_at(first_fix - 11_000) is None  # more than 10 s before the track
    # UTC carried forward on the monotonic clock from the last RMC
    last = g.gps.utc_ms
    assert last is not None
    assert g.utc_ms(g.gps.utc_up + 5000) == last + 5000


def test_gnss_every_talker_and_a_rolled_over_year() -> None:
    g = Gnss()
    for line in (FIELD / "case-02-beidou-galileo-talkers.nmea").read_bytes().splitlines():
        if line.strip():
            assert g.feed(line, 0)
    assert g.utc_ms(0) == calendar.timegm((2026, 7, 14, 10, 15, 32)) * 1000
    fix = g.fix_at(calendar.timegm((2026, 7, 14, 10, 15, 31)) * 1000)
    assert fix is not None and abs(fix["lat"] - (48 + 51.235 / 60)) < 1e-9

    old = Gnss()
    line = (FIELD / "case-04-two-digit-year-99.nmea").read_bytes().splitlines()[0]
    assert old.feed(line, 0)
    assert old.utc_ms(0) is None  # 1999: no time from it
    assert old.refused_times == 1
    assert old.gps.utc_ms is not None and old.gps.utc_ms < MIN_TS_MS

    for talker in ["GP", "GL", "GA", "GB", "BD", "GQ", "GI", "GN"]:
        t = Gnss()
        assert t.feed(sentence(f"{talker}RMC,120000.00,A,4851.0,N,00221.0,E,0.0,0.0,150726,,,A"), 0)
        assert t.utc_ms(0) == calendar.timegm((2026, 7, 15, 12, 0, 0)) * 1000
    bad = sentence("GPRMC,120000.00,A,4851.0,N,00221.0,E,0.0,0.0,150726,,,A")[:-2] + b"00"
    assert not Gnss().feed(bad, 0)

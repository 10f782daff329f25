"""Line protocol: the exact points of docs/storage-schema.md."""

from __future__ import annotations

import zlib
from typing import Any

import pytest

from coldtrace.contract import GpsFix, Reading
from coldtrace.records import PlacedReading
from ingest.decode import Rejection
from ingest.ledger import GapChange, SeqGap
from ingest.lines import (
    PAYLOAD_PREFIX_BYTES,
    gap_line,
    heartbeat_line,
    parse_seq_ranges,
    reading_lines,
    rejection_line,
    seq_ranges,
)

TS = 1_700_000_000_123
TOPIC = "coldtrace/v1/van-01/telemetry"


def full_reading(**changes: Any) -> Reading:
    fields: dict[str, Any] = {
        "seq": 42,
        "ts": TS,
        "up": 64_000,
        "probes": {"air": 3.5, "product": -18.25},
        "gps": GpsFix(lat=48.757, lon=2.351, speed_kmh=0.0, hdop=0.9),
        "door": False,
        "battery_v": 12.61,
        "rssi_dbm": -71,
    }
    fields.update(changes)
    return Reading(**fields)


def place(reading: Reading, ts: int = TS, derived: bool = False, boot: int = 3) -> PlacedReading:
    return PlacedReading("van-01", boot, reading, ts, derived)


def lines_of(p: PlacedReading) -> tuple[list[str], int]:
    out: list[str] = []
    fp = reading_lines(p, out)
    return out, fp


# -- readings --------------------------------------------------------------------------------


def test_reading_with_two_probes_gps_door_battery_rssi() -> None:
    out, fp = lines_of(place(full_reading()))

    health = (
        "device_health,device=van-01 boot=3i,up=64000i,battery_v=12.61,rssi_dbm=-71i,door=false"
    )
    expected = [
        "temperature,device=van-01,probe=air celsius=3.5,seq=42i 1700000000123",
        "temperature,device=van-01,probe=product celsius=-18.25,seq=42i 1700000000123",
        "position,device=van-01 lat=48.757,lon=2.351,speed_kmh=0.0,hdop=0.9,seq=42i 1700000000123",
        f"{health},fp={fp}i,seq=42i 1700000000123",
    ]
    assert out == expected
    # The fingerprint is the CRC-32 of the points (the health point without fp, with its time).
    assert fp == zlib.crc32(
        ("\n".join([*expected[:3], health]) + ",seq=42i 1700000000123").encode()
    )


def test_reading_lines_are_appended_to_out() -> None:
    out = ["already there"]
    reading_lines(place(full_reading()), out)
    assert out[0] == "already there"
    assert len(out) == 5


def test_minimal_reading_has_a_health_point_only() -> None:
    out, fp = lines_of(place(Reading(seq=0, ts=TS, up=0, probes={})))

    assert out == [f"device_health,device=van-01 boot=3i,up=0i,fp={fp}i,seq=0i 1700000000123"]


def test_gps_without_speed_and_hdop() -> None:
    out, _ = lines_of(place(full_reading(gps=GpsFix(lat=-33.5, lon=151.25))))

    assert out[2] == "position,device=van-01 lat=-33.5,lon=151.25,seq=42i 1700000000123"


def test_door_open_and_derived_time() -> None:
    reading = full_reading(ts=None, door=True, battery_v=None, rssi_dbm=None, gps=None)
    out, fp = lines_of(place(reading, ts=TS - 5, derived=True))

    assert out == [
        "temperature,device=van-01,probe=air celsius=3.5,seq=42i 1700000000118",
        "temperature,device=van-01,probe=product celsius=-18.25,seq=42i 1700000000118",
        "device_health,device=van-01 boot=3i,up=64000i,derived=true,door=true,"
        f"fp={fp}i,seq=42i 1700000000118",
    ]


def test_probe_faults() -> None:
    probes = {
        "a": -127.0,
        "b": None,
        "c": 85.0,
        "d": 100.5,
        "e": -80.5,
        "lo": -80.0,
        "hi": 100.0,
    }
    out, _ = lines_of(place(full_reading(probes=probes, gps=None)))

    tail = ",seq=42i 1700000000123"
    assert out[:-1] == [
        f'temperature,device=van-01,probe=a fault="disconnected",raw=-127.0{tail}',
        f'temperature,device=van-01,probe=b fault="no_value"{tail}',
        f'temperature,device=van-01,probe=c fault="power_on_value",raw=85.0{tail}',
        f'temperature,device=van-01,probe=d fault="out_of_range",raw=100.5{tail}',
        f'temperature,device=van-01,probe=e fault="out_of_range",raw=-80.5{tail}',
        f"temperature,device=van-01,probe=lo celsius=-80.0{tail}",
        f"temperature,device=van-01,probe=hi celsius=100.0{tail}",
    ]


# -- fingerprints ----------------------------------------------------------------------------


def test_same_reading_twice_same_fingerprint() -> None:
    _, fp1 = lines_of(place(full_reading()))
    _, fp2 = lines_of(place(full_reading()))
    assert fp1 == fp2
    assert 0 <= fp1 < 2**32


@pytest.mark.parametrize(
    "change",
    [
        {"probes": {"air": 3.6, "product": -18.25}},
        {"probes": {"air": 3.5, "product": None}},
        {"probes": {"air": 3.5}},
        {"gps": GpsFix(lat=48.758, lon=2.351, speed_kmh=0.0, hdop=0.9)},
        {"door": True},
        {"battery_v": 12.6},
        {"rssi_dbm": -70},
        {"up": 64_001},
    ],
)
def test_a_changed_value_changes_the_fingerprint(change: dict[str, Any]) -> None:
    _, fp = lines_of(place(full_reading()))
    _, other = lines_of(place(full_reading(**change)))
    assert other != fp


def test_a_changed_time_changes_the_fingerprint() -> None:
    _, fp = lines_of(place(full_reading()))
    _, other = lines_of(place(full_reading(), ts=TS + 1000))
    assert other != fp


def test_a_changed_time_changes_the_fingerprint_of_a_reading_without_probes() -> None:
    reading = Reading(seq=1, ts=TS, up=5, probes={}, battery_v=12.5)
    _, fp = lines_of(place(reading, ts=TS))
    _, other = lines_of(place(reading, ts=TS + 60_000))
    assert other != fp


# -- gaps ------------------------------------------------------------------------------------


def test_gap_line() -> None:
    change = GapChange("van-01", SeqGap(3, 9, 1_700_000_000_000, "ingest", [[3, 9]]), 7)
    assert gap_line(change) == (
        "seq_gap,device=van-01,source=ingest first=3i,last=9i,missing=7i 1700000000000000003"
    )


def test_gap_line_uses_the_missing_count_of_the_change() -> None:
    gap = SeqGap(3, 9, 1_700_000_000_000, "device", [[3, 9]])
    change = GapChange("van-01", gap, 7)
    gap.missing = []  # the ledger went on filling the gap after this change

    assert gap_line(change) == (
        "seq_gap,device=van-01,source=device first=3i,last=9i,missing=7i 1700000000000000003"
    )


def point_key(line: str) -> tuple[str, str]:
    """What identifies a point in InfluxDB: measurement and tags, and the time."""
    return line.split(" ", 1)[0], line.rsplit(" ", 1)[1]


def test_two_gaps_revealed_at_the_same_time_are_distinct_points() -> None:
    a = GapChange("van-01", SeqGap(5, 9, TS, "device", [[5, 9]]), 5)
    b = GapChange("van-01", SeqGap(20, 29, TS, "device", [[20, 29]]), 10)
    assert point_key(gap_line(a)) != point_key(gap_line(b))


# -- rejections ------------------------------------------------------------------------------


def test_rejection_line_escapes_quotes_backslashes_and_newlines() -> None:
    rej = Rejection(
        "invalid_reading",
        'readings.1.ts: "x" is not\nan int\\',
        1,
        b'{"probes": {"a\\\\b": "q\\"x"}}\r\n',
        "van-01",
        2,
    )

    line = rejection_line(rej, TOPIC, 1_700_000_000_123_456_789)

    assert line == (
        "rejected,reason=invalid_reading "
        'device="van-01",'
        'topic="coldtrace/v1/van-01/telemetry",'
        r'detail="readings.1.ts: \"x\" is not\nan int\\",'
        r'payload="{\"probes\": {\"a\\\\b\": \"q\\\"x\"}}\r\n",'
        "payload_bytes=30i,readings=1i,counted=1i,seq=2i 1700000000123456789"
    )


def test_rejection_line_without_seq_or_device() -> None:
    rej = Rejection("bad_topic", "not a telemetry topic: 'x'", 0, b"{}", "")

    assert rejection_line(rej, "x", 5) == (
        'rejected,reason=bad_topic device="",topic="x",detail="not a telemetry topic: \'x\'",'
        'payload="{}",payload_bytes=2i,readings=0i,counted=0i 5'
    )


def test_a_dead_letter_never_carries_a_seq_influxdb_would_refuse() -> None:
    for bad in (True, 2**64 - 1, 2**63, -1):
        rej = Rejection("invalid_reading", "d", 1, b"{}", "van-07", bad)  # type: ignore[arg-type]
        line = rejection_line(rej, TOPIC, 5)
        assert ",seq=" not in line and "readings=1i,counted=1i 5" in line
    rej = Rejection("oversize", "d", 3, b"{}", "van-07", seqs=(5, 3, 4, 9, 2**64))
    assert rejection_line(rej, TOPIC, 5, 2).endswith('readings=3i,counted=2i,seqs="3-5,9" 5')


def test_a_dead_letter_with_a_lone_surrogate_or_a_bad_reason_still_encodes() -> None:
    rej = Rejection("Bad Reason", "\ud800 x", 1, b"\xff\xfe", "van\ud800")
    line = rejection_line(rej, TOPIC, 5)
    assert line.startswith('rejected,reason=unknown device="van?"')
    line.encode()  # no UnicodeEncodeError


def test_seq_ranges_round_trip() -> None:
    assert seq_ranges((1, 2, 3, 7, 9, 10)) == "1-3,7,9-10"
    assert parse_seq_ranges("1-3,7,9-10") == [1, 2, 3, 7, 9, 10]
    assert parse_seq_ranges("") == []


def test_rejection_payload_is_cut_to_the_prefix() -> None:
    payload = b"a" * (PAYLOAD_PREFIX_BYTES - 1) + b"bcdef"
    rej = Rejection("oversize", "too big", 0, payload, "van-01")

    line = rejection_line(rej, TOPIC, 7)

    assert PAYLOAD_PREFIX_BYTES == 1024
    assert f'payload="{"a" * 1023}b",payload_bytes=1028i,' in line


def test_rejection_payload_cut_inside_a_utf8_character_stays_valid() -> None:
    payload = b"a" * (PAYLOAD_PREFIX_BYTES - 1) + "é".encode()  # 2 bytes, cut after the 1st
    line = rejection_line(Rejection("oversize", "d", 0, payload, "van-01"), TOPIC, 7)

    assert f'payload="{"a" * 1023}\ufffd",payload_bytes=1025i,' in line


def test_rejection_topic_and_detail_are_cut() -> None:
    rej = Rejection("bad_topic", "d" * 1500, 0, b"", "")
    line = rejection_line(rej, "t" * 300, 7)

    assert f'topic="{"t" * 256}",detail="{"d" * 1000}",' in line


def test_a_heartbeat_is_one_point_of_integers_and_booleans() -> None:
    line = heartbeat_line("ingest", {"up": True, "lag_ms": 12, "rules_ok": False}, 5)
    assert line == "ingest,instance=ingest lag_ms=12i,rules_ok=false,up=true 5"

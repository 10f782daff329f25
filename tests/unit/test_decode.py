"""decode(): every message becomes readings or rejections with a reason code; nothing raises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from coldtrace.contract import DroppedRange, Reading
from ingest.decode import Decoded, Rejection, decode

FIELD = Path(__file__).parents[1] / "fixtures" / "field"
TOPIC = "coldtrace/v1/van-01/telemetry"
TS = 1_700_000_000_000
MAX = 64 * 1024


def reading(seq: int, /, **fields: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"seq": seq, "ts": TS + seq * 1000, "up": seq * 1000}
    r["probes"] = {"air": 3.5}
    r.update(fields)
    return r


def model(seq: int) -> Reading:
    return Reading(seq=seq, ts=TS + seq * 1000, up=seq * 1000, probes={"air": 3.5})


def payload(**fields: Any) -> bytes:
    b: dict[str, Any] = {"device": "van-01", "boot": 3, "readings": [reading(1), reading(2)]}
    b.update(fields)
    return json.dumps(b).encode()


def only_rejection(d: Decoded) -> Rejection:
    assert d.readings == []
    assert len(d.rejections) == 1
    return d.rejections[0]


# -- good batches ----------------------------------------------------------------------------


def test_good_batch_gives_its_readings_in_order_and_no_rejections() -> None:
    d = decode(TOPIC, payload(readings=[reading(1), reading(2), reading(5)]), MAX)

    assert d == Decoded("van-01", 3, [model(1), model(2), model(5)], [], [])


def test_dropped_ranges_are_parsed() -> None:
    d = decode(TOPIC, payload(dropped=[{"from": 5, "to": 9}, {"from": 20, "to": 20}]), MAX)

    assert d.rejections == []
    assert d.dropped == [
        DroppedRange.model_validate({"from": 5, "to": 9}),
        DroppedRange.model_validate({"from": 20, "to": 20}),
    ]
    assert [r.seq for r in d.readings] == [1, 2]


def test_payload_of_exactly_max_bytes_is_accepted() -> None:
    p = payload()
    d = decode(TOPIC, p, len(p))
    assert d.rejections == []
    assert [r.seq for r in d.readings] == [1, 2]


# -- one test per reason code ----------------------------------------------------------------


def test_bad_topic() -> None:
    p = payload()
    d = decode("coldtrace/v1/van-01/status", p, MAX)

    assert d.device == ""
    rej = only_rejection(d)
    assert rej == Rejection(
        "bad_topic", "not a telemetry topic: 'coldtrace/v1/van-01/status'", 0, p, "", None
    )


def test_bad_topic_detail_is_cut_to_200_characters() -> None:
    topic = "x/" * 500
    rej = only_rejection(decode(topic, payload(), MAX))
    assert rej.reason == "bad_topic"
    assert rej.detail == f"not a telemetry topic: {topic[:200]!r}"


def test_oversize() -> None:
    p = payload()
    rej = only_rejection(decode(TOPIC, p, len(p) - 1))

    # Its readings are counted (and their seqs kept) when they can be read.
    assert rej == Rejection(
        "oversize", f"{len(p)} bytes > limit {len(p) - 1}", 2, p, "van-01", seqs=(1, 2)
    )


def test_oversize_that_is_not_json_counts_no_readings() -> None:
    p = b"x" * 100
    rej = only_rejection(decode(TOPIC, p, 99))
    assert (rej.reason, rej.readings, rej.seqs) == ("oversize", 0, ())


def test_malformed_json() -> None:
    p = b'{"device": "van-01", "boot": 3, "readings": ['
    rej = only_rejection(decode(TOPIC, p, MAX))

    assert (rej.reason, rej.readings, rej.payload, rej.device, rej.seq) == (
        "malformed_json",
        0,
        p,
        "van-01",
        None,
    )
    assert rej.detail.startswith("Expecting value: line 1 column")


def test_not_utf8_is_malformed_json() -> None:
    rej = only_rejection(decode(TOPIC, b"\xff\xfe\x00garbage", MAX))
    assert (rej.reason, rej.readings) == ("malformed_json", 0)


def test_invalid_batch_missing_boot_counts_its_readings() -> None:
    p = json.dumps({"device": "van-01", "readings": [reading(1), reading(2)]}).encode()
    rej = only_rejection(decode(TOPIC, p, MAX))

    assert rej == Rejection("invalid_batch", "boot: Field required", 2, p, "van-01", seqs=(1, 2))


def test_invalid_batch_readings_not_a_list() -> None:
    p = payload(readings={"seq": 1})
    rej = only_rejection(decode(TOPIC, p, MAX))

    assert rej == Rejection(
        "invalid_batch", "readings: Input should be a valid array", 0, p, "van-01"
    )


def test_invalid_batch_no_readings() -> None:
    p = payload(readings=[])
    rej = only_rejection(decode(TOPIC, p, MAX))

    assert (rej.reason, rej.readings) == ("invalid_batch", 0)
    assert rej.detail.startswith("readings: List should have at least 1 item")


def test_invalid_batch_501_readings_counts_them_all() -> None:
    p = payload(readings=[reading(i) for i in range(501)])
    rej = only_rejection(decode(TOPIC, p, 10 * MAX))

    assert (rej.reason, rej.readings) == ("invalid_batch", 501)
    assert rej.detail.startswith("readings: List should have at most 500 items")


def test_invalid_batch_not_an_object() -> None:
    p = b"[1, 2]"
    rej = only_rejection(decode(TOPIC, p, MAX))

    assert rej == Rejection("invalid_batch", "payload is not a JSON object", 0, p, "van-01")


def test_invalid_batch_bad_dropped_range() -> None:
    p = payload(dropped=[{"from": 9, "to": 5}])
    rej = only_rejection(decode(TOPIC, p, MAX))

    assert (rej.reason, rej.readings) == ("invalid_batch", 2)
    assert rej.detail.startswith("dropped.0: Value error, 'to' must not be below 'from'")


def test_device_mismatch_counts_the_readings() -> None:
    p = payload(device="van-02", readings=[reading(1), reading(2), reading(3)])
    rej = only_rejection(decode(TOPIC, p, MAX))

    assert rej == Rejection(
        "device_mismatch",
        "payload device 'van-02' on topic of 'van-01'",
        3,
        p,
        "van-01",
        seqs=(1, 2, 3),
    )


def test_device_mismatch_wins_over_a_bad_reading() -> None:
    """A spoofed batch is rejected whole, even where single readings would be invalid."""
    p = payload(device="van-02", readings=[reading(1), reading(2, up="x")])
    rej = only_rejection(decode(TOPIC, p, MAX))

    assert rej == Rejection(
        "device_mismatch",
        "payload device 'van-02' on topic of 'van-01'",
        2,
        p,
        "van-01",
        seqs=(1, 2),
    )


def test_invalid_reading_keeps_the_other_two() -> None:
    bad = reading(2, ts="soon")
    d = decode(TOPIC, payload(readings=[reading(1), bad, reading(3)]), MAX)

    assert (d.device, d.boot) == ("van-01", 3)
    assert d.readings == [model(1), model(3)]
    assert d.rejections == [
        Rejection(
            "invalid_reading",
            "readings.1.ts: Input should be a valid integer",
            1,
            json.dumps(bad).encode(),
            "van-01",
            2,
        )
    ]


def test_nan_probe_keeps_its_reading_for_the_probe_fault() -> None:
    probes = {"air": 0.5, "product": 3.0}
    p = payload(readings=[reading(1, probes=probes), reading(2)]).replace(b"0.5", b"NaN")
    d = decode(TOPIC, p, MAX)

    assert d.rejections == []
    assert [r.seq for r in d.readings] == [1, 2]
    assert d.readings[0].probes["product"] == 3.0
    assert str(d.readings[0].probes["air"]) == "nan"


def test_nan_battery_is_still_an_invalid_reading() -> None:
    p = payload(readings=[reading(1, battery_v=0.5), reading(2)]).replace(b"0.5", b"NaN")
    d = decode(TOPIC, p, MAX)

    assert d.readings == [model(2)]
    [rej] = d.rejections
    assert (rej.reason, rej.readings, rej.seq) == ("invalid_reading", 1, 1)
    assert rej.detail == "readings.0.battery_v: Input should be a finite number"


# -- field cases 17 and 18 (../shared/fixtures/field/README.md) --------------------------------


def field_case(name: str) -> bytes:
    return (FIELD / name).read_bytes()


def test_case_17_a_repeated_probe_key_dead_letters_the_reading_naming_the_key() -> None:
    d = decode("coldtrace/v1/van-07/telemetry", field_case("case-17-duplicate-probe-key.json"), MAX)

    assert d.readings == []
    [rej] = d.rejections
    assert (rej.reason, rej.readings, rej.seq, rej.device) == ("duplicate_key", 1, 12, "van-07")
    assert rej.detail == (
        "readings.0: key 'probes.product' appears more than once: ambiguous, never last-one-wins"
    )


def test_case_17b_a_repeated_ts_key_dead_letters_the_reading_naming_the_key() -> None:
    d = decode("coldtrace/v1/van-07/telemetry", field_case("case-17b-duplicate-ts-key.json"), MAX)

    [rej] = d.rejections
    assert (rej.reason, rej.readings, rej.seq) == ("duplicate_key", 1, 12)
    assert rej.detail.startswith("readings.0: key 'ts' appears more than once")


def test_a_repeated_key_of_the_batch_dead_letters_the_whole_batch() -> None:
    p = (
        b'{"device":"van-01","boot":1,"boot":7,"readings":['
        + json.dumps(reading(1)).encode()
        + b"]}"
    )
    rej = only_rejection(decode(TOPIC, p, MAX))
    assert (rej.reason, rej.readings, rej.seqs) == ("duplicate_key", 1, (1,))
    assert rej.detail.startswith("key 'boot' appears more than once")


def test_a_repeated_key_keeps_the_other_readings() -> None:
    dup = json.dumps(reading(2)).encode().replace(b'"air": 3.5', b'"air": 3.5, "air": 55.0')
    p = (
        b'{"device":"van-01","boot":3,"readings":['
        + json.dumps(reading(1)).encode()
        + b","
        + dup
        + b"]}"
    )
    d = decode(TOPIC, p, MAX)
    assert d.readings == [model(1)]
    assert [(r.reason, r.seq) for r in d.rejections] == [("duplicate_key", 2)]


def test_a_colon_inside_a_string_is_not_taken_for_a_repeated_key() -> None:
    p = payload(readings=[reading(1, probes={"air:x": 3.5})])
    d = decode(TOPIC, p, MAX)
    assert [(r.reason, r.seq) for r in d.rejections] == [("invalid_reading", 1)]


@pytest.mark.parametrize("name", ["case-18-uint64-seq.json", "case-18b-bool-seq.json"])
def test_case_18_a_seq_out_of_int64_or_a_boolean_is_an_invalid_reading(name: str) -> None:
    d = decode("coldtrace/v1/van-07/telemetry", field_case(name), MAX)

    assert [r.seq for r in d.readings] == [13]
    [rej] = d.rejections
    # No seq on the dead letter: neither 2^64-1 nor True is a seq InfluxDB (or the books) takes.
    assert (rej.reason, rej.readings, rej.seq, rej.all_seqs) == ("invalid_reading", 1, None, ())
    assert rej.detail.startswith("readings.1.seq: ")


def test_invalid_reading_without_usable_seq() -> None:
    d = decode(TOPIC, payload(readings=[reading(1), "junk", reading(3, seq="3")]), MAX)

    assert d.readings == [model(1)]
    assert [(r.reason, r.readings, r.seq, r.payload) for r in d.rejections] == [
        ("invalid_reading", 1, None, b'"junk"'),
        ("invalid_reading", 1, None, json.dumps(reading(3, seq="3")).encode()),
    ]
    assert d.rejections[0].detail.startswith("readings.1.")


def test_seq_not_increasing_salvages_the_rest() -> None:
    d = decode(TOPIC, payload(readings=[reading(1), reading(3), reading(2), reading(4)]), MAX)

    assert d.readings == [model(1), model(3), model(4)]
    assert d.rejections == [
        Rejection(
            "seq_not_increasing",
            "readings.2: seq 2 after 3",
            1,
            json.dumps(reading(2)).encode(),
            "van-01",
            2,
        )
    ]


def test_repeated_seq_in_a_batch_is_seq_not_increasing() -> None:
    d = decode(TOPIC, payload(readings=[reading(1), reading(1), reading(2)]), MAX)

    assert d.readings == [model(1), model(2)]
    assert [(r.reason, r.detail, r.seq) for r in d.rejections] == [
        ("seq_not_increasing", "readings.1: seq 1 after 1", 1)
    ]


def test_salvage_keeps_boot_and_dropped() -> None:
    p = payload(readings=[reading(1), reading(2, up=-1)], dropped=[{"from": 5, "to": 9}])
    d = decode(TOPIC, p, MAX)

    assert (d.boot, d.dropped) == (3, [DroppedRange.model_validate({"from": 5, "to": 9})])
    assert d.readings == [model(1)]
    assert [(r.reason, r.seq) for r in d.rejections] == [("invalid_reading", 2)]


def test_every_reading_accounted_for() -> None:
    """sent = kept + rejected readings, for a batch with several kinds of bad readings."""
    readings = [reading(1), reading(2, up=None), reading(0), reading(4), reading(5, door=1)]
    d = decode(TOPIC, payload(readings=readings), MAX)

    assert [r.seq for r in d.readings] == [1, 4]
    assert [(r.reason, r.seq) for r in d.rejections] == [
        ("invalid_reading", 2),
        ("seq_not_increasing", 0),
        ("invalid_reading", 5),
    ]
    assert len(d.readings) + sum(r.readings for r in d.rejections) == len(readings)

"""Wire contract v1: what parses, what does not, and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from coldtrace.contract import (
    MAX_BATCH_BYTES,
    MAX_READINGS_PER_BATCH,
    MAX_TS_MS,
    MIN_TS_MS,
    DroppedRange,
    GpsFix,
    Reading,
    TelemetryBatch,
    config_topic,
    device_from_topic,
    json_schema,
    probe_fault,
    status_topic,
    telemetry_topic,
)

REPO = Path(__file__).resolve().parents[2]
TS = 1_700_000_000_000


def reading(seq: int, /, **fields: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"seq": seq, "ts": TS + seq * 60_000, "up": 4_000 + seq * 60_000}
    r["probes"] = {"air": 3.5, "product": 2.25}
    r.update(fields)
    return r


def batch(**fields: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"device": "van-01", "boot": 7, "readings": [reading(1), reading(2)]}
    b.update(fields)
    return b


def parse(obj: dict[str, Any]) -> TelemetryBatch:
    return TelemetryBatch.model_validate_json(json.dumps(obj))


def first_error(payload: bytes | dict[str, Any]) -> dict[str, Any]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with pytest.raises(ValidationError) as info:
        TelemetryBatch.model_validate_json(raw)
    err: dict[str, Any] = dict(info.value.errors(include_url=False)[0])
    return err


# -- a valid batch ---------------------------------------------------------------------------


def test_a_full_valid_batch_parses_with_every_field() -> None:
    payload = {
        "device": "van-01",
        "boot": 7,
        "readings": [
            {"seq": 10, "ts": None, "up": 4_000, "probes": {"air": 3.4, "product": None}},
            {
                "seq": 11,
                "ts": TS,
                "up": 64_000,
                "probes": {"air": 3.6, "product": -127},
                "gps": {"lat": 48.757, "lon": 2.351, "speed_kmh": 0.0, "hdop": 0.9},
                "door": False,
                "battery_v": 12.61,
                "rssi_dbm": -71,
            },
        ],
        "dropped": [{"from": 5, "to": 9}],
    }

    b = parse(payload)

    assert b == TelemetryBatch(
        device="van-01",
        boot=7,
        readings=[
            Reading(seq=10, ts=None, up=4_000, probes={"air": 3.4, "product": None}),
            Reading(
                seq=11,
                ts=TS,
                up=64_000,
                probes={"air": 3.6, "product": -127.0},
                gps=GpsFix(lat=48.757, lon=2.351, speed_kmh=0.0, hdop=0.9),
                door=False,
                battery_v=12.61,
                rssi_dbm=-71,
            ),
        ],
        dropped=[DroppedRange.model_validate({"from": 5, "to": 9})],
    )
    # An integer probe value is a number of degrees, stored as a float.
    assert type(b.readings[1].probes["product"]) is float


def test_optional_fields_default_to_none_and_no_dropped() -> None:
    b = parse(batch(readings=[{"seq": 0, "ts": None, "up": 0, "probes": {}}]))

    r = b.readings[0]
    assert (r.gps, r.door, r.battery_v, r.rssi_dbm) == (None, None, None, None)
    assert b.dropped == []


def test_batch_of_exactly_max_readings_parses() -> None:
    readings = [reading(i) for i in range(MAX_READINGS_PER_BATCH)]
    assert len(parse(batch(readings=readings)).readings) == 500


def test_ts_of_exactly_2020_parses() -> None:
    assert parse(batch(readings=[reading(1, ts=MIN_TS_MS)])).readings[0].ts == 1_577_836_800_000


# -- topics ----------------------------------------------------------------------------------


def test_topic_helpers() -> None:
    assert telemetry_topic("van-01") == "coldtrace/v1/van-01/telemetry"
    assert status_topic("van-01") == "coldtrace/v1/van-01/status"
    assert config_topic("van-01") == "coldtrace/v1/van-01/config"


def test_device_from_its_telemetry_topic() -> None:
    assert device_from_topic("coldtrace/v1/van-01/telemetry") == "van-01"
    assert device_from_topic(telemetry_topic("Truck_7.b")) == "Truck_7.b"


@pytest.mark.parametrize(
    "topic",
    [
        "coldtrace/v2/van-01/telemetry",  # another contract version
        "other/v1/van-01/telemetry",  # another root
        "coldtrace/v1/van-01/status",  # not telemetry
        "coldtrace/v1/van-01/config",
        "coldtrace/v1/telemetry",  # 3 segments
        "coldtrace/v1/van-01/telemetry/extra",  # 5 segments
        "/coldtrace/v1/van-01/telemetry",  # leading slash: 5 segments
        "coldtrace/v1/a/b/telemetry",
        "",
    ],
)
def test_device_from_other_topics_is_none(topic: str) -> None:
    assert device_from_topic(topic) is None


def test_device_from_topic_with_empty_device_segment_is_none() -> None:
    assert device_from_topic("coldtrace/v1//telemetry") is None


# -- what is rejected ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changed", "loc", "kind"),
    [
        ({"seq": "12"}, ("readings", 0, "seq"), "int_type"),
        ({"seq": 1.0}, ("readings", 0, "seq"), "int_type"),
        ({"up": True}, ("readings", 0, "up"), "int_type"),
        ({"door": 1}, ("readings", 0, "door"), "bool_type"),
        ({"probes": {"air": True}}, ("readings", 0, "probes", "air"), "float_type"),
        ({"probes": {"air": "3.5"}}, ("readings", 0, "probes", "air"), "float_type"),
        ({"rssi_dbm": -71.5}, ("readings", 0, "rssi_dbm"), "int_type"),
    ],
)
def test_wrong_types_are_errors_strict_mode(
    changed: dict[str, Any], loc: tuple[Any, ...], kind: str
) -> None:
    err = first_error(batch(readings=[reading(1, **changed)]))
    assert (err["loc"], err["type"]) == (loc, kind)


def test_boot_as_string_is_an_error() -> None:
    err = first_error(batch(boot="7"))
    assert (err["loc"], err["type"]) == (("boot",), "int_type")


def test_missing_up_is_an_error() -> None:
    r = reading(1)
    del r["up"]
    err = first_error(batch(readings=[r]))
    assert (err["loc"], err["type"]) == (("readings", 0, "up"), "missing")


def test_missing_ts_is_an_error_null_must_be_explicit() -> None:
    r = reading(1)
    del r["ts"]
    err = first_error(batch(readings=[r]))
    assert (err["loc"], err["type"]) == (("readings", 0, "ts"), "missing")


def test_missing_readings_is_an_error() -> None:
    b = batch()
    del b["readings"]
    err = first_error(b)
    assert (err["loc"], err["type"]) == (("readings",), "missing")


def test_unknown_field_in_batch_is_an_error() -> None:
    err = first_error(batch(devise="van-01"))
    assert (err["loc"], err["type"]) == (("devise",), "extra_forbidden")


def test_unknown_field_in_reading_is_an_error() -> None:
    err = first_error(batch(readings=[reading(1, temp=3.0)]))
    assert (err["loc"], err["type"]) == (("readings", 0, "temp"), "extra_forbidden")


def test_unknown_field_in_gps_is_an_error() -> None:
    err = first_error(batch(readings=[reading(1, gps={"lat": 1.0, "lon": 2.0, "alt": 3.0})]))
    assert (err["loc"], err["type"]) == (("readings", 0, "gps", "alt"), "extra_forbidden")


@pytest.mark.parametrize(
    ("literal", "fault"),
    [(b"NaN", "not_a_number"), (b"Infinity", "out_of_range"), (b"-Infinity", "out_of_range")],
)
def test_nan_and_infinity_in_a_probe_are_that_probes_fault(literal: bytes, fault: str) -> None:
    """A failed conversion is the probe's fault: the reading and its other probes are kept."""
    payload = json.dumps(batch(readings=[reading(1, probes={"air": 0.5, "p": 3.0})])).encode()
    payload = payload.replace(b"0.5", literal)
    assert literal in payload
    probes = TelemetryBatch.model_validate_json(payload).readings[0].probes
    assert probe_fault(probes["air"]) == fault
    assert probes["p"] == 3.0


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity"])
def test_nan_and_infinity_in_battery_and_gps_are_errors(literal: bytes) -> None:
    payload = json.dumps(batch(readings=[reading(1, battery_v=0.5)])).encode()
    err = first_error(payload.replace(b"0.5", literal))
    assert (err["loc"], err["type"]) == (("readings", 0, "battery_v"), "finite_number")

    payload = json.dumps(batch(readings=[reading(1, gps={"lat": 0.5, "lon": 2.0})])).encode()
    err = first_error(payload.replace(b"0.5", literal))
    assert (err["loc"], err["type"]) == (("readings", 0, "gps", "lat"), "finite_number")


def test_batch_of_zero_readings_is_an_error() -> None:
    err = first_error(batch(readings=[]))
    assert (err["loc"], err["type"]) == (("readings",), "too_short")


def test_batch_of_501_readings_is_an_error() -> None:
    err = first_error(batch(readings=[reading(i) for i in range(501)]))
    assert (err["loc"], err["type"]) == (("readings",), "too_long")


@pytest.mark.parametrize("seqs", [[1, 1], [2, 1], [1, 3, 2]])
def test_seq_not_strictly_increasing_is_an_error(seqs: list[int]) -> None:
    err = first_error(batch(readings=[reading(s) for s in seqs]))
    assert err["type"] == "value_error"
    assert "readings[].seq must strictly increase" in err["msg"]


def test_ts_before_2020_is_an_error() -> None:
    err = first_error(batch(readings=[reading(1, ts=MIN_TS_MS - 1)]))
    assert (err["loc"], err["type"]) == (("readings", 0, "ts"), "greater_than_equal")


def test_ts_after_2100_is_an_error() -> None:
    err = first_error(batch(readings=[reading(1, ts=4_102_444_800_001)]))
    assert (err["loc"], err["type"]) == (("readings", 0, "ts"), "less_than_equal")


def test_ts_in_seconds_instead_of_ms_is_an_error() -> None:
    err = first_error(batch(readings=[reading(1, ts=1_700_000_000)]))
    assert err["loc"] == ("readings", 0, "ts")


def test_negative_seq_is_an_error() -> None:
    err = first_error(batch(readings=[reading(-1)]))
    assert (err["loc"], err["type"]) == (("readings", 0, "seq"), "greater_than_equal")


@pytest.mark.parametrize(
    ("gps", "field"),
    [
        ({"lat": 91.0, "lon": 2.0}, "lat"),
        ({"lat": -90.5, "lon": 2.0}, "lat"),
        ({"lat": 48.0, "lon": 180.5}, "lon"),
        ({"lat": 48.0, "lon": 2.0, "speed_kmh": -1.0}, "speed_kmh"),
    ],
)
def test_gps_out_of_range_is_an_error(gps: dict[str, float], field: str) -> None:
    err = first_error(batch(readings=[reading(1, gps=gps)]))
    assert err["loc"] == ("readings", 0, "gps", field)


def test_gps_at_the_poles_parses() -> None:
    b = parse(batch(readings=[reading(1, gps={"lat": 90.0, "lon": -180.0})]))
    assert b.readings[0].gps == GpsFix(lat=90.0, lon=-180.0)


@pytest.mark.parametrize("device", ["van/01", "van+1", "van#1", "van 1", "", "-van", "a" * 65])
def test_invalid_device_id_is_an_error(device: str) -> None:
    err = first_error(batch(device=device))
    assert (err["loc"], err["type"]) == (("device",), "string_pattern_mismatch")


@pytest.mark.parametrize("device", ["v", "van-01", "VAN_01.b", "0" + "a" * 63])
def test_valid_device_ids_parse(device: str) -> None:
    assert parse(batch(device=device)).device == device


def test_invalid_probe_id_is_an_error() -> None:
    err = first_error(batch(readings=[reading(1, probes={"air,probe": 3.0})]))
    assert err["loc"] == ("readings", 0, "probes", "air,probe", "[key]")


def test_more_than_16_probes_is_an_error() -> None:
    probes = {f"p{i}": 1.0 for i in range(17)}
    err = first_error(batch(readings=[reading(1, probes=probes)]))
    assert (err["loc"], err["type"]) == (("readings", 0, "probes"), "too_long")


def test_dropped_range_with_to_below_from_is_an_error() -> None:
    err = first_error(batch(dropped=[{"from": 9, "to": 5}]))
    assert err["loc"] == ("dropped", 0)
    assert "'to' must not be below 'from'" in err["msg"]


def test_dropped_range_of_one_seq_parses() -> None:
    assert parse(batch(dropped=[{"from": 5, "to": 5}])).dropped == [
        DroppedRange.model_validate({"from": 5, "to": 5})
    ]


def test_dropped_range_with_python_field_names_is_an_error() -> None:
    first_error(batch(dropped=[{"first": 5, "last": 9}]))


# -- probe faults ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fault"),
    [
        (None, "no_value"),
        (-127.0, "disconnected"),
        (85.0, "power_on_value"),
        (100.5, "out_of_range"),
        (-80.5, "out_of_range"),
        (float("nan"), "not_a_number"),
        (float("inf"), "out_of_range"),
        (4.0, None),
        (-18.0, None),
        (-80.0, None),
        (100.0, None),
        (84.9, None),
    ],
)
def test_probe_fault(value: float | None, fault: str | None) -> None:
    assert probe_fault(value) == fault


# -- the published schema --------------------------------------------------------------------


def test_checked_in_schema_is_the_generated_one() -> None:
    checked_in = json.loads((REPO / "schemas" / "telemetry-v1.json").read_text())
    assert checked_in == json.loads(json.dumps(json_schema(), sort_keys=True))


def test_schema_uses_wire_names_for_dropped_ranges() -> None:
    dropped = json_schema()["$defs"]["DroppedRange"]  # type: ignore[index]
    assert sorted(dropped["required"]) == ["from", "to"]
    assert dropped["additionalProperties"] is False


def test_the_largest_contract_valid_batch_fits_in_max_batch_bytes() -> None:
    probes = {("p" * 29) + f"{i:03d}": -79.12345678901234 for i in range(16)}
    gps = {"lat": -89.123456789, "lon": -179.12345678901234, "speed_kmh": 399.12345678901234}
    largest = {
        "device": "d" * 64,
        "boot": 2**63 - 1,
        "readings": [
            {
                "seq": 2**63 - 501 + i,
                "ts": MAX_TS_MS,
                "up": 2**63 - 1,
                "probes": probes,
                "gps": {**gps, "hdop": 99.12345678901234},
                "door": False,
                "battery_v": 59.123456789012344,
                "rssi_dbm": -150,
            }
            for i in range(MAX_READINGS_PER_BATCH)
        ],
        "dropped": [{"from": 2**63 - 1, "to": 2**63 - 1}] * 64,
    }
    body = json.dumps(largest).encode()  # ", " and ": ": larger than a compact encoding
    TelemetryBatch.model_validate_json(body)  # contract-valid
    assert 550_000 < len(body) <= MAX_BATCH_BYTES

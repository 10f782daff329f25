"""Each kind of bad input, published by a real device through the real broker: it is
dead-lettered with its reason (InfluxDB measurement `rejected`), logged, acked, and ingest
goes on storing the good message published right behind it."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from coldtrace.devtools.ingest_process import IngestProcess
from coldtrace.influx import InfluxClient
from coldtrace.settings import Settings
from tests.conftest import (
    Devices,
    discard_ingest_session,
    ingest_process,
    rejections,
    stored_count,
    stored_seqs,
    wait_for,
)
from tests.e2e.test_ingest import payload, reading


@pytest.fixture(scope="module")
def ingest(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestProcess]:
    discard_ingest_session(settings)
    proc = ingest_process(settings, tmp_path_factory.mktemp("ingest")).start()
    yield proc
    proc.stop(signal.SIGKILL)


def _good(device: str, seq: int) -> bytes:
    return payload(device, [reading(seq)])


BAD_INPUTS: dict[str, tuple[str, Any, int]] = {
    # kind: (reason, payload (bytes, or a function of the device id), readings it accounts for)
    "malformed JSON": ("malformed_json", b'{"device": "x", "boot": 1, "readings": [', 0),
    "not an object": ("invalid_batch", b"[1, 2, 3]", 0),
    "missing field": ("invalid_batch", lambda d: json.dumps({"device": d, "readings": []}), 0),
    "wrong type": (
        "invalid_reading",
        lambda d: payload(d, [{**reading(100), "seq": "100"}]),
        1,
    ),
    # (a NaN probe value is that probe's fault, not an error: tests/integration/test_books.py)
    "NaN battery": (
        "invalid_reading",
        lambda d: payload(d, [reading(100, battery_v=0.5)]).replace(b"0.5", b"NaN"),
        1,
    ),
    # Above the contract's largest batch (1 MiB), below the broker's limit (2 MiB): its
    # readings are still counted.
    "oversize": (
        "oversize",
        lambda d: payload(d, [reading(100)], pad="x" * 1_100_000),
        1,
    ),
    "spoofed device id": ("device_mismatch", lambda d: payload("someone-else", [reading(100)]), 1),
    "seq going backwards": (
        "seq_not_increasing",
        lambda d: payload(d, [reading(101), reading(100)]),
        1,
    ),
    "impossible latitude": (
        "invalid_reading",
        lambda d: payload(d, [reading(100, gps={"lat": 123.0, "lon": 2.0})]),
        1,
    ),
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_is_dead_lettered_and_ingest_goes_on(
    kind: str, ingest: IngestProcess, influx: InfluxClient, devices: Devices, prefix: str
) -> None:
    device = f"{prefix}-01"
    reason, bad, count = BAD_INPUTS[kind]
    body = bad(device) if callable(bad) else bad
    body = body if isinstance(body, bytes) else body.encode()
    devices.publish(device, [body, _good(device, 1)])
    # Seq 1 itself: a kept reading of the bad message (seq 101) may be stored first.
    wait_for(lambda: 1 in stored_seqs(influx, device), what="the good message behind it")
    dead = wait_for(lambda: rejections(influx, device), what="the dead letter")
    assert [(d["reason"], d["readings"]) for d in dead] == [(reason, count)]
    assert dead[0]["topic"] == f"coldtrace/v1/{device}/telemetry"
    if reason in ("invalid_reading", "seq_not_increasing"):  # the one reading is kept
        assert json.loads(dead[0]["payload"].replace("NaN", "null"))["up"] == 100_000
    else:
        assert dead[0]["payload"] == body[:1024].decode()
    assert dead[0]["detail"]
    assert f"rejected: reason={reason} device={device}" in ingest.logtext()
    if reason == "seq_not_increasing":  # the valid reading of the batch was kept
        assert stored_seqs(influx, device) == [1, 101]
    assert ingest.health()[0] == 200


def test_one_bad_reading_does_not_take_its_batch_down(
    ingest: IngestProcess, influx: InfluxClient, devices: Devices, prefix: str
) -> None:
    device = f"{prefix}-01"
    batch = [reading(1), {**reading(2), "probes": {"air": "warm"}}, reading(3)]
    devices.publish(device, [payload(device, batch)])
    wait_for(lambda: stored_count(influx, device) == 2)
    assert stored_seqs(influx, device) == [1, 3]
    dead = rejections(influx, device)
    assert [(d["reason"], d["seq"], d["readings"]) for d in dead] == [("invalid_reading", 2, 1)]
    assert json.loads(dead[0]["payload"])["probes"] == {"air": "warm"}


def test_known_seq_with_other_values_is_a_conflict_and_an_identical_repeat_is_not(
    ingest: IngestProcess, influx: InfluxClient, devices: Devices, prefix: str
) -> None:
    device = f"{prefix}-01"
    original = payload(device, [reading(1), reading(2)])
    devices.publish(device, [original])
    wait_for(lambda: stored_count(influx, device) == 2)
    tampered = payload(device, [reading(2, probes={"air": 9.9, "product": 9.9})])
    devices.publish(device, [original, tampered, _good(device, 3)])
    wait_for(lambda: stored_count(influx, device) == 3)
    dead = wait_for(lambda: rejections(influx, device))
    assert [(d["reason"], d["seq"]) for d in dead] == [("conflicting_duplicate", 2)]
    # The first version stays.
    rows = influx.rows(
        f"SELECT celsius FROM temperature WHERE device = '{device}' AND probe = 'air'"
    )
    assert [r["celsius"] for r in rows] == [3.5, 3.5, 3.5]

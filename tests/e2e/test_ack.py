"""End-to-end acknowledgement (contract v1.1): once a batch is stored, ingest tells each of
its devices, retained on `coldtrace/v1/<device>/ack`, the seqs it may delete; only ingest
writes that topic and only the device reads it (real Mosquitto with the shipped ACL, ingest
as a process, real InfluxDB)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coldtrace.contract import ack_topic, telemetry_topic
from coldtrace.devtools.services import LocalServices
from coldtrace.influx import InfluxClient
from coldtrace.settings import Settings
from tests.conftest import stored_count, wait_for
from tests.e2e.test_broker_security import DENIED, Probe, ingest_login, login
from tests.e2e.test_ingest import payload, reading


@pytest.fixture
def accounts(settings: Settings, prefix: str) -> tuple[str, str]:
    """Two devices' broker accounts, A and B."""
    a, b = f"{prefix}-a", f"{prefix}-b"
    LocalServices(settings).register_devices([a, b])
    return a, b


def send(device: Probe, name: str, body: bytes) -> None:
    assert device.publish(telemetry_topic(name), body) == "Success"


def acks(received: list[tuple[str, bytes]]) -> list[dict[str, int]]:
    return [json.loads(body) for _, body in received]


def test_the_ack_covers_what_is_stored_and_stops_below_a_gap(
    settings: Settings, influx: InfluxClient, start_ingest: Any, accounts: tuple[str, str]
) -> None:
    a, b = accounts
    start_ingest()
    device, other = login(settings, a), login(settings, b)
    try:
        device.subscribe(ack_topic(a))
        other.subscribe(ack_topic(a))  # B's subscription to A's ack is granted nothing
        assert (
            device.publish(ack_topic(a), b'{"from": 0, "seq": 99, "high": 99}', retain=True)
            == DENIED
        )

        send(device, a, payload(a, [reading(s) for s in range(1, 11)]))
        wait_for(
            lambda: acks(device.received) == [{"from": 1, "seq": 10, "high": 10}],
            30,
            "the first ack",
        )
        # 11..20 lost on the way (say, in a broker crash): the ack stays at 10.
        send(device, a, payload(a, [reading(s) for s in range(21, 31)]))
        wait_for(lambda: len(device.received) == 2, 30, "the second ack")
        assert acks(device.received)[1] == {"from": 1, "seq": 10, "high": 30}
        assert stored_count(influx, a) == 20
        # The device sends them again: now everything up to 30 is stored.
        send(device, a, payload(a, [reading(s) for s in range(11, 21)]))
        wait_for(lambda: len(device.received) == 3, 30, "the third ack")
        assert acks(device.received)[2] == {"from": 1, "seq": 30, "high": 30}
        # A batch of boot 2 before its clock is set is held on the server: covered too.
        held = [reading(s, ts=None, up=s * 1000) for s in range(31, 36)]
        send(device, a, payload(a, held, boot=2))
        wait_for(lambda: len(device.received) == 4, 30, "the fourth ack")
        assert acks(device.received)[3] == {"from": 1, "seq": 35, "high": 35}
        other.barrier()
        assert other.received == []
    finally:
        device.close()
        other.close()

    # Retained: the device's next connection is told at once.
    again, ingest = login(settings, a), ingest_login(settings)
    try:
        again.subscribe(ack_topic(a))
        wait_for(lambda: again.received, 10, "the retained ack")
        assert acks(again.received) == [{"from": 1, "seq": 35, "high": 35}]
        # Only ingest writes it.
        assert ingest.publish(ack_topic(a), None, retain=True) == "Success"
    finally:
        again.close()
        ingest.close()


def test_a_device_missing_its_first_seqs_is_told_where_ingest_starts(
    settings: Settings, influx: InfluxClient, start_ingest: Any, accounts: tuple[str, str]
) -> None:
    """The first batches of a device lost: the ack starts at the lowest seq ingest has, so the
    device keeps what lies below it and sends it again, and the ack then covers it all."""
    a, _ = accounts
    start_ingest()
    device = login(settings, a)
    try:
        device.subscribe(ack_topic(a))
        send(device, a, payload(a, [reading(s) for s in range(6, 11)]))
        wait_for(
            lambda: acks(device.received) == [{"from": 6, "seq": 10, "high": 10}],
            30,
            "the first ack",
        )
        send(device, a, payload(a, [reading(s) for s in range(1, 6)]))
        wait_for(lambda: len(device.received) == 2, 30, "the second ack")
        assert acks(device.received)[1] == {"from": 1, "seq": 10, "high": 10}
        assert stored_count(influx, a) == 10
    finally:
        device.close()

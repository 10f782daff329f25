"""Chaos: devices that keep their readings until ingest acknowledges them (contract v1.1,
simulators.publish.AckingDevice), while the broker, ingest or InfluxDB is killed with SIGKILL
and restarted. Every reading ends stored, once, and each device's books balance: sent =
stored + rejected + missing with rejected and missing 0."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from coldtrace.devtools.services import LocalServices, device_password
from coldtrace.influx import InfluxClient
from coldtrace.settings import Settings
from ingest.books import load_books
from simulators.fleet import batches, make_fleet
from simulators.publish import AckingDevice, wire
from tests.conftest import stored_count, stored_seqs, wait_for

T0 = 1_764_000_000_000
VANS = 4
READINGS = 1500  # per van
PER_BATCH = 10


@pytest.fixture
def vans(settings: Settings, prefix: str) -> Iterator[list[tuple[AckingDevice, list[Any]]]]:
    fleet = make_fleet(VANS, seed=11, prefix=prefix)
    LocalServices(settings).register_devices(v.device for v in fleet)
    out = []
    for van in fleet:
        device = AckingDevice(settings, van.device, device_password(settings, van.device), 1000)
        device.connect()
        out.append((device, list(batches(van, T0, READINGS, 1.0, PER_BATCH))))
    yield out
    for device, _ in out:
        device.close()


def send_all(vans: list[tuple[AckingDevice, list[Any]]]) -> None:
    for i in range(READINGS // PER_BATCH):
        for device, stream in vans:
            device.send(*wire(stream[i]))


def settle(vans: list[tuple[AckingDevice, list[Any]]], influx: InfluxClient) -> None:
    """Every van's readings acknowledged; then InfluxDB holds exactly those, books balanced."""
    for device, _ in vans:
        assert device.wait_acked(60, resend_after_s=3), f"{device.device}: {device.unacked()}"
    for device, _ in vans:
        assert device.acked == READINGS
        assert stored_seqs(influx, device.device) == list(range(1, READINGS + 1))
        books = load_books(influx, device.device)
        assert (books.sent, books.stored, books.rejected, books.missing) == (
            READINGS,
            READINGS,
            0,
            0,
        )
        assert books.agrees


def stored(influx: InfluxClient, prefix: str, at_least: int) -> Callable[[], bool]:
    return lambda: stored_count(influx, f"^{prefix}") >= at_least


def kill_broker(services: LocalServices) -> None:
    services.stop("mosquitto", signal.SIGKILL)
    services.start("mosquitto")


def test_broker_killed_with_thousands_queued_for_ingest(
    services: LocalServices, influx: InfluxClient, start_ingest: Any, vans: Any, prefix: str
) -> None:
    ingest = start_ingest()
    ingest.stop()  # its session queues on the broker
    send_all(vans)
    wait_for(lambda: all(d.unacked() == READINGS for d, _ in vans), 30, "everything sent")
    kill_broker(services)
    start_ingest()
    settle(vans, influx)


def test_ingest_killed_while_devices_publish(
    influx: InfluxClient, start_ingest: Any, vans: Any, prefix: str
) -> None:
    ingest = start_ingest()
    send_all(vans)
    wait_for(stored(influx, prefix, 1000), 30, "1,000 readings stored")
    ingest.stop(signal.SIGKILL)
    start_ingest()
    settle(vans, influx)


def test_influxdb_killed_while_devices_publish(
    services: LocalServices, influx: InfluxClient, start_ingest: Any, vans: Any, prefix: str
) -> None:
    start_ingest()
    send_all(vans)
    wait_for(stored(influx, prefix, 1000), 30, "1,000 readings stored")
    services.stop("influxdb", signal.SIGKILL)
    services.start("influxdb")
    settle(vans, influx)


def test_broker_ingest_and_influxdb_killed_in_turn(
    services: LocalServices, influx: InfluxClient, start_ingest: Any, vans: Any, prefix: str
) -> None:
    ingest = start_ingest()
    half = READINGS // PER_BATCH // 2
    for i in range(half):
        for device, stream in vans:
            device.send(*wire(stream[i]))
    wait_for(stored(influx, prefix, 1000), 30, "1,000 readings stored")
    kill_broker(services)
    wait_for(stored(influx, prefix, 2000), 60, "2,000 readings stored")
    ingest.stop(signal.SIGKILL)
    ingest = start_ingest()
    for i in range(half, READINGS // PER_BATCH):
        for device, stream in vans:
            device.send(*wire(stream[i]))
    wait_for(stored(influx, prefix, 4000), 60, "4,000 readings stored")
    services.stop("influxdb", signal.SIGKILL)
    services.start("influxdb")
    settle(vans, influx)

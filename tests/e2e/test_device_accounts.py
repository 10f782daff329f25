"""Device accounts (coldtrace/deliveries/accounts.py) through the API against the session's
real broker, started with the shipped config: the registry row and the broker account change
together; after rotate the old password fails and the new one works; after disable the device
cannot log in and its row stays; a gateway account publishes only for the boxes it carries
and reads only their config and ack topics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coldtrace.contract import ack_topic, config_topic, status_topic, telemetry_topic
from coldtrace.settings import Settings
from tests.conftest import Api, monitor_login, wait_for
from tests.e2e.test_broker_security import DENIED, Probe, ingest_login

OK = "Success"
UNHEARD = "No matching subscribers"  # accepted, and no one subscribed


def connack(settings: Settings, device: str, password: str) -> str:
    """The broker's answer to one login (the connection closed again)."""
    probe = Probe(settings, device, password)
    probe.close()
    assert probe.connack is not None
    return probe.connack


def logs_in(settings: Settings, device: str, password: str) -> None:
    """Wait until the broker has reloaded its accounts and takes this login (SIGHUP is
    handled asynchronously)."""
    wait_for(lambda: connack(settings, device, password) == OK, 10, f"{device} to log in")


def refused(settings: Settings, device: str, password: str) -> None:
    wait_for(lambda: connack(settings, device, password) == DENIED, 10, f"{device} refused")


def test_add_rotate_disable(api: Api, settings: Settings, prefix: str) -> None:
    device = f"{prefix}-box"
    created = api.ok("POST", "/devices", json={"id": device, "label": "van 7"})
    assert {k: created[k] for k in ("id", "label", "disabled", "carries")} == {
        "id": device,
        "label": "van 7",
        "disabled": None,
        "carries": None,
    }
    first = created["password"]
    assert len(first) == 32
    logs_in(settings, device, first)

    with_first = Probe(settings, device, first)
    try:
        rotated = api.ok("POST", f"/devices/{device}/rotate")
        assert rotated["device"] == device and rotated["password"] != first
        logs_in(settings, device, rotated["password"])
        # The reload that takes the new password has dropped the old one, and the session
        # still open with it (Mosquitto re-checks its clients on reload).
        assert connack(settings, device, first) == DENIED
        wait_for(lambda: not with_first.client.is_connected(), 10, "the old session to end")
    finally:
        with_first.close()

    connected = Probe(settings, device, rotated["password"])
    try:
        disabled = api.ok("POST", f"/devices/{device}/disable")
        assert disabled["id"] == device and disabled["disabled"] is not None
        refused(settings, device, rotated["password"])
        # Mosquitto re-checks the connected clients at the reload: the live session goes too.
        wait_for(lambda: not connected.client.is_connected(), 10, "the live session to end")
    finally:
        connected.close()
    # The row and its history stay; a disabled device is not rotated back in.
    assert api.ok("GET", f"/devices/{device}")["disabled"] == disabled["disabled"]
    again = api.client.post(f"/api/v1/devices/{device}/rotate", headers=api.admin)
    assert again.status_code == 409, again.text
    assert connack(settings, device, rotated["password"]) == DENIED


def test_refusals_leave_the_broker_alone(api: Api, settings: Settings, prefix: str) -> None:
    device = f"{prefix}-box"
    password = api.ok("POST", "/devices", json={"id": device})["password"]
    logs_in(settings, device, password)
    for body, status in [
        ({"id": device}, 409),  # exists: its password is not replaced
        ({"id": "monitor"}, 409),  # the broker's own accounts
        ({"id": "ingest"}, 409),
        ({"id": "a:b"}, 422),
        ({"id": f"{prefix}-gw", "carries": [f"{prefix}-nobox"]}, 409),
        ({"id": f"{prefix}-gw", "carries": []}, 422),
    ]:
        r = api.client.post("/api/v1/devices", json=body, headers=api.admin)
        assert r.status_code == status, (body, r.text)
    assert connack(settings, device, password) == OK
    assert (
        api.client.post(f"/api/v1/devices/{prefix}-none/rotate", headers=api.admin).status_code
        == 404
    )
    ids = [d["id"] for d in api.ok("GET", "/devices")["items"]]
    assert ids == [device]


@pytest.fixture
def gateway(api: Api, settings: Settings, prefix: str) -> Iterator[tuple[Probe, str, list[str]]]:
    """A gateway carrying boxes 1 and 2 (box 3 is registered too), logged in: its
    connection, its id, the three boxes."""
    boxes = [f"{prefix}-box{i}" for i in (1, 2, 3)]
    for box in boxes:
        api.ok("POST", "/devices", json={"id": box})
    gw = f"{prefix}-gw"
    created = api.ok("POST", "/devices", json={"id": gw, "carries": boxes[:2]})
    assert created["carries"] == boxes[:2]
    logs_in(settings, gw, created["password"])
    probe = Probe(settings, gw, created["password"])
    yield probe, gw, boxes
    probe.close()


def test_gateway_publishes_only_for_its_boxes(
    settings: Settings, gateway: tuple[Probe, str, list[str]]
) -> None:
    gw, name, (box1, box2, box3) = gateway
    monitor = Probe(settings, *monitor_login(settings))
    try:
        monitor.subscribe("coldtrace/v1/+/telemetry")
        monitor.subscribe("coldtrace/v1/+/status")
        assert gw.publish(telemetry_topic(box1), b"t1") == OK
        assert gw.publish(status_topic(box2), b"s2") == OK
        assert gw.publish(telemetry_topic(box3), b"t3") == DENIED
        assert gw.publish(telemetry_topic(name), b"own") == OK  # the device pattern
        assert gw.publish(config_topic(box1)) == DENIED
        assert gw.publish(ack_topic(box1)) == DENIED
        monitor.barrier()
        ours = {telemetry_topic(d) for d in (name, box1, box2, box3)} | {
            status_topic(d) for d in (name, box1, box2, box3)
        }
        assert [m for m in monitor.received if m[0] in ours] == [
            (telemetry_topic(box1), b"t1"),
            (status_topic(box2), b"s2"),
            (telemetry_topic(name), b"own"),
        ]
    finally:
        monitor.close()


def test_gateway_reads_only_its_boxes_config_and_ack(
    settings: Settings, gateway: tuple[Probe, str, list[str]]
) -> None:
    gw, _, (box1, _, box3) = gateway
    ingest = ingest_login(settings)
    try:
        for box in (box1, box3):
            config = ingest.publish(config_topic(box), b'{"interval_ms": 1000}', retain=True)
            ack = ingest.publish(ack_topic(box), b'{"from": 1, "seq": 5}', retain=True)
            assert (config, ack) == (UNHEARD, UNHEARD)
        for box in (box1, box3):
            gw.subscribe(config_topic(box))
            gw.subscribe(ack_topic(box))
        gw.barrier()
        assert sorted(gw.received) == [
            (ack_topic(box1), b'{"from": 1, "seq": 5}'),
            (config_topic(box1), b'{"interval_ms": 1000}'),
        ]
    finally:
        for box in (box1, box3):  # retained messages outlive the test: clear them
            ingest.publish(config_topic(box), b"", retain=True)
            ingest.publish(ack_topic(box), b"", retain=True)
        ingest.close()

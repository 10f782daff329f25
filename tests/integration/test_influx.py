"""The InfluxDB v1 HTTP API adapter against the real server."""

from __future__ import annotations

import pytest

from coldtrace.devtools.services import free_port
from coldtrace.influx import InfluxClient, InfluxRejected, InfluxUnavailable
from coldtrace.settings import Settings


def test_line_protocol_round_trip_at_ms_precision(influx: InfluxClient, prefix: str) -> None:
    influx.write(
        f"temperature,device={prefix},probe=air celsius=3.25,seq=7i 1764000000123\n"
        f"temperature,device={prefix},probe=air celsius=3.5,seq=8i 1764000001123".encode()
    )
    rows = influx.rows(f"SELECT celsius, seq FROM temperature WHERE device = '{prefix}'")
    assert [(r["time"], r["celsius"], r["seq"]) for r in rows] == [
        (1764000000123, 3.25, 7),
        (1764000001123, 3.5, 8),
    ]


def test_rewriting_a_point_is_idempotent(influx: InfluxClient, prefix: str) -> None:
    line = f"temperature,device={prefix},probe=air celsius=3.25,seq=7i 1764000000123".encode()
    for _ in range(3):
        influx.write(line)
    rows = influx.rows(f"SELECT count(celsius) FROM temperature WHERE device = '{prefix}'")
    assert rows[0]["count"] == 1


def test_a_refused_write_is_rejected_not_retried(influx: InfluxClient, prefix: str) -> None:
    with pytest.raises(InfluxRejected, match="HTTP 400"):
        influx.write(f"temperature,device={prefix} celsius=oops 1764000000123".encode())
    influx.write(f"typed,device={prefix} v=1.5 1764000000123".encode())
    with pytest.raises(InfluxRejected, match="field type conflict"):
        influx.write(f'typed,device={prefix} v="text" 1764000000124'.encode())


def test_a_server_that_is_down_is_unavailable(settings: Settings) -> None:
    down = InfluxClient(
        settings.model_copy(update={"influx_url": f"http://127.0.0.1:{free_port()}"})
    )
    with pytest.raises(InfluxUnavailable):
        down.write(b"m v=1 1")
    assert down.ping() is False

"""A throwaway run of the local servers, for the benchmarks: a fresh temporary run directory,
settings whose every server has a free loopback port, the servers started, and all of it
stopped and removed afterwards."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

from coldtrace.devtools.services import LocalServices, free_port
from coldtrace.influx import InfluxClient
from coldtrace.settings import Settings, load_settings


def scratch_settings(run_dir: Path, **overrides: object) -> Settings:
    """Settings for a run in `run_dir` on free loopback ports (MQTT plain, TLS and mutual TLS;
    InfluxDB), the InfluxDB database "bench"; `overrides` as for `load_settings`."""
    return load_settings(
        generate_secrets=True,  # the development secrets its servers and ingest log in with
        **{
            "run_dir": run_dir,
            "mqtt_port": free_port(),
            "mqtt_tls_port": free_port(),
            "mqtt_mtls_port": free_port(),
            "influx_url": f"http://127.0.0.1:{free_port()}",
            "influx_database": "bench",
            **overrides,
        },
    )


@contextmanager
def scratch_influx(**overrides: object) -> Iterator[tuple[Settings, InfluxClient]]:
    """An InfluxDB of its own in a fresh temporary run directory (`settings.run_dir`), with
    settings from `scratch_settings` and a client to it; both stopped, and the directory
    removed, on the way out."""
    run_dir = Path(tempfile.mkdtemp(prefix="coldtrace-bench-"))
    settings = scratch_settings(run_dir, **overrides)
    services = LocalServices(settings)
    try:
        services.up(["influxdb"])
        influx = InfluxClient(settings)
        try:
            yield settings, influx
        finally:
            influx.close()
    finally:
        services.down()
        shutil.rmtree(run_dir, ignore_errors=True)


def write_lines(influx: InfluxClient, lines: Iterable[str], batch: int = 5000) -> int:
    """InfluxDB line protocol (ms timestamps) written `batch` lines a request, as ingest
    writes its batches; returns the number of lines (points) written."""
    written = 0
    it = iter(lines)
    while chunk := list(islice(it, batch)):
        influx.write("\n".join(chunk).encode())
        written += len(chunk)
    return written

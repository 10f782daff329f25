"""Fixtures for integration and end-to-end tests: the real Mosquitto and InfluxDB, started by
the project's own `LocalServices` on free loopback ports, and ingest as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from coldtrace import signing
from coldtrace.contract import telemetry_topic
from coldtrace.devtools.ingest_process import IngestProcess, ingest_in
from coldtrace.devtools.scratch import scratch_settings
from coldtrace.devtools.services import (
    PG_APP,
    PG_OWNER,
    PG_SUPERUSER,
    LocalServices,
    device_password,
    free_port,
)
from coldtrace.devtools.wait import wait_for as wait_for  # the tests import it from here
from coldtrace.influx import InfluxClient, quote_string
from coldtrace.settings import Settings, load_settings
from simulators.publish import DeviceConnection

REPO = Path(__file__).resolve().parent.parent
# A recorded drive, Rungis to Paris across midnight UTC: the firmware's and the gateway's GNSS
# tests play it.
NMEA_FIXTURE = REPO / "tests" / "fixtures" / "nmea" / "rungis-to-paris-midnight.nmea"
# The API tests' world (fleet, closed_delivery): fixtures for the integration and e2e tests.
pytest_plugins = ["tests.world"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No COLDTRACE_* from the caller's shell, and no stray files in the working directory."""
    for name in list(os.environ):
        if name.startswith("COLDTRACE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    """A PDF's text in the order the PDF draws it (pdftotext -raw: Typst draws a table
    cell by cell), whitespace collapsed to single spaces. Not pdftotext's reading order by
    position: when two cells of a table row wrap, it reads their lines across the row
    (line 1 of each cell, then line 2), so a cell's text ("2026-01-05 09:10" /
    "(UTC+01:00)") came apart or not depending on its neighbours' widths (a random device
    id in the probe column)."""
    (tmp_path / "c.pdf").write_bytes(pdf)
    done = subprocess.run(
        ["pdftotext", "-raw", "c.pdf", "-"], cwd=tmp_path, capture_output=True, check=True
    )
    return " ".join(done.stdout.decode().split())


def run_coldtrace(
    *args: str, stdout: int = subprocess.PIPE, **env: str
) -> subprocess.CompletedProcess[str]:
    """`coldtrace ARGS` as a user runs it, in a process of its own: only the COLDTRACE_
    settings given here, none inherited from the test run. Its output is captured, unless
    ``stdout`` gives another file descriptor (then ``.stdout`` is None)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COLDTRACE_")}
    return subprocess.run(
        [sys.executable, "-m", "coldtrace.cli", *args],
        env={**clean, **env},
        cwd=REPO,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The session's services: one Mosquitto, one InfluxDB, each on a free port."""
    run_dir = tmp_path_factory.mktemp("run")
    s = scratch_settings(run_dir, influx_database="coldtrace_test")
    services = LocalServices(s)
    services.up()
    yield s
    services.down()


@pytest.fixture(scope="session")
def services(settings: Settings) -> LocalServices:
    return LocalServices(settings)


@pytest.fixture
def influx(settings: Settings) -> Iterator[InfluxClient]:
    client = InfluxClient(settings)
    yield client
    client.close()


@pytest.fixture
def prefix() -> str:
    """A device-id prefix of this test's own, so tests sharing the database never mix."""
    return "t" + uuid.uuid4().hex[:8]


def discard_ingest_session(settings: Settings) -> None:
    """Drop ingest's persistent session on the broker (a clean start, no expiry), so a test's
    first ingest does not receive what earlier tests queued for it: the broker makes a client's
    id its username, so every test's ingest has the one session of the ingest account."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    assert settings.mqtt_password is not None
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(settings.mqtt_client_id, settings.mqtt_password.get_secret_value())
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(settings.mqtt_host, settings.mqtt_port, clean_start=True)
    client.loop_start()
    try:
        assert connected.wait(10), "could not connect as ingest to discard its session"
    finally:
        client.disconnect()
        client.loop_stop()


def monitor_login(settings: Settings) -> tuple[str, str]:
    """(username, password) of the broker's read-only monitor account (deploy/mosquitto/acl),
    for tests that watch what the broker hands out while ingest holds its own session."""
    LocalServices(settings).register_devices(["monitor"])
    return "monitor", device_password(settings, "monitor")


def ingest_process(settings: Settings, workdir: Path, **env: str) -> IngestProcess:
    """`coldtrace ingest` in `workdir` (`ingest_in`), storing a batch after 20 ms: the tests
    wait on what it stored."""
    return ingest_in(settings, workdir, **{"COLDTRACE_INGEST_BATCH_DELAY_MS": "20", **env})


@pytest.fixture
def start_ingest(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., IngestProcess]]:
    started: list[IngestProcess] = []

    def start(**env: str) -> IngestProcess:
        if not started:
            discard_ingest_session(settings)
        proc = ingest_process(settings, tmp_path, **env)
        started.append(proc)  # before start(): a process that never gets healthy is killed too
        return proc.start()

    yield start
    for p in started:
        if p.proc is not None and p.proc.poll() is None:
            p.stop(signal.SIGKILL)


class Devices:
    """Real device connections (per-device broker credentials) for publishing test data."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conns: dict[str, DeviceConnection] = {}

    def __call__(self, device: str) -> DeviceConnection:
        if device not in self.conns:
            LocalServices(self.settings).register_devices([device])
            conn = DeviceConnection(
                self.settings, device, device_password(self.settings, device), max_inflight=200
            )
            conn.connect()
            self.conns[device] = conn
        return self.conns[device]

    def publish(self, device: str, payloads: list[bytes], topic: str | None = None) -> None:
        """Publish at QoS 1 and wait for every PUBACK."""
        conn = self(device)
        infos = [conn.client.publish(topic or telemetry_topic(device), p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=30)
            assert info.is_published(), f"no PUBACK for message {info.mid}"

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


@pytest.fixture
def devices(settings: Settings) -> Iterator[Devices]:
    d = Devices(settings)
    yield d
    d.close()


def stored_count(influx: InfluxClient, device_regex: str) -> int:
    rows = influx.rows(f"SELECT count(seq) FROM device_health WHERE device =~ /{device_regex}/")
    return int(rows[0]["count"]) if rows else 0


def stored_seqs(influx: InfluxClient, device: str) -> list[int]:
    rows = influx.rows(f"SELECT seq FROM device_health WHERE device = {quote_string(device)}")
    return sorted(int(r["seq"]) for r in rows)


def rejections(influx: InfluxClient, device: str) -> list[dict[str, Any]]:
    return influx.rows(f"SELECT * FROM rejected WHERE device = {quote_string(device)}")


# -- the relational store: SQLite and PostgreSQL ---------------------------------------------


def pg_url(pg: Settings, database: str, flavour: str = "sqlalchemy", role: str = PG_APP) -> str:
    """URL of a database on the session's PostgreSQL (for SQLAlchemy, or plain libpq), as
    the application's role unless another is named (coldtrace.devtools.services: PG_*)."""
    url = pg.local_postgres_url.rsplit("/", 1)[0] + "/" + database
    url = url.replace(f"//{PG_APP}@", f"//{role}@")
    return url.replace("+psycopg", "") if flavour == "libpq" else url


@pytest.fixture(scope="session")
def postgres() -> Iterator[Settings]:
    """The session's PostgreSQL, on a free port, with a template database owned and migrated
    by the owner role, the application's role granted its rights (as in production)."""
    import shutil
    import tempfile

    import psycopg

    from coldtrace.db import upgrade

    # Not under pytest's 0700 temp root: as root the server runs as user postgres.
    run_dir = Path(tempfile.mkdtemp(prefix="coldtrace-pg-"))
    run_dir.chmod(0o711)
    s = load_settings(run_dir=run_dir, postgres_port=free_port())
    services = LocalServices(s)
    try:
        services.up(["postgresql"])
        with psycopg.connect(pg_url(s, "postgres", "libpq", PG_SUPERUSER), autocommit=True) as c:
            c.execute(f"CREATE DATABASE coldtrace_template OWNER {PG_OWNER}")
        upgrade(pg_url(s, "coldtrace_template", role=PG_OWNER), PG_APP)
        yield s
    finally:
        services.down()
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated store of the test's own, on SQLite and on PostgreSQL (as the
    application's role, which owns nothing)."""
    if request.param == "sqlite":
        from coldtrace.db import upgrade

        url = f"sqlite:///{tmp_path / 'store.db'}"
        upgrade(url)
        yield url
        return
    import psycopg

    pg: Settings = request.getfixturevalue("postgres")
    name = "t" + uuid.uuid4().hex[:12]
    admin = pg_url(pg, "postgres", "libpq", PG_SUPERUSER)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name} TEMPLATE coldtrace_template OWNER {PG_OWNER}")
    yield pg_url(pg, name)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"DROP DATABASE {name} WITH (FORCE)")


class Api:
    """The API application on a test's own store (TestClient: the real app, in process)."""

    def __init__(self, settings: Settings) -> None:
        from fastapi.testclient import TestClient

        from coldtrace.bootstrap import api_app

        self.settings = settings
        self.app = api_app(settings)
        self.client = TestClient(self.app)
        self.admin = self.key("admin")

    def key(self, role: str, customer: str | None = None) -> dict[str, str]:
        """Headers carrying a new key of that role (as `coldtrace keys create` makes)."""
        from coldtrace.api.keys import Role, create_key
        from coldtrace.deliveries.store import Store

        with self.app.state.sessions() as session:
            new = create_key(Store(session, "test"), Role(role), customer)
            session.commit()
        return {"Authorization": f"Bearer {new.key}"}

    def ok(self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        r = self.client.request(method, f"/api/v1{path}", headers=headers or self.admin, **kw)
        assert r.status_code in (200, 201), f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def close(self) -> None:
        self.client.close()
        self.app.state.source.close()
        self.app.state.influx.close()
        self.app.state.engine.dispose()


@pytest.fixture
def api(settings: Settings, database_url: str) -> Iterator[Api]:
    a = Api(settings.model_copy(update={"database_url": database_url}))
    yield a
    a.close()


@contextmanager
def rotated(api: Api, retired_public_keys: str) -> Iterator[Api]:
    """The same installation (store, services) after its signing key was rotated as
    docs/deploy.md says: a new COLDTRACE_CERTIFICATE_SIGNING_KEY, and
    COLDTRACE_CERTIFICATE_RETIRED_PUBLIC_KEYS set to `retired_public_keys` (PEM, or "").
    Validated afresh, as at start-up (model_copy would keep the old key)."""
    a = Api(
        Settings.model_validate(
            api.settings.model_dump()
            | {
                "certificate_signing_key": signing.new_private_key(),
                "certificate_retired_public_keys": retired_public_keys,
            }
        )
    )
    try:
        yield a
    finally:
        a.close()


def act_on_delivery(database_url: str, delivery_id: int, action: str, at_ms: int) -> None:
    """A lifecycle action (coldtrace.deliveries.lifecycle.Action value) on a delivery, at
    event time."""
    from sqlalchemy.orm import Session

    from coldtrace.db import make_engine
    from coldtrace.deliveries.lifecycle import Action
    from coldtrace.deliveries.models import Delivery
    from coldtrace.deliveries.store import Store

    engine = make_engine(database_url)
    with Session(engine) as session:
        store = Store(session, "test", clock=lambda: at_ms)
        store.transition(session.get_one(Delivery, delivery_id), Action(action), at_ms, "test")
        session.commit()
    engine.dispose()


def put_on_delivery(
    database_url: str, device: str, start_ms: int, *actions: str, profile: str | None = None
) -> int:
    """A van whose chilled compartment ``device``'s product probe measures from ``start_ms``,
    and a delivery there planned from then (of ``profile``, else the compartment's), taken
    through ``actions`` at ``start_ms``: its id."""
    from sqlalchemy.orm import Session

    from coldtrace.db import make_engine
    from coldtrace.deliveries.store import DeliveryPlan, Store

    engine = make_engine(database_url)
    with Session(engine) as session:
        store = Store(session, "test", clock=lambda: start_ms)
        store.create_customer(f"{device}-customer", "Customer")
        store.create_vehicle(f"{device}-vehicle", "Van", {"chiller": "chilled"})
        store.create_device(device, "logger")
        store.assign(device, "product", f"{device}-vehicle", "chiller", start_ms)
        plan = DeliveryPlan(
            customer_id=f"{device}-customer",
            vehicle_id=f"{device}-vehicle",
            compartment="chiller",
            pickup_address="Depot",
            pickup_lat=48.85,
            pickup_lon=2.35,
            dropoff_address="Shop",
            dropoff_lat=48.86,
            dropoff_lon=2.36,
            planned_start_ms=start_ms,
            planned_end_ms=start_ms + 4 * 3600_000,
            profile=profile,
        )
        delivery = store.create_delivery(plan)
        session.commit()
        delivery_id = delivery.id
    engine.dispose()
    for action in actions:
        act_on_delivery(database_url, delivery_id, action, start_ms)
    return delivery_id


class WebhookReceiver:
    """A real local HTTP server taking webhook POSTs (the third-party receiver of alerts):
    each call's headers and body, in ``received``; the next ``fail_next`` calls get 503."""

    def __init__(self) -> None:
        self.fail_next = 0
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    self.send_response(503)
                else:
                    receiver.received.append({"headers": dict(self.headers), "body": body})
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

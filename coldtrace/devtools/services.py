"""Local Mosquitto, InfluxDB (and PostgreSQL) for development and tests, from the system
packages.

`up` renders the configs kept in ``deploy/`` into the run directory, starts each server bound
to 127.0.0.1 on the ports from settings, and waits until it answers. `down` stops exactly the
processes it started: each pid file is checked against the process's command line first.
"""

from __future__ import annotations

import glob
import hashlib
import hmac
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from coldtrace.broker_accounts import BrokerAccounts
from coldtrace.influx import InfluxClient
from coldtrace.settings import INGEST_ACCOUNT, Settings
from coldtrace.tls import ensure_development_ca

log = logging.getLogger(__name__)

REPO_DIR = Path(__file__).resolve().parents[2]
INGEST_MQTT_USER = INGEST_ACCOUNT
RELOAD_PROBE = "coldtrace-reload-probe"  # a development broker account: see _reload_accounts


class ServiceError(Exception):
    pass


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    binary: str
    packages: tuple[str, ...]
    argv: Callable[[Path], list[str]]
    config_name: str
    log_name: str
    port_setting: str
    stop_signal: signal.Signals = signal.SIGTERM


def postgres_bin(name: str) -> str:
    """A PostgreSQL server program: Debian keeps them off PATH, per major version."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    return found[-1] if found else shutil.which(name) or name


def _postgres_argv(conf: Path) -> list[str]:
    return [postgres_bin("postgres"), "-D", str(conf.parent / "data"), "-c", f"config_file={conf}"]


SERVICES = {
    "mosquitto": ServiceSpec(
        "mosquitto",
        "mosquitto",
        ("mosquitto", "mosquitto-clients"),
        lambda conf: ["mosquitto", "-c", str(conf)],
        "mosquitto.conf",
        "mosquitto.log",
        "COLDTRACE_MQTT_PORT",
    ),
    "influxdb": ServiceSpec(
        "influxdb",
        "influxd",
        ("influxdb",),
        lambda conf: ["influxd", "-config", str(conf)],
        "influxdb.conf",
        "influxdb.out",
        "COLDTRACE_INFLUX_URL",
    ),
    # Not started by default (the relational store defaults to SQLite): `services up postgresql`.
    "postgresql": ServiceSpec(
        "postgresql",
        "postgres",
        ("postgresql",),
        _postgres_argv,
        "postgresql.conf",
        "postgresql.out",
        "COLDTRACE_POSTGRES_PORT",
        signal.SIGINT,  # "fast" shutdown; SIGTERM would wait for every client to leave
    ),
}
DEFAULT_SERVICES = ("mosquitto", "influxdb")
POSTGRES_USER = "postgres"  # the server refuses to run as root: as root, run it as this user
# The local cluster's roles (docs/deploy.md): the bootstrap superuser creates the others and
# the database; the owner owns the database and its schema and runs the migrations; the
# application connects as a role that owns nothing and is no superuser.
PG_SUPERUSER = "postgres"
PG_OWNER = "coldtrace_owner"
PG_APP = "coldtrace"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    """No one listens there (connections of a server we just stopped, in TIME_WAIT, are fine:
    the servers bind with SO_REUSEADDR too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ensure_packages(specs: Iterable[ServiceSpec]) -> None:
    missing = sorted({p for s in specs if not Path(_binary(s)).is_file() for p in s.packages})
    if not missing:
        return
    if os.geteuid() != 0:
        raise ServiceError(
            f"missing system packages {' '.join(missing)}: run `sudo apt-get install -y "
            f"{' '.join(missing)}` (or run as root and coldtrace installs them)"
        )
    log.warning("installing system packages: %s", " ".join(missing))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    # policy-rc.d keeps the packages' own system services from starting: we run our own.
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True, env=env
    )


def _binary(spec: ServiceSpec) -> str:
    if spec.name == "postgresql":
        return postgres_bin(spec.binary)
    return shutil.which(spec.binary) or spec.binary


def device_password(settings: Settings, device: str) -> str:
    """Development-only broker password of a simulated device, derived from the dev key."""
    if settings.dev_device_key is None:
        raise ServiceError("COLDTRACE_DEV_DEVICE_KEY is not set: run `coldtrace services up`")
    key = settings.dev_device_key.get_secret_value().encode()
    return hmac.new(key, device.encode(), hashlib.sha256).hexdigest()[:32]


class LocalServices:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_dir = settings.run_dir.resolve()
        influx = urlsplit(settings.influx_url)
        self.influx_host = influx.hostname or "127.0.0.1"
        self.influx_port = influx.port or 8086

    def _dir(self, name: str) -> Path:
        return self.run_dir / name

    def _pidfile(self, name: str) -> Path:
        return self._dir(name) / f"{name}.pid"

    def _conf(self, spec: ServiceSpec) -> Path:
        return self._dir(spec.name) / spec.config_name

    # -- lifecycle ---------------------------------------------------------------------------

    def up(self, names: Iterable[str] = DEFAULT_SERVICES) -> None:
        specs = [SERVICES[n] for n in names]
        ensure_packages(specs)
        for spec in specs:
            self.start(spec.name)
        if "influxdb" in [s.name for s in specs]:
            client = InfluxClient(self.settings)
            try:
                client.create_database()
            finally:
                client.close()
        if "postgresql" in [s.name for s in specs]:
            self._create_postgres_database()

    def start(self, name: str) -> None:
        spec = SERVICES[name]
        if self.pid(name) is not None:
            log.info("%s already running (pid %s)", name, self.pid(name))
            return
        for setting, port in self._listeners(name).items():
            if not _port_free(port):
                raise ServiceError(
                    f"{name}: port {port} on 127.0.0.1 is taken by another process; stop it, "
                    f"or pick another port ({setting})"
                )
        self._dir(name).mkdir(parents=True, exist_ok=True)
        conf = self._render(spec)
        logfile = (self._dir(name) / f"{name}.out").open("ab")
        proc = subprocess.Popen(
            spec.argv(conf),
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # our Ctrl-C must not kill the servers behind our back
            **self._run_as(name),  # type: ignore[call-overload]
        )
        self._pidfile(name).write_text(str(proc.pid))
        self._wait_ready(name, proc)

    def stop(self, name: str, sig: signal.Signals | None = None, timeout_s: float = 15) -> bool:
        """Stop the server ``name`` we started: ``sig`` (default its stop signal), SIGKILL
        after ``timeout_s`` s; returns once it has ended (``_exited``: every thread, and
        reaped if our child), False when it was not running."""
        sig = sig or SERVICES[name].stop_signal
        pid = self.pid(name)
        if pid is None:
            self._pidfile(name).unlink(missing_ok=True)
            return False
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while not self._exited(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self._exited(pid):
            log.warning("%s (pid %d) ignored %s; killing it", name, pid, sig.name)
            os.kill(pid, signal.SIGKILL)
            while not self._exited(pid):
                time.sleep(0.05)
        self._pidfile(name).unlink(missing_ok=True)
        return True

    def down(self) -> list[str]:
        return [name for name in SERVICES if self.stop(name)]

    def reload(self, name: str) -> None:
        pid = self.pid(name)
        if pid is not None:
            os.kill(pid, signal.SIGHUP)

    def status(self) -> list[dict[str, object]]:
        """The default services, and the optional ones once they were set up here."""
        rows: list[dict[str, object]] = []
        for name in SERVICES:
            if name not in DEFAULT_SERVICES and not self._dir(name).exists():
                continue
            pid = self.pid(name)
            port = self.port(name)
            rows.append(
                {
                    "service": name,
                    "state": "running" if pid else "stopped",
                    "pid": pid,
                    "address": f"127.0.0.1:{port}",
                    "log": str(self._dir(name) / SERVICES[name].log_name),
                }
            )
        return rows

    def pid(self, name: str) -> int | None:
        """Pid of the server we started, or None: a stale or reused pid does not count."""
        try:
            pid = int(self._pidfile(name).read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        conf = str(self._conf(SERVICES[name])).encode()
        return pid if conf in cmdline and self._alive(pid) else None

    def port(self, name: str) -> int:
        return {
            "mosquitto": self.settings.mqtt_port,
            "influxdb": self.influx_port,
            "postgresql": self.settings.postgres_port,
        }[name]

    def _listeners(self, name: str) -> dict[str, int]:
        """Every port the server listens on, by the setting that picks it: Mosquitto's TLS
        listeners too, which would otherwise fail its start with a bare "Address already in
        use" naming none."""
        ports = {SERVICES[name].port_setting: self.port(name)}
        if name == "mosquitto":
            ports["COLDTRACE_MQTT_TLS_PORT"] = self.settings.mqtt_tls_port
            ports["COLDTRACE_MQTT_MTLS_PORT"] = self.settings.mqtt_mtls_port
        return ports

    @staticmethod
    def _alive(pid: int) -> bool:
        """Whether a thread of ``pid`` still runs. A multi-threaded server's (influxd's) main
        thread shows as a zombie as soon as it has exited, while its other threads are still
        exiting; a zombie with no other thread left has exited, its parent yet to reap it."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            threads = len(os.listdir(f"/proc/{pid}/task"))
        except FileNotFoundError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z" or threads > 1

    @classmethod
    def _exited(cls, pid: int) -> bool:
        """Whether ``pid`` has ended: our own child (tests, the demo: `up` and `down` in one
        process) once reaped here, which also takes every thread having exited (unreaped, it
        would stay a zombie in /proc); another's once no thread of it runs (its parent
        reaps it)."""
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return not cls._alive(pid)
        return reaped == pid

    # -- configuration -----------------------------------------------------------------------

    def _render(self, spec: ServiceSpec) -> Path:
        template = (REPO_DIR / "deploy" / spec.name / f"{spec.config_name}.template").read_text()
        values = {
            "run_dir": str(self.run_dir),
            "repo_dir": str(REPO_DIR),
            "mqtt_host": "127.0.0.1",
            "mqtt_port": str(self.settings.mqtt_port),
            "mqtt_tls_port": str(self.settings.mqtt_tls_port),
            "mqtt_mtls_port": str(self.settings.mqtt_mtls_port),
            "tls_dir": str(self.tls_dir),
            # Mosquitto drops root to user `mosquitto`, who could not read our run directory.
            "user_line": "user root" if os.geteuid() == 0 else "",
            "influx_host": "127.0.0.1",
            "influx_port": str(self.influx_port),
            "influx_rpc_port": str(free_port()),
            "postgres_port": str(self.settings.postgres_port),
        }
        if spec.name == "postgresql":
            self._init_postgres()
        if spec.name == "mosquitto":
            (self._dir(spec.name) / "data").mkdir(parents=True, exist_ok=True)
            self._ensure_passwd()
            ensure_development_ca(self.tls_dir)
        conf = self._conf(spec)
        conf.write_text(template.format(**values))
        return conf

    @property
    def tls_dir(self) -> Path:
        """The development CA and the broker's certificate (coldtrace/tls.py)."""
        return self._dir("mosquitto") / "tls"

    @property
    def broker_accounts(self) -> BrokerAccounts:
        """The development broker's password and ACL files (coldtrace/broker_accounts.py)."""
        return BrokerAccounts(self.settings.broker_files)

    def _ensure_passwd(self) -> None:
        if self.settings.mqtt_username is None or self.settings.mqtt_password is None:
            raise ServiceError("COLDTRACE_MQTT_USERNAME/PASSWORD are not set")
        password = self.settings.mqtt_password.get_secret_value()
        self.broker_accounts.ensure_passwords(
            {self.settings.mqtt_username: password, self.settings.mqtt_alerts_username: password}
        )
        # The shipped ACL, with the gateway accounts `coldtrace devices` generated.
        self.broker_accounts.install_rules((REPO_DIR / "deploy" / "mosquitto" / "acl").read_text())

    def register_devices(self, devices: Iterable[str]) -> None:
        """Give simulated devices their broker accounts with their derived passwords
        (development only; a password `coldtrace devices` gave one is replaced) and reload."""
        accounts = self.broker_accounts
        added = accounts.ensure_passwords({d: device_password(self.settings, d) for d in devices})
        if added:
            self._reload_accounts()

    def _reload_accounts(self, timeout_s: float = 10) -> None:
        """Make Mosquitto re-read its password file and return once it has: it re-reads on
        SIGHUP, asynchronously. A probe account gets a new password in the same file, after
        the accounts just written; once that password logs in, the whole file is loaded. (A
        device's own login cannot probe it: with use_username_as_clientid it would take over
        that device's session.) ServiceError if it does not within ``timeout_s``. Not
        running here (not started yet, or a broker of its own): it reads them when it starts."""
        if self.pid("mosquitto") is None:
            return
        password = secrets.token_urlsafe(16)
        self.broker_accounts.set_passwords({RELOAD_PROBE: password})
        self.reload("mosquitto")
        login = [
            shutil.which("mosquitto_pub") or "mosquitto_pub",
            *("-h", "127.0.0.1", "-p", str(self.settings.mqtt_port)),
            *("-u", RELOAD_PROBE, "-P", password, "-t", f"{RELOAD_PROBE}/ping", "-n"),
        ]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if subprocess.run(login, capture_output=True, check=False).returncode == 0:
                return
            time.sleep(0.02)
        raise ServiceError(
            f"mosquitto did not take its new accounts within {timeout_s:.0f} s of SIGHUP; see "
            f"{self._dir('mosquitto')}/mosquitto.log"
        )

    # -- readiness ---------------------------------------------------------------------------

    def _wait_ready(self, name: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._pidfile(name).unlink(missing_ok=True)
                raise ServiceError(
                    f"{name} exited with code {proc.returncode} at start; see "
                    f"{self._dir(name)}/{name}.out and {name}.log"
                )
            if self._ready(name):
                return
            time.sleep(0.1)
        raise ServiceError(f"{name} did not answer within {timeout_s:.0f}s; see {self._dir(name)}")

    def _ready(self, name: str) -> bool:
        if name == "postgresql":
            return (
                subprocess.run(
                    [
                        postgres_bin("pg_isready"),
                        "-q",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(self.port(name)),
                    ],
                    check=False,
                ).returncode
                == 0
            )
        if name == "mosquitto":
            try:
                with socket.create_connection(("127.0.0.1", self.settings.mqtt_port), 0.5):
                    return True
            except OSError:
                return False
        try:
            return (
                httpx.get(f"http://127.0.0.1:{self.influx_port}/ping", timeout=0.5).status_code
                == 204
            )
        except httpx.HTTPError:
            return False

    # -- PostgreSQL ----------------------------------------------------------------------------

    def _run_as(self, name: str) -> dict[str, object]:
        """Popen arguments that drop root for PostgreSQL, which refuses to run as root."""
        if name != "postgresql" or os.geteuid() != 0:
            return {}
        return {"user": POSTGRES_USER, "group": POSTGRES_USER, "extra_groups": []}

    def _init_postgres(self) -> None:
        """A cluster of our own under the run directory (initdb), trusting loopback only:
        this server is for development and tests, never production."""
        home = self._dir("postgresql")
        run_as = self._run_as("postgresql")
        if run_as:
            shutil.chown(home, POSTGRES_USER, POSTGRES_USER)
            postgres_uid = pwd.getpwnam(POSTGRES_USER).pw_uid
            for parent in home.parents:
                st = parent.stat()
                if not (st.st_mode & 0o001 or st.st_uid == postgres_uid):
                    raise ServiceError(
                        f"postgresql: user {POSTGRES_USER} cannot reach {home} ({parent} is not "
                        "traversable): pick a COLDTRACE_RUN_DIR whose parents are (chmod o+x)"
                    )
        (home / "pg_hba.conf").write_text(
            "# coldtrace's development PostgreSQL: local connections only\n"
            "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        )
        if (home / "data" / "PG_VERSION").exists():
            return
        result = subprocess.run(
            [
                postgres_bin("initdb"),
                "-D",
                str(home / "data"),
                "-U",
                PG_SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
            **run_as,  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            raise ServiceError(f"postgresql: initdb failed: {result.stderr.strip()[-500:]}")

    def _create_postgres_database(self) -> None:
        """The database coldtrace, owned by the owner role, migrated by it, and the
        application's role granted its rights (docs/deploy.md does the same by hand)."""
        import psycopg

        from coldtrace.db import upgrade

        try:
            conn = psycopg.connect(
                host="127.0.0.1",
                port=self.port("postgresql"),
                user=PG_SUPERUSER,
                dbname="postgres",
                autocommit=True,
            )
        except psycopg.OperationalError as exc:
            if f'role "{PG_SUPERUSER}" does not exist' not in str(exc):
                raise
            raise ServiceError(
                f"postgresql: the cluster in {self._dir('postgresql') / 'data'} predates the "
                "separate owner and application roles: stop it (coldtrace services down "
                "postgresql), remove that directory, and start it again"
            ) from None
        with conn:
            for role in (PG_OWNER, PG_APP):
                if not conn.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)
                ).fetchone():
                    conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'coldtrace'").fetchone():
                conn.execute(f"CREATE DATABASE coldtrace OWNER {PG_OWNER}")
        upgrade(self.settings.local_postgres_owner_url, PG_APP)

"""`coldtrace ingest` as a child process: how the demo, the tests and the benchmark run it.

The child gets its settings through the environment (the same COLDTRACE_ variables an
operator would set), so what runs is exactly the command a user runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from coldtrace.devtools.services import free_port
from coldtrace.settings import ENV_PREFIX, Settings


class IngestFailed(Exception):
    """The ingest process exited or never became healthy; the message carries its log tail."""


class IngestProcess:
    def __init__(self, settings: Settings, log: Path, **env: str) -> None:
        self.health_port = settings.ingest_health_port
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        self.env = {
            **inherited,
            f"{ENV_PREFIX}RUN_DIR": str(settings.run_dir),
            f"{ENV_PREFIX}MQTT_HOST": settings.mqtt_host,
            f"{ENV_PREFIX}MQTT_PORT": str(settings.mqtt_port),
            f"{ENV_PREFIX}INFLUX_URL": settings.influx_url,
            f"{ENV_PREFIX}INFLUX_DATABASE": settings.influx_database,
            f"{ENV_PREFIX}INGEST_HEALTH_PORT": str(settings.ingest_health_port),
            f"{ENV_PREFIX}DATABASE_URL": settings.sqlalchemy_url,
            **env,
        }
        if f"{ENV_PREFIX}INGEST_HEALTH_PORT" in env:
            self.health_port = int(env[f"{ENV_PREFIX}INGEST_HEALTH_PORT"])
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, wait_healthy: bool = True, timeout_s: float = 30) -> IngestProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "coldtrace.cli", "ingest"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if wait_healthy:
            self.wait_healthy(timeout_s)
        return self

    def wait_healthy(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while self.health()[0] != 200:
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise IngestFailed(f"ingest not healthy after {timeout_s:.0f}s:\n{self.logtext()}")
            time.sleep(0.05)

    def check_running(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise IngestFailed(f"ingest exited with {self.proc.returncode}:\n{self.logtext()}")

    def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of /health; (0, {}) while it does not answer yet."""
        self.check_running()
        try:
            r = httpx.get(f"http://127.0.0.1:{self.health_port}/health", timeout=2)
        except httpx.HTTPError:
            return 0, {}
        body: dict[str, Any] = json.loads(r.text) if r.text else {}
        return r.status_code, body

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"http://127.0.0.1:{self.health_port}/metrics", timeout=2).text
        return {k: float(v) for k, v in (line.split() for line in text.splitlines())}

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 60) -> int | None:
        """Signal the process and wait for it; SIGKILL if it does not end in time."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise IngestFailed(f"ingest ignored {sig.name} for {timeout_s:.0f}s") from None
        return proc.returncode

    def logtext(self) -> str:
        return self.log.read_text(errors="replace")[-5000:] if self.log.exists() else ""


def ingest_in(settings: Settings, workdir: Path, **env: str) -> IngestProcess:
    """`coldtrace ingest` with a health port of its own and its held-readings db
    (`workdir/ingest.db`), writing to `workdir/ingest.log`; `env`: more COLDTRACE_ settings.
    Not started."""
    own = {
        f"{ENV_PREFIX}INGEST_HEALTH_PORT": str(free_port()),
        f"{ENV_PREFIX}DATABASE_URL": f"sqlite:///{workdir / 'ingest.db'}",
    }
    return IngestProcess(settings, workdir / "ingest.log", **{**own, **env})

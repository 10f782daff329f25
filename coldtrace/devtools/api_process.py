"""`coldtrace api` as a child process, with an admin key made by `coldtrace keys create`: how
the delivery-trace test and the trace benchmark run it, so what runs is exactly the commands
an operator runs. Settings go through the environment (COLDTRACE_ variables)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from coldtrace.devtools.services import free_port

REPO = Path(__file__).resolve().parents[2]


class ApiFailed(Exception):
    """The API process exited or never answered; the message says what to look at."""


class ApiProcess:
    def __init__(self, env: Mapping[str, str], log: Path | None = None) -> None:
        """``log``: the file the process writes its output to (None: discarded)."""
        self.env = dict(env)
        self.log = log
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.key = ""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def start(self, timeout_s: float = 30) -> ApiProcess:
        """Make the admin key, start the API and wait until /api/v1/health answers 200."""
        made = subprocess.run(
            [sys.executable, "-m", "coldtrace.cli", "keys", "create", "--role", "admin", "--json"],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        self.key = json.loads(made.stdout)[0]["key"]
        with open(self.log, "ab") if self.log else open(os.devnull, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "coldtrace.cli", "api", "--port", str(self.port)],
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while not self._answers():
            if time.monotonic() > deadline:
                self.stop()
                raise ApiFailed(f"coldtrace api did not answer in {timeout_s:.0f}s{self._tail()}")
            time.sleep(0.05)
        return self

    def call(self, method: str, path: str, *, json: Any = None) -> Any:
        """One request under /api/v1 with the admin key: the response body, or raises."""
        r = httpx.request(
            method, f"{self.base}/api/v1{path}", json=json, timeout=60, headers=self.headers
        )
        r.raise_for_status()
        return r.json()

    def _tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return ":\n" + self.log.read_text(errors="replace")[-5000:]

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise ApiFailed(f"coldtrace api exited with {self.proc.returncode}{self._tail()}")
        try:
            return httpx.get(f"{self.base}/api/v1/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

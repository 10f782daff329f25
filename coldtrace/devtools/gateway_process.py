"""`coldtrace gateway run --config FILE` as a child process, as the systemd unit runs it: how
the gateway's end-to-end tests and its benchmark run it. Its settings are all in the config
file, so no COLDTRACE_ variable of the caller's reaches it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from coldtrace.devtools.services import REPO_DIR
from coldtrace.devtools.wait import wait_for
from coldtrace.settings import ENV_PREFIX

COMMAND = [sys.executable, "-m", "coldtrace.cli", "gateway"]


class GatewayProcess:
    """The gateway process, its output in `log`."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}

    def start(self) -> GatewayProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "coldtrace.cli",
                    "gateway",
                    "run",
                    "--config",
                    str(self.config),
                ],
                env=self.env,
                cwd=REPO_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Signal the process and wait (30 s at most) for its exit status."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        rc = self.proc.wait(30)
        self.proc = None
        return rc

    def _status(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*COMMAND, "status", "--config", str(self.config), *args],
            env=self.env,
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def status(self) -> dict[str, Any]:
        """`coldtrace gateway status --json`: its ports and the spool's devices."""
        out = self._status("--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    def wait_open(self, opens: int = 1) -> None:
        """Until every port has been opened `opens` times: pyserial empties a tty's input
        when it opens it, as a UART's receiver starts empty, so the writers wait for it."""

        def opened() -> bool:
            if self._status().returncode:
                return False  # no spool yet
            ports = self.status()["ports"]
            return bool(ports) and all(p.get("opens", 0) >= opens for p in ports.values())

        wait_for(opened, 30, f"the gateway's ports opened ({opens})")

    def logtext(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

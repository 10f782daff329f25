"""One ingest per MQTT session: a lock file in the run directory, held while ingest runs.

Two ingest processes with the same client id take the broker session from each other (the
broker drops the older connection each time the other reconnects). The lock is an
exclusive `fcntl.flock` on `<run_dir>/ingest-<client id>.lock`: the kernel releases it when
its holder exits, however it exits, so a lock is never stale; the file holds the holder's pid
for the message.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import IO

from coldtrace.settings import Settings


class AlreadyRunning(Exception):
    """Another process holds this session's lock; `pid` is its process id (0 if unknown)."""

    def __init__(self, pid: int) -> None:
        super().__init__(f"ingest already running (pid {pid or '?'})")
        self.pid = pid


def lock_path(settings: Settings) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", settings.mqtt_client_id)
    return settings.run_dir / f"ingest-{safe}.lock"


def take(settings: Settings) -> IO[str]:
    """Take the session's lock for this process's lifetime (keep the returned file open);
    AlreadyRunning when another process holds it."""
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    f = path.open("a+")  # not "w": truncating would wipe the holder's pid before we know
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        held_by = f.read().strip()
        f.close()
        raise AlreadyRunning(int(held_by) if held_by.isdigit() else 0) from None
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def holder(settings: Settings) -> int | None:
    """The pid of the ingest holding this session's lock (0 if unknown), None if none does."""
    try:
        take(settings).close()  # closing the file releases the lock at once
    except AlreadyRunning as exc:
        return exc.pid
    return None

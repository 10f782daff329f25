"""The simulator's state file (`settings.run_dir / "simulator-state.json"`): what each
simulated van must remember between `coldtrace simulate` runs, as a real box keeps it in
flash: its last boot and seq, the device time of its last reading, and its outbox (the
readings ingest has not yet acknowledged, contract v1.1), which the next run sends first.
`coldtrace simulate` writes it before it sends what it records (simulators/publish.py), each
write atomic and on disk before it returns: a run killed at any instant (SIGKILL, power
loss) leaves the file as of its last write, which holds every message it may have sent and
not seen acknowledged, and each van's seq at or above any it sent.

Shape: ``{device: {"boot": int, "seq": int, "ts": ms, "pending": [Held, ...]}}``; a file
written before ``pending`` existed reads as an empty outbox.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from simulators.fleet import Van


@dataclass(frozen=True, slots=True)
class Held:
    """One message still in a van's outbox: its seqs ``first``..``last`` (``readings`` of
    them) and the payload as sent (JSON text, sent again as is: ingest's dedup makes a
    repeat harmless)."""

    first: int
    last: int
    readings: int
    payload: str

    @classmethod
    def of(cls, payload: bytes, seqs: Sequence[int]) -> Held:
        """The message `payload` of readings `seqs` (consecutive)."""
        return cls(min(seqs), max(seqs), len(seqs), payload.decode())


@dataclass
class SimState:
    """The state file's content; `load` then `save`, vans of other runs kept as they were."""

    path: Path | None
    vans: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> SimState:
        """The state at `path` (empty when None or not yet written)."""
        if path is None or not path.exists():
            return cls(path)
        return cls(path, json.loads(path.read_text()))

    def resume(self, fleet: list[Van]) -> int:
        """Carry each van on from its last run: the next boot, its seq; return the latest
        device time (ms) any of them already sent, 0 for none."""
        last_ts = 0
        for van in fleet:
            if van.device in self.vans:
                van.boot = self.vans[van.device]["boot"] + 1
                van.seq = self.vans[van.device]["seq"]
                last_ts = max(last_ts, self.vans[van.device]["ts"])
        return last_ts

    def pending(self, device: str) -> list[Held]:
        """What `device` still holds from earlier runs, oldest first."""
        return [Held(**h) for h in self.vans.get(device, {}).get("pending", [])]

    def holding(self) -> list[str]:
        """The devices that hold readings not yet acknowledged."""
        return sorted(d for d, van in self.vans.items() if van.get("pending"))

    def save(self, fleet: list[Van], last_ts: int, pending: dict[str, list[Held]]) -> None:
        """Record this run's vans (boot, seq, `last_ts` in ms) and the outbox of every device
        in `pending`, keeping the other vans: a run of fewer vans must not send the others
        back to boot 1, seq 1 (their next readings would then be conflicting duplicates of
        what they already sent)."""
        if self.path is None:
            return
        for van in fleet:
            self.vans[van.device] = {"boot": van.boot, "seq": van.seq, "ts": last_ts}
        for device, held in pending.items():
            self.vans[device]["pending"] = [asdict(h) for h in held]
        write_durably(self.path, json.dumps(self.vans, indent=1))


def write_durably(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically and durably: a temporary file beside it, fsynced,
    renamed over it, then the directory fsynced (the rename itself must reach the disk). A
    crash at any point leaves the old content or the new, never a mix or nothing. OSError as
    the file system raises it (the temporary file removed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)

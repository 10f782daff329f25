# Small persistent files on flash: JSON written atomically, and the boot and seq counters.
import json
import os


def read_json(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def write_json(path, obj):
    # Write a new file then rename it over the old one: a power cut leaves one or the other.
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.rename(tmp, path)


def makedirs(path):
    here = ""
    for part in path.split("/"):
        here = here + "/" + part if here or path.startswith("/") else part
        if part:
            try:
                os.mkdir(here)
            except OSError:
                pass  # exists already


class Counters:
    """The boot counter and the device's seq, strictly increasing over its whole life.

    Seqs are reserved in blocks: the high-water mark on flash is rewritten once per `block`
    readings, not per reading. At boot the seq continues right after the last seq the flash
    still holds (outbox or acknowledged), so a reboot opens no false gap at ingest; only when
    that is gone (outbox wiped) does it jump past the high-water mark, so that no seq already
    published is ever reused for another reading.
    """

    def __init__(self, path, block, last_known_seq, last_known_boot=-1):
        self._path = path
        self._block = block
        st = read_json(path, {"boot": -1, "seq_hwm": 0})
        # A boot number is never reused (ingest places ts-null readings by boot), even if this
        # file was lost while the outbox still holds readings of earlier boots.
        self.boot = max(st["boot"], last_known_boot) + 1
        self._hwm = st["seq_hwm"]
        self.next_seq = self._hwm if last_known_seq is None else last_known_seq + 1
        self._hwm = max(self._hwm, self.next_seq + block)  # the first block, with the boot
        self._save()

    def _save(self):
        write_json(self._path, {"boot": self.boot, "seq_hwm": self._hwm})

    def take_seq(self):
        if self.next_seq >= self._hwm:
            self._hwm = self.next_seq + self._block
            self._save()
        seq = self.next_seq
        self.next_seq += 1
        return seq

# The flash outbox: every reading is written here first and leaves only once ingest has it:
# its end-to-end acknowledgement (contract v1.1, the retained `ack` topic) covers it, not
# merely the broker's PUBACK, which a broker crash can take back. Readings go oldest first,
# each once per connection; after a reconnect everything not yet covered goes again.
#
# Append-only segment files "<dir>/<n>.seg". A record is framed as payload length (2 bytes),
# CRC-32 of the payload (4 bytes), payload. Each segment starts with a names record (the probe
# ids and the boot of the readings after it, so a segment decodes on its own); a reading
# record holds its probe values in that order, in hundredths of a degree. A power cut mid-write leaves a torn
# last record: the boot scan cuts a segment back to its last whole record. When the outbox is
# full the oldest segment goes, and the seqs it still held are kept in `dropped` until a
# batch has carried them to the server.
import os
import struct
from binascii import crc32

from micropython import const

from store import makedirs, read_json, write_json

_HEADER = const(6)
_NAMES = const(0x80)
_GPS = const(1)
_DOOR = const(2)
_OPEN = const(4)
_BATTERY = const(8)
_RSSI = const(16)
_FIXED = const("<BQqQ")  # flags, seq, ts (-1 while the clock is not set), up
_FIXED_SIZE = const(25)
_NO_VALUE = const(-32768)  # a probe that gave no value
_UNSET = const(0xFFFF)  # gps speed or hdop not given
_MAX_DROPPED_PER_BATCH = const(64)  # the wire contract's limit


def _u16(value, scale):
    return _UNSET if value is None else max(0, min(0xFFFE, round(value * scale)))


def _encode(r, names):
    gps = r.get("gps")
    door = r.get("door")
    battery = r.get("battery_v")
    rssi = r.get("rssi_dbm")
    flags = (
        (_GPS if gps else 0)
        | (0 if door is None else _DOOR)
        | (_OPEN if door else 0)
        | (0 if battery is None else _BATTERY)
        | (0 if rssi is None else _RSSI)
    )
    ts = r["ts"]
    out = bytearray(struct.pack(_FIXED, flags, r["seq"], -1 if ts is None else ts, r["up"]))
    probes = r["probes"]
    for name in names:
        value = probes[name]  # in hundredths of a degree
        centi = _NO_VALUE if value is None else max(-32767, min(32767, round(value * 100)))
        out += struct.pack("<h", centi)
    if gps:
        out += struct.pack(
            "<iiHH",
            round(gps["lat"] * 10000000),
            round(gps["lon"] * 10000000),
            _u16(gps.get("speed_kmh"), 100),
            _u16(gps.get("hdop"), 100),
        )
    if battery is not None:
        out += struct.pack("<H", _u16(battery, 1000))
    if rssi is not None:
        out += struct.pack("<b", max(-128, rssi))
    return out


def _decode(p, names):
    flags, seq, ts, up = struct.unpack_from(_FIXED, p)
    i = _FIXED_SIZE
    probes = {}
    for name in names:
        v = struct.unpack_from("<h", p, i)[0]
        probes[name] = None if v == _NO_VALUE else v / 100
        i += 2
    r = {"seq": seq, "ts": None if ts < 0 else ts, "up": up, "probes": probes}
    if flags & _GPS:
        lat, lon, speed, hdop = struct.unpack_from("<iiHH", p, i)
        i += 12
        gps = {"lat": lat / 10000000, "lon": lon / 10000000}
        if speed != _UNSET:
            gps["speed_kmh"] = speed / 100
        if hdop != _UNSET:
            gps["hdop"] = hdop / 100
        r["gps"] = gps
    if flags & _DOOR:
        r["door"] = bool(flags & _OPEN)
    if flags & _BATTERY:
        r["battery_v"] = struct.unpack_from("<H", p, i)[0] / 1000
        i += 2
    if flags & _RSSI:
        r["rssi_dbm"] = struct.unpack_from("<b", p, i)[0]
    return r


def _frame(payload):
    return struct.pack("<HI", len(payload), crc32(payload)) + payload


def _records(data):
    """(end offset, payload) of each whole record, up to the first torn or corrupt one."""
    view = memoryview(data)
    i = 0
    while i + _HEADER <= len(data):
        size, crc = struct.unpack_from("<HI", data, i)
        end = i + _HEADER + size
        if size == 0 or end > len(data):
            return
        payload = view[i + _HEADER : end]
        if crc32(payload) != crc:
            return
        yield end, payload
        i = end


def _header(boot, names):
    return _frame(struct.pack("<BI", _NAMES, boot) + ",".join(names).encode())


def _names(payload):
    """(boot, probe ids) of a names record."""
    text = bytes(payload[5:]).decode()
    return struct.unpack_from("<I", payload, 1)[0], text.split(",") if text else []


def _seq(payload):
    return struct.unpack_from("<Q", payload, 1)[0]


class Outbox:
    # Set by rewind(), for this connection (see __init__).
    cursor: int | None
    _dropped_sent: int
    _mark: int | None

    def __init__(self, path, capacity_bytes, segment_bytes):
        makedirs(path)
        self._dir = path
        self._segment_bytes = segment_bytes
        self._max_segments = max(2, capacity_bytes // segment_bytes)
        self.acked = read_json(path + "/acked", None)  # last seq ingest acknowledged
        self.dropped = read_json(path + "/dropped", [])  # [[from, to]] not yet acknowledged
        self.pending = 0  # readings not yet acknowledged
        self.last_seq = None  # highest seq written
        self.last_boot = -1  # highest boot written
        # The segments on flash are numbered first .. next - 1 without a hole: new ones are
        # made only at the end and deleted only at the start (a list of numbers would take
        # RAM in proportion to the outbox).
        first, last = None, -1
        for name in os.listdir(path):
            if name.endswith(".seg"):
                n = int(name[:-4])
                first = n if first is None else min(first, n)
                last = max(last, n)
        self._first = last + 1 if first is None else first
        self._next = last + 1
        self._names = None  # (boot, probe ids) in force at the end of the write segment
        self._size = 0  # bytes in the write segment
        for n in range(self._first, self._next):
            self._recover(n)
        # In RAM only, for this connection: the seq after which nothing was sent or
        # acknowledged yet (readings wait to be sent while it is not last_seq), the number of
        # dropped ranges sent, and the last seq held at the last rewind.
        self.rewind()

    def _file(self, n):
        return "%s/%08d.seg" % (self._dir, n)

    def _read(self, n):
        with open(self._file(n), "rb") as f:
            return f.read()

    def _recover(self, n):
        data = self._read(n)
        good = 0
        self._names = None
        for end, p in _records(data):
            good = end
            if p[0] & _NAMES:
                self._names = _names(p)
                self.last_boot = max(self.last_boot, self._names[0])
                continue
            seq = _seq(p)
            self.last_seq = seq
            if self.acked is None or seq > self.acked:
                self.pending += 1
        if good < len(data):
            print("outbox: segment %d cut back from %d to %d bytes" % (n, len(data), good))
            with open(self._file(n) + ".tmp", "wb") as f:
                f.write(data[:good])
            os.rename(self._file(n) + ".tmp", self._file(n))
        self._size = good

    def last_known_seq(self):
        """The highest seq the flash still knows of (written or acknowledged), or None."""
        if self.last_seq is None or (self.acked is not None and self.acked > self.last_seq):
            return self.acked
        return self.last_seq

    def append(self, reading, boot):
        names = sorted(reading["probes"])
        record = _frame(_encode(reading, names))
        header = None if (boot, names) == self._names else _header(boot, names)
        size = len(record) + (len(header) if header else 0)
        if self._next == self._first or self._size + size > self._segment_bytes:
            self._next += 1  # a new segment
            self._size = 0
            if self._next - self._first > self._max_segments:
                self._drop_oldest()
            header = _header(boot, names)
            size = len(record) + len(header)
        with open(self._file(self._next - 1), "ab") as f:
            if header:
                f.write(header)
            f.write(record)
        self._names = (boot, names)
        self._size += size
        self.last_seq = reading["seq"]
        self.pending += 1

    def _drop_oldest(self):
        n = self._first
        self._first += 1
        first = last = None
        count = 0
        for _, p in _records(self._read(n)):
            if not p[0] & _NAMES:
                seq = _seq(p)
                if self.acked is None or seq > self.acked:
                    first = seq if first is None else first
                    last = seq
                    count += 1
        os.remove(self._file(n))
        if first is None or last is None:
            return
        self.pending -= count
        if self.dropped and self.dropped[-1][1] + 1 == first:
            self.dropped[-1][1] = last
        else:
            self.dropped.append([first, last])
        write_json(self._dir + "/dropped", self.dropped)
        # The last range is new or grew: it goes (again) with the next batch.
        self._dropped_sent = min(self._dropped_sent, len(self.dropped) - 1)
        print("outbox full: dropped seqs %d..%d" % (first, last))

    def take(self, limit):
        """(boot, readings, dropped): the next (up to `limit`) readings not yet sent on this
        connection, oldest first, all taken in the same boot (a batch carries one boot), and
        with them the dropped ranges not yet sent (wire format). They count as sent: a send
        that fails ends the connection, and the next one rewinds."""
        out: list = []
        first_boot = None
        cursor = self.cursor
        n = self._first
        while n < self._next and len(out) < limit:
            boot, names = 0, []
            for _, p in _records(self._read(n)):
                if p[0] & _NAMES:
                    boot, names = _names(p)
                elif cursor is None or _seq(p) > cursor:
                    if first_boot is None:
                        first_boot = boot
                    elif boot != first_boot:
                        limit = len(out)
                        break
                    out.append(_decode(p, names))
                    if len(out) >= limit:
                        break
            n += 1
        # Nothing left to take: the cursor at the end (the loop in app.forward stops).
        self.cursor = out[-1]["seq"] if out else self.last_seq
        dropped = []
        if out:
            i = self._dropped_sent
            for a, b in self.dropped[i : i + _MAX_DROPPED_PER_BATCH]:
                dropped.append({"from": a, "to": b})
            self._dropped_sent += len(dropped)
        return first_boot, out, dropped

    def rewind(self):
        """A new connection (or a lost resend, see confirm): send again everything not
        acknowledged, from the oldest."""
        self.cursor = self.acked
        self._dropped_sent = 0
        self._mark = self.last_seq  # every seq up to here goes again before any newer one

    def confirm(self, first, last, high):
        """Ingest's acknowledgement (contract v1.1): it has every seq from `first` to `last`,
        and none above `high`. Applied only if nothing the outbox holds lies below `first`
        (ingest never got that); an ack below the last one applied changes nothing. If ingest
        misses a seq the outbox holds although it has one sent after the last rewind's
        resend, that resend was lost (a broker crash took its queue for ingest): rewind."""
        acked = self.acked
        if acked is not None and last < acked:
            return
        # The oldest seq held: dropped ranges are older than any reading still on flash.
        oldest = self.dropped[0][0] if self.dropped else None
        n = self._first
        while oldest is None and n < self._next:
            for _, p in _records(self._read(n)):
                if not p[0] & _NAMES and (acked is None or _seq(p) > acked):
                    oldest = _seq(p)
                    break
            n += 1
        if oldest is not None:
            if (oldest < first or last < high and oldest <= last + 1) and (
                self._mark is None or high > self._mark
            ):
                self.rewind()
            if oldest < first:
                return
        if last == acked:
            return
        # Delete the oldest segments once all their readings are acknowledged (never the one
        # being written), and count what left.
        left = 0
        n = self._first
        while n < self._next:
            top = -1
            for _, p in _records(self._read(n)):
                if not p[0] & _NAMES:
                    top = _seq(p)
                    if (acked is None or top > acked) and top <= last:
                        left += 1
            if top > last or n == self._next - 1:
                break
            os.remove(self._file(n))
            self._first = n = n + 1
        self.pending -= left
        self.acked = last
        write_json(self._dir + "/acked", last)
        if self.cursor is None or last > self.cursor:
            self.cursor = last
        covered = 0
        while self.dropped and self.dropped[0][1] <= last:
            del self.dropped[0]
            covered += 1
        if covered:
            self._dropped_sent = max(0, self._dropped_sent - covered)
            write_json(self._dir + "/dropped", self.dropped)

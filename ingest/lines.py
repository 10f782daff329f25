"""Stage 4, encode: placed readings, gaps and rejections -> InfluxDB line protocol.

The schema (docs/storage-schema.md) that dashboards and rules rely on:
- temperature,device=D,probe=P celsius=F,seq=I          (a probe fault: fault="why",raw=F)
- position,device=D lat=F,lon=F[,speed_kmh=F][,hdop=F],seq=I
- device_health,device=D boot=I,up=I[,derived=true][,battery_v=F][,rssi_dbm=I][,door=B],fp=I,seq=I
- seq_gap,device=D,source=ingest|device first=I,last=I,missing=I       (ns precision)
- rejected,reason=R device="D",topic="T",detail="..",payload="..",readings=I

Reading points carry the device timestamp in ms, so a replayed reading overwrites its own
point (same measurement, tags and time): idempotent by construction. Device and probe ids
are restricted by the contract to characters that need no escaping in tags. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
import zlib

from coldtrace.contract import (
    DS18B20_DISCONNECTED as DISCONNECTED,
)
from coldtrace.contract import (
    DS18B20_POWER_ON as POWER_ON,
)
from coldtrace.contract import (
    PLAUSIBLE_CELSIUS,
    probe_fault,
)
from coldtrace.records import PlacedReading
from ingest.decode import Rejection, valid_seq
from ingest.ledger import GapChange

PAYLOAD_PREFIX_BYTES = 1024
_CODE = re.compile(r"[a-z_]{1,64}")
LOW, HIGH = PLAUSIBLE_CELSIUS


def _field_string(value: str) -> str:
    # A lone surrogate (a JSON "\\ud800" escape) cannot be encoded: replaced, not raised.
    value = value.encode("utf-8", "replace").decode("utf-8")
    return (
        '"'
        + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        + '"'
    )


def reading_lines(p: PlacedReading, out: list[str]) -> int:
    """Append the reading's points to out; return its fingerprint.

    The fingerprint is a CRC-32 of the points themselves (values and time): stable across
    processes, cheap, and stored with the reading so a restart can tell an identical repeat
    from a conflicting one. This is the hot path of ingest: keep it lean.
    """
    r = p.reading
    dev = p.device
    tail = f",seq={r.seq}i {p.ts}"
    first = len(out)
    for probe, value in r.probes.items():
        if (
            value is not None
            and LOW <= value <= HIGH
            and value != DISCONNECTED
            and value != POWER_ON
        ):
            out.append(f"temperature,device={dev},probe={probe} celsius={value!r}{tail}")
        else:
            fault = probe_fault(value)
            # NaN and infinities have no line-protocol spelling: the fault says what it was.
            raw = "" if value is None or not math.isfinite(value) else f",raw={value!r}"
            out.append(f'temperature,device={dev},probe={probe} fault="{fault}"{raw}{tail}')
    gps = r.gps
    if gps is not None:
        speed, hdop = gps.speed_kmh, gps.hdop
        out.append(
            f"position,device={dev} lat={gps.lat!r},lon={gps.lon!r}"
            f"{'' if speed is None else f',speed_kmh={speed!r}'}"
            f"{'' if hdop is None else f',hdop={hdop!r}'}{tail}"
        )
    battery, rssi, door = r.battery_v, r.rssi_dbm, r.door
    health = (
        f"device_health,device={dev} boot={p.boot}i,up={r.up}i"
        f"{',derived=true' if p.derived else ''}"
        f"{'' if battery is None else f',battery_v={battery!r}'}"
        f"{'' if rssi is None else f',rssi_dbm={rssi}i'}"
        f"{'' if door is None else ',door=true' if door else ',door=false'}"
    )
    out.append(health)
    fp = zlib.crc32(("\n".join(out[first:]) + tail).encode())
    out[-1] = f"{health},fp={fp}i{tail}"
    return fp


def gap_line(change: GapChange) -> str:
    """A gap's point, in ns precision: the ms it was revealed plus its first seq below the
    ms, so two gaps revealed by one reading stay two points, and an update to a gap (filled
    later) overwrites its own point. Read back with ms precision, the time is opened_ts."""
    g = change.gap
    time_ns = g.opened_ts * 1_000_000 + g.first % 1_000_000
    return (
        f"seq_gap,device={change.device},source={g.source} "
        f"first={g.first}i,last={g.last}i,missing={change.missing}i {time_ns}"
    )


def seq_ranges(seqs: tuple[int, ...]) -> str:
    """Seqs as compact ranges, "1-5,7" (sorted): the `seqs` field of a batch's dead letter."""
    out: list[str] = []
    ordered = sorted(set(seqs))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def parse_seq_ranges(text: str) -> list[int]:
    """The seqs of seq_ranges() output, back."""
    seqs: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        seqs.extend(range(int(lo), int(hi or lo) + 1))
    return seqs


def rejection_line(rej: Rejection, topic: str, time_ns: int, counted: int | None = None) -> str:
    """A dead letter's point; `counted` is how many readings it adds to the device's books
    as rejected (default: all; 0 for a copy of a seq already stored or dead-lettered).

    Built so InfluxDB cannot refuse it: the reason is a fixed code, every string is escaped
    and cut (UTF-8 errors replaced), and seq fields are written only for valid seqs
    (0..2^63-1, never a boolean): a refused dead letter would lose its reason."""
    payload = rej.payload[:PAYLOAD_PREFIX_BYTES].decode("utf-8", errors="replace")
    seqs = [s for s in rej.all_seqs if valid_seq(s) is not None]
    seq = f",seq={seqs[0]}i" if len(seqs) == 1 else ""
    many = f",seqs={_field_string(seq_ranges(tuple(seqs)))}" if len(seqs) > 1 else ""
    reason = rej.reason if _CODE.fullmatch(rej.reason) else "unknown"
    return (
        f"rejected,reason={reason} device={_field_string(rej.device[:256])},"
        f"topic={_field_string(topic[:256])},detail={_field_string(rej.detail[:1000])},"
        f"payload={_field_string(payload)},payload_bytes={len(rej.payload)}i,"
        f"readings={max(0, rej.readings)}i,"
        f"counted={max(0, rej.readings if counted is None else counted)}i{seq}{many} {time_ns}"
    )


def heartbeat_line(instance: str, fields: dict[str, int | bool], time_ns: int) -> str:
    """One point of measurement ``ingest`` (docs/storage-schema.md): ingest's own state at
    wall-clock ``time_ns``: integers (counts, ms) and booleans."""
    values = ",".join(
        f"{k}={str(v).lower()}" if isinstance(v, bool) else f"{k}={v}i"
        for k, v in sorted(fields.items())
    )
    return f"ingest,instance={instance} {values} {time_ns}"

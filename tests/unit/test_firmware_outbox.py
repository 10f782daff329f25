"""The firmware's flash outbox and its boot and seq counters, on the real MicroPython
interpreter; each `run` is a separate interpreter, i.e. a reboot with the same flash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coldtrace.contract import TelemetryBatch
from coldtrace.devtools.board import run

APPEND = """
import json
from outbox import Outbox
o = Outbox("data/outbox", %(capacity)d, %(segment)d)
for seq in range(%(first)d, %(last)d):
    o.append({"seq": seq, "ts": 1784073600000 + seq * 1000, "up": seq * 1000,
              "probes": {"air": 3.5, "product": seq / 10}}, %(boot)d)
print(json.dumps({"pending": o.pending, "dropped": o.dropped}))
"""

PEEK = """
import json
from outbox import Outbox
o = Outbox("data/outbox", %(capacity)d, %(segment)d)
boot, readings, dropped = o.take(%(limit)d)
print(json.dumps({"pending": o.pending, "boot": boot, "readings": readings,
                  "dropped": dropped, "last": o.last_known_seq(),
                  "last_boot": o.last_boot}))
"""


def append(
    flash: Path, first: int, last: int, boot: int = 0, capacity: int = 65536, segment: int = 4096
) -> Any:
    return run(APPEND % locals(), flash)


def peek(flash: Path, limit: int = 500, capacity: int = 65536, segment: int = 4096) -> Any:
    return run(PEEK % locals(), flash)


def segments(flash: Path) -> list[Path]:
    return sorted((flash / "data" / "outbox").glob("*.seg"))


def test_readings_come_back_as_written_in_the_wire_contract(tmp_path: Path) -> None:
    readings = [
        {
            "seq": 7,
            "ts": 1784073600123,
            "up": 2**40 + 5,
            "probes": {"air": 3.06, "product": -127.0, "door_side": None},
            "gps": {"lat": 48.755293, "lon": -2.353886, "speed_kmh": 41.51, "hdop": 1.08},
            "door": True,
            "battery_v": 12.61,
            "rssi_dbm": -71,
        },
        {"seq": 8, "ts": None, "up": 0, "probes": {}, "door": False},
        {"seq": 9, "ts": None, "up": 1, "probes": {"air": 85.0}, "gps": {"lat": 0.0, "lon": 0.0}},
    ]
    code = f"""
import json
from outbox import Outbox
o = Outbox("data/outbox", 65536, 4096)
for r in {readings!r}:
    o.append(r, 3)
print(json.dumps(o.take(10)))
"""
    boot, back, _ = run(code, tmp_path / "flash")
    assert boot == 3
    assert back == readings
    TelemetryBatch.model_validate({"device": "van-1", "boot": boot, "readings": back})


def test_a_torn_last_record_is_cut_off_and_the_outbox_goes_on(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    append(flash, 0, 10)
    [seg] = segments(flash)
    whole = seg.read_bytes()
    seg.write_bytes(whole[:-3])  # power cut in the middle of writing seq 9

    out = peek(flash)
    assert [r["seq"] for r in out["readings"]] == list(range(9))
    assert out["pending"] == 9
    assert len(seg.read_bytes()) < len(whole) - 3, "cut back to the last whole record"

    append(flash, 10, 12)
    assert [r["seq"] for r in peek(flash)["readings"]] == [*range(9), 10, 11]


def test_noise_after_the_last_record_is_cut_off(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    append(flash, 0, 5)
    [seg] = segments(flash)
    seg.write_bytes(seg.read_bytes() + b"\x30\x00\xde\xad\xbe\xef" + b"x" * 40)
    append(flash, 5, 7)
    assert [r["seq"] for r in peek(flash)["readings"]] == list(range(7))


def test_a_full_outbox_drops_its_oldest_segment_and_keeps_the_range_to_report(
    tmp_path: Path,
) -> None:
    flash = tmp_path / "flash"
    out = append(flash, 0, 100, capacity=1024, segment=256)
    assert len(segments(flash)) == 4
    dropped = [(a, b) for a, b in out["dropped"]]
    assert dropped[0][0] == 0 and len(dropped) == 1, "contiguous drops merge into one range"
    lost = dropped[0][1] + 1

    after_reboot = peek(flash, capacity=1024, segment=256)
    assert after_reboot["dropped"] == [{"from": 0, "to": lost - 1}]
    assert [r["seq"] for r in after_reboot["readings"]] == list(range(lost, 100))
    assert after_reboot["pending"] == 100 - lost


def test_acknowledged_readings_leave_and_the_rest_survive_a_reboot(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    append(flash, 0, 100, capacity=4096, segment=512)
    before = len(segments(flash))
    code = """
import json
from outbox import Outbox
o = Outbox("data/outbox", 4096, 512)
boot, batch, _ = o.take(60)
o.confirm(0, batch[-1]["seq"], batch[-1]["seq"])
print(json.dumps(o.pending))
"""
    assert run(code, flash) == 40
    assert len(segments(flash)) < before, "fully acknowledged segments are deleted"
    out = peek(flash, capacity=4096, segment=512)
    assert [r["seq"] for r in out["readings"]] == list(range(60, 100))
    assert out["pending"] == 40


SEND = """
import json
from outbox import Outbox
o = Outbox("data/outbox", %(capacity)d, %(segment)d)
log = []
def batch(n):
    boot, readings, dropped = o.take(n)
    return [[r["seq"] for r in readings], [[d["from"], d["to"]] for d in dropped]]
%(steps)s
print(json.dumps(log))
"""


def test_readings_stay_until_ingest_acknowledges_them_and_go_again_after_a_reconnect(
    tmp_path: Path,
) -> None:
    flash = tmp_path / "flash"
    append(flash, 0, 10)
    steps = """
log.append(batch(4))
log.append(batch(4))       # PUBACKed readings are not sent again on this connection
o.confirm(0, 2, 7)         # ingest has 0..2 (and 3..7 on the way)
log.append(o.pending)
o.rewind()                 # a reconnect: the rest of what was sent goes again
log.append(batch(4))
log.append(o.last_seq != o.cursor)
log.append(batch(4))
log.append(o.last_seq != o.cursor)
o.confirm(0, 1, 1)         # an older ack (a restored retained one) changes nothing
log.append(o.pending)
"""
    out = run(SEND % {"capacity": 65536, "segment": 4096, "steps": steps}, flash)
    assert out == [
        [[0, 1, 2, 3], []],
        [[4, 5, 6, 7], []],
        7,
        [[3, 4, 5, 6], []],
        True,
        [[7, 8, 9], []],
        False,
        7,
    ]
    assert [r["seq"] for r in peek(flash)["readings"]] == list(range(3, 10)), "after a reboot"


def test_an_ack_starting_above_what_the_outbox_holds_is_not_applied(tmp_path: Path) -> None:
    """Ingest lost 0..4 (a broker crash) and has 5..9: the device keeps everything and sends
    0..4 again; once ingest has them too, the ack covers it all."""
    flash = tmp_path / "flash"
    append(flash, 0, 10)
    steps = """
log.append(batch(10))
o.confirm(5, 9, 9)
log.append(o.pending)
o.rewind()
log.append(batch(10))
o.confirm(0, 9, 9)
log.append(o.pending)
log.append(o.last_seq != o.cursor)
"""
    out = run(SEND % {"capacity": 65536, "segment": 4096, "steps": steps}, flash)
    assert out == [[list(range(10)), []], 10, [list(range(10)), []], 0, False]


def test_dropped_ranges_go_with_the_batches_until_acknowledged(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    out = append(flash, 0, 100, capacity=1024, segment=256)
    [[a, b]] = out["dropped"]
    steps = f"""
log.append(batch(5))
log.append(batch(5))       # sent once per connection
o.rewind()
log.append(batch(5))       # not acknowledged: again after a reconnect
o.confirm({a}, {b + 5}, {b + 10})  # ingest has the dropped range and the first batch
o.rewind()
log.append(batch(5))
log.append(o.dropped)
"""
    log = run(SEND % {"capacity": 1024, "segment": 256, "steps": steps}, flash)
    first = list(range(b + 1, b + 6))
    assert log[0] == [first, [[a, b]]]
    assert log[1] == [list(range(b + 6, b + 11)), []]
    assert log[2] == [first, [[a, b]]]
    assert log[3] == [list(range(b + 6, b + 11)), []]
    assert log[4] == []


def test_a_batch_never_mixes_boots(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    append(flash, 0, 5, boot=0)
    append(flash, 5, 8, boot=1)
    out = peek(flash)
    assert (out["boot"], [r["seq"] for r in out["readings"]]) == (0, list(range(5)))
    assert (out["last"], out["last_boot"]) == (7, 1), "what the counters resume from"


COUNTERS = """
import json, store
writes = []
real_write = store.write_json
def counting_write(path, obj):
    writes.append(obj)
    real_write(path, obj)
store.write_json = counting_write
c = store.Counters("state.json", 100, %s, %d)
seqs = [c.take_seq() for _ in range(%d)]
print(json.dumps({"boot": c.boot, "first": seqs[0] if seqs else None, "writes": len(writes)}))
"""


def test_boot_counts_up_and_seq_goes_on_after_the_last_one_on_flash(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    first = run(COUNTERS % ("None", -1, 250), flash)
    assert first == {"boot": 0, "first": 0, "writes": 3}, "one write at boot, then per 100 seqs"

    # Next boot: the outbox still knows seq 249, so the device goes on at 250 (no gap).
    assert run(COUNTERS % ("249", 0, 1), flash) == {"boot": 1, "first": 250, "writes": 1}

    # Outbox wiped: jump past everything that may have been handed out, never reuse a seq.
    wiped = run(COUNTERS % ("None", -1, 1), flash)
    assert wiped["boot"] == 2 and wiped["first"] >= 251

    # State file lost, outbox still holding boot 6: the boot number is not reused.
    (flash / "state.json").unlink()
    assert run(COUNTERS % ("400", 6, 1), flash) == {"boot": 7, "first": 401, "writes": 1}


def test_a_lost_resend_is_sent_again_once_ingest_has_something_newer(tmp_path: Path) -> None:
    """After a reconnect the outbox sends 3..9 again, but the broker had no queue for ingest
    yet and they are lost; ingest then stores 10 and 11 and says it misses 3: only now (it
    has a seq sent after that resend) does the outbox send everything again."""
    flash = tmp_path / "flash"
    append(flash, 0, 10)
    steps = """
log.append(batch(10))
o.confirm(0, 2, 2)
o.rewind()                 # the broker crashed: a reconnect
log.append(batch(10))      # ... and this resend is lost
o.confirm(0, 2, 9)         # an ack from before the crash: the resend may still come
log.append(batch(10))
"""
    first = run(SEND % {"capacity": 65536, "segment": 4096, "steps": steps}, flash)
    assert first == [[list(range(10)), []], [list(range(3, 10)), []], [[], []]]
    append(flash, 10, 12)
    steps = """
o.confirm(0, 2, 2)
log.append(batch(10))      # 3..11: the reboot rewound, and marked 11
o.confirm(0, 2, 11)        # not newer than the mark: wait
log.append(batch(10))
for s in (12, 13):
    o.append({"seq": s, "ts": None, "up": s, "probes": {}}, 0)
log.append(batch(10))      # 12, 13
o.confirm(0, 2, 13)        # ingest has 13 yet misses 3: the resend was lost, send again
log.append(batch(20))
o.confirm(0, 13, 13)
log.append([o.pending, o.last_seq != o.cursor])
"""
    second = run(SEND % {"capacity": 65536, "segment": 4096, "steps": steps}, flash)
    assert second == [
        [list(range(3, 12)), []],
        [[], []],
        [[12, 13], []],
        [list(range(3, 14)), []],
        [0, False],
    ]

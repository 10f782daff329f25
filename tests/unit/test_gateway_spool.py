"""The gateway's spool on a real SQLite file: what goes in comes out in order, byte for byte
the same every time; repeats are left out; acks clear it; bounded with dropped ranges."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from coldtrace.contract import TelemetryBatch
from gateway.spool import Added, Entry, Spool, SpoolBusy, read_status


def readings(seqs: range | list[int], ts: int | None = None) -> list[dict[str, Any]]:
    return [{"seq": s, "ts": ts, "up": 10 * s, "probes": {"air": 3.25}} for s in seqs]


def test_batches_oldest_first_one_boot_each_and_identical_when_sent_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 1000)
    spool.add("box-a", 1, readings(range(0, 3)))
    spool.add("box-b", 7, readings(range(50, 52)))
    spool.add("box-a", 2, readings(range(3, 5)))

    first = spool.next_batch({}, 10)
    assert first is not None
    batch = TelemetryBatch.model_validate_json(first.payload)
    assert (batch.device, batch.boot, [r.seq for r in batch.readings]) == ("box-a", 1, [0, 1, 2])
    assert batch.readings[0].model_dump(exclude_none=True) == {
        "seq": 0,
        "up": 0,
        "probes": {"air": 3.25},
    }
    again = spool.next_batch({}, 10)
    assert again is not None and again.payload == first.payload

    second = spool.next_batch({"box-a": 2}, 10)
    assert second is not None and (second.device, second.boot) == ("box-b", 7)
    third = spool.next_batch({"box-a": 2, "box-b": 51}, 10)
    assert third is not None and (third.device, third.boot, third.first_seq) == ("box-a", 2, 3)
    assert spool.next_batch({"box-a": 4, "box-b": 51}, 10) is None


def test_a_seq_already_spooled_is_a_repeat_even_after_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 1000)
    assert spool.add("box-a", 1, readings(range(0, 5))).spooled == 5
    spool.close()
    spool = Spool(tmp_path / "spool.db", 1000)
    added = spool.add("box-a", 1, readings(range(3, 8), ts=1_800_000_000_000))
    assert (added.spooled, added.repeats, added.seqs) == (3, 2, [5, 6, 7])
    batch = spool.next_batch({}, 100)
    assert batch is not None
    got = TelemetryBatch.model_validate_json(batch.payload).readings
    assert [(r.seq, r.ts) for r in got] == [
        (0, None),
        (1, None),
        (2, None),
        (3, None),
        (4, None),
        (5, 1_800_000_000_000),
        (6, 1_800_000_000_000),
        (7, 1_800_000_000_000),
    ]


def test_numbered_readings_continue_across_restarts(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 1000)
    assert spool.next_boot() == 0
    assert spool.add("reefer", 0, [{"ts": None, "up": 1, "probes": {}}], number=True).seqs == [0]
    spool.put_meta("ports", b'{"reefer": {"opens": 1}}')
    spool.close()
    spool = Spool(tmp_path / "spool.db", 1000)
    assert spool.next_boot() == 1
    assert spool.status()["ports"] == {}  # the last run's counters are not this run's
    two = [{"ts": None, "up": 5, "probes": {}}, {"ts": None, "up": 6, "probes": {}}]
    assert spool.add("reefer", 1, two, number=True).seqs == [1, 2]
    batch = spool.next_batch({"reefer": 0}, 10)
    assert batch is not None and batch.payload == (
        b'{"device":"reefer","boot":1,"readings":[{"seq":1,"ts":null,"up":5,"probes":{}},'
        b'{"seq":2,"ts":null,"up":6,"probes":{}}]}'
    )


def test_the_port_counters_are_saved_with_the_readings_they_count(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 1000)
    entries = [Entry("box-a", 1, readings(range(0, 3))), Entry("box-b", 1, readings([7]))]

    def counted(added: list[Added]) -> bytes:
        spooled = sum(a.spooled for a in added)
        return b'{"box": {"readings": %d}}' % spooled

    assert [a.seqs for a in spool.add_all(entries, counted)] == [[0, 1, 2], [7]]
    assert spool.ack("box-a", 0, 2) == 3 and spool.ack("box-b", 7, 7) == 1
    status = read_status(tmp_path / "spool.db")
    assert (status["depth"], status["ports"]) == (0, {"box": {"readings": 4}})

    def broken(added: list[Added]) -> bytes:
        raise RuntimeError("a bug counting")

    # Counted or not spooled: one transaction
    with pytest.raises(RuntimeError, match="a bug counting"):
        spool.add_all([Entry("box-a", 1, readings([3]))], broken)
    status = read_status(tmp_path / "spool.db")
    assert (status["depth"], status["ports"], spool.newest("box-a")) == (
        0,
        {"box": {"readings": 4}},
        2,
    )
    saved = spool.save_ports(lambda: b'{"box": {"readings": 4, "opens": 1}}')
    assert saved == read_status(tmp_path / "spool.db")
    assert saved["ports"] == {"box": {"readings": 4, "opens": 1}}


def test_an_ack_clears_what_it_covers_and_only_that(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 1000)
    spool.add("box-a", 1, readings(range(10, 20)))
    assert spool.ack("box-a", 12, 15) == 0  # ingest has from 12: it never got 10 and 11
    assert spool.status()["depth"] == 10
    assert spool.ack("box-a", 10, 14) == 5
    assert spool.ack("box-a", 0, 12) == 0  # an older ack: ignored
    assert spool.acked("box-a") == 14
    assert spool.ack("other", 0, 100) == 0  # not a device of this spool
    batch = spool.next_batch({}, 100)
    assert batch is not None and (batch.first_seq, batch.last_seq) == (15, 19)
    assert spool.ack("box-a", 10, 19) == 5
    assert spool.next_batch({}, 100) is None
    status = read_status(tmp_path / "spool.db")
    assert status["depth"] == 0
    assert status["oldest_unacked_age_s"] is None
    assert status["devices"] == [
        {"device": "box-a", "high_seq": 19, "acked_seq": 19, "pending": 0, "dropped_ranges": 0}
    ]


def test_full_spool_drops_the_oldest_and_reports_the_range_until_acked(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 10)
    spool.add("box-a", 1, readings(range(0, 6)))
    spool.add("box-b", 1, readings(range(100, 104)))
    spool.add("box-a", 1, readings(range(8, 11)), dropped=[(6, 7)])  # the box's own report
    # 13 readings in a spool of 10: box-a's 0, 1, 2 went
    status = spool.status()
    assert (status["depth"], status["dropped_total"]) == (10, 3)
    spool.add("box-a", 1, readings([11]))  # box-a's 3 goes: the range grows to 0..3
    batch = spool.next_batch({}, 100)
    assert batch is not None
    got = TelemetryBatch.model_validate_json(batch.payload)
    assert [r.seq for r in got.readings] == [4, 5, 8, 9, 10, 11]
    assert [(d.first, d.last) for d in got.dropped] == [(0, 3), (6, 7)]
    assert spool.ack("box-a", 0, 11) == 6
    spool.add("box-a", 1, readings([12]))
    batch = spool.next_batch({}, 100)
    assert batch is not None and batch.device == "box-b"  # spooled before box-a's 12
    after = spool.next_batch({"box-b": 103}, 100)
    assert after is not None
    got = TelemetryBatch.model_validate_json(after.payload)
    assert ([r.seq for r in got.readings], got.dropped) == ([12], [])
    assert spool.status()["dropped_total"] == 4


def test_one_gateway_per_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 10)
    with pytest.raises(SpoolBusy, match=f"in use by another gateway \\(pid {os.getpid()}\\)"):
        Spool(tmp_path / "spool.db", 10)
    spool.close()
    Spool(tmp_path / "spool.db", 10).close()

"""The simulator's state file (simulators/state.py): what vans remember between runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulators.fleet import make_fleet
from simulators.state import Held, SimState, write_durably


def test_a_state_file_from_before_outboxes_reads_as_nothing_pending(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"van-01": {"boot": 2, "seq": 60, "ts": 1_000}}))
    state = SimState.load(path)
    fleet = make_fleet(2)
    assert state.resume(fleet) == 1_000
    assert [(v.device, v.boot, v.seq) for v in fleet] == [("van-01", 3, 60), ("van-02", 1, 0)]
    assert (state.pending("van-01"), state.holding()) == ([], [])


def test_save_keeps_other_vans_and_each_devices_outbox(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"van-02": {"boot": 1, "seq": 9, "ts": 500}}))
    state = SimState.load(path)
    fleet = make_fleet(1)
    fleet[0].seq = 4
    held = [Held(3, 4, 2, '{"device":"van-01"}')]
    state.save(fleet, 2_000, {"van-01": held, "van-02": []})
    again = SimState.load(path)
    assert again.pending("van-01") == held
    assert again.holding() == ["van-01"]
    assert json.loads(path.read_text())["van-02"] == {"boot": 1, "seq": 9, "ts": 500, "pending": []}


def test_no_state_file_no_state(tmp_path: Path) -> None:
    state = SimState.load(None)
    state.save(make_fleet(1), 1, {})
    assert (state.vans, list(tmp_path.iterdir())) == ({}, [])


def test_a_write_that_fails_leaves_the_file_as_it_was_and_no_temporary_file(
    tmp_path: Path,
) -> None:
    """The state file is replaced whole or not at all: a write that fails (here a text the
    file's encoding cannot take) keeps the last state."""
    path = tmp_path / "state.json"
    write_durably(path, '{"van-01": {"boot": 1, "seq": 4, "ts": 9}}')
    with pytest.raises(UnicodeEncodeError):
        write_durably(path, '{"van-01": \ud800}')
    assert json.loads(path.read_text()) == {"van-01": {"boot": 1, "seq": 4, "ts": 9}}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]

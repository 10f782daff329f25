"""Stage 1, decode: raw MQTT message -> the readings that satisfy the wire contract.

Everything else becomes a Rejection with a reason code; nothing raises. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from coldtrace.contract import (
    MAX_READINGS_PER_BATCH,
    MAX_SEQ,
    DroppedRange,
    Reading,
    TelemetryBatch,
    device_from_topic,
)


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str  # a short code from a fixed set: it is an InfluxDB tag
    detail: str
    readings: int  # how many readings this rejection accounts for (0 when uncountable)
    payload: bytes = b""
    device: str = ""
    seq: int | None = None  # the one reading's seq, when it is a valid seq
    seqs: tuple[int, ...] = ()  # the valid seqs of a rejected batch's readings, when readable

    @property
    def all_seqs(self) -> tuple[int, ...]:
        """Every valid seq this dead letter accounts for (it fills their seq gaps)."""
        return self.seqs if self.seq is None else (self.seq,)


@dataclass(slots=True)
class Decoded:
    device: str
    boot: int = 0
    readings: list[Reading] = field(default_factory=list)
    dropped: list[DroppedRange] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def valid_seq(value: object) -> int | None:
    """value when it is a seq the contract allows (an int, not a bool, in 0..2^63-1)."""
    if type(value) is int and 0 <= value <= MAX_SEQ:
        return value
    return None


class _Repeated(dict[str, Any]):
    """A JSON object that named a key more than once (kept: the first key repeated)."""

    repeated: str = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    out = _Repeated(obj)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            out.repeated = key
            break
        seen.add(key)
    return out


def _repeated_key(value: object, where: str) -> str | None:
    """Where a key is repeated in value or in an object nested in it, e.g. "probes.air"."""
    if isinstance(value, _Repeated):
        return f"{where}{value.repeated}"
    if isinstance(value, dict):
        for k, v in value.items():
            if (found := _repeated_key(v, f"{where}{k}.")) is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if (found := _repeated_key(v, f"{where}{i}.")) is not None:
                return found
    return None


def _pair_count(batch: TelemetryBatch) -> int:
    """How many "key": value pairs a batch's JSON held, as parsed (repeats collapsed)."""
    # __pydantic_fields_set__ is what the model_fields_set property returns, without the call:
    # this runs for every reading ingest receives.
    n = len(batch.__pydantic_fields_set__) + 2 * len(batch.dropped)
    for r in batch.readings:
        n += len(r.__pydantic_fields_set__) + len(r.probes)
        if r.gps is not None:
            n += len(r.gps.__pydantic_fields_set__)
    return n


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "payload"
    return f"{where}: {err['msg']}"


def decode(topic: str, payload: bytes, max_bytes: int) -> Decoded:
    topic_device = device_from_topic(topic)
    if topic_device is None:
        return _reject_all("", "bad_topic", f"not a telemetry topic: {topic[:200]!r}", payload)
    if len(payload) > max_bytes:
        raw = _loads(payload)
        return _reject_all(
            topic_device,
            "oversize",
            f"{len(payload)} bytes > limit {max_bytes}",
            payload,
            *_count(raw.get("readings") if isinstance(raw, dict) else None),
        )
    try:
        batch = TelemetryBatch.model_validate_json(payload)
    except ValidationError as exc:
        return _decode_salvage(topic_device, payload, exc)
    # A valid batch's strings (ids) hold no colon, so each colon separates one key from its
    # value: fewer pairs parsed than colons means a key was repeated (the parser kept the
    # last). Counting is cheap; the slow parse that names the key runs only then.
    if payload.count(b":") != _pair_count(batch):
        return _decode_salvage(topic_device, payload, None)
    if batch.device != topic_device:
        return _reject_all(
            topic_device,
            "device_mismatch",
            f"payload device {batch.device!r} on topic of {topic_device!r}",
            payload,
            len(batch.readings),
            tuple(r.seq for r in batch.readings),
        )
    return Decoded(topic_device, batch.boot, list(batch.readings), list(batch.dropped))


def _reject_all(
    device: str,
    reason: str,
    detail: str,
    payload: bytes,
    readings: int = 0,
    seqs: tuple[int, ...] = (),
) -> Decoded:
    return Decoded(
        device, rejections=[Rejection(reason, detail, readings, payload, device, seqs=seqs)]
    )


def _loads(payload: bytes) -> object:
    """The payload parsed as JSON (repeated keys marked), or None when it is not JSON."""
    try:
        # The stdlib parser accepts NaN and Infinity: a NaN probe value is that probe's fault.
        return json.loads(payload, object_pairs_hook=_pairs)
    except (ValueError, RecursionError):
        return None


def _count(raw_readings: object) -> tuple[int, tuple[int, ...]]:
    """(how many readings, their valid seqs) of a batch's "readings", when it is a list."""
    if not isinstance(raw_readings, list):
        return 0, ()
    seqs = (valid_seq(r.get("seq")) if isinstance(r, dict) else None for r in raw_readings)
    # Each seq once: a repeated one is the same reading's seq, not another reading's.
    return len(raw_readings), tuple(dict.fromkeys(s for s in seqs if s is not None))


def _decode_salvage(device: str, payload: bytes, whole_error: ValidationError | None) -> Decoded:
    """The batch failed as a whole (or repeated a key): keep every reading valid on its own."""
    try:
        raw = json.loads(payload, object_pairs_hook=_pairs)
    except (ValueError, RecursionError) as exc:
        return _reject_all(device, "malformed_json", str(exc), payload)
    if not isinstance(raw, dict):
        return _reject_all(device, "invalid_batch", "payload is not a JSON object", payload)
    raw_readings = raw.get("readings")
    count, seqs = _count(raw_readings)
    envelope: dict[str, Any] = {**raw, "readings": [{"seq": 0, "ts": None, "up": 0, "probes": {}}]}
    # A repeated key outside the readings makes the whole batch ambiguous.
    repeated = raw.repeated if isinstance(raw, _Repeated) else None
    if repeated is None:
        repeated = _repeated_key({k: v for k, v in raw.items() if k != "readings"}, "")
    if repeated is not None:
        detail = f"key {repeated!r} appears more than once: ambiguous, never last-one-wins"
        return _reject_all(device, "duplicate_key", detail, payload, count, seqs)
    try:
        shell = TelemetryBatch.model_validate(envelope)
    except ValidationError as exc:
        return _reject_all(device, "invalid_batch", _first_error(exc), payload, count, seqs)
    if shell.device != device:
        return _reject_all(
            device,
            "device_mismatch",
            f"payload device {shell.device!r} on topic of {device!r}",
            payload,
            count,
            seqs,
        )
    if not isinstance(raw_readings, list) or not 1 <= count <= MAX_READINGS_PER_BATCH:
        detail = _first_error(whole_error) if whole_error else "readings: not 1..500 items"
        return _reject_all(device, "invalid_batch", detail, payload, count, seqs)

    out = Decoded(device, shell.boot, dropped=list(shell.dropped))
    prev = -1
    for i, item in enumerate(raw_readings):
        item_bytes = json.dumps(item).encode()
        seq = valid_seq(item.get("seq")) if isinstance(item, dict) else None
        repeated = _repeated_key(item, "")
        if repeated is not None:
            out.rejections.append(
                Rejection(
                    "duplicate_key",
                    f"readings.{i}: key {repeated!r} appears more than once: ambiguous, "
                    "never last-one-wins",
                    1,
                    item_bytes,
                    device,
                    seq,
                )
            )
            continue
        try:
            reading = Reading.model_validate_json(item_bytes)
        except ValidationError as exc:
            out.rejections.append(
                Rejection(
                    "invalid_reading",
                    f"readings.{i}.{_first_error(exc)}",
                    1,
                    item_bytes,
                    device,
                    seq,
                )
            )
            continue
        if reading.seq <= prev:
            out.rejections.append(
                Rejection(
                    "seq_not_increasing",
                    f"readings.{i}: seq {reading.seq} after {prev}",
                    1,
                    item_bytes,
                    device,
                    reading.seq,
                )
            )
            continue
        prev = reading.seq
        out.readings.append(reading)
    return out

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
    seq: int | None = None


@dataclass(slots=True)
class Decoded:
    device: str
    boot: int = 0
    readings: list[Reading] = field(default_factory=list)
    dropped: list[DroppedRange] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "payload"
    return f"{where}: {err['msg']}"


def decode(topic: str, payload: bytes, max_bytes: int) -> Decoded:
    topic_device = device_from_topic(topic)
    if topic_device is None:
        return _reject_all("", "bad_topic", f"not a telemetry topic: {topic[:200]!r}", payload)
    if len(payload) > max_bytes:
        return _reject_all(
            topic_device, "oversize", f"{len(payload)} bytes > limit {max_bytes}", payload
        )
    try:
        batch = TelemetryBatch.model_validate_json(payload)
    except ValidationError as exc:
        return _decode_salvage(topic_device, payload, exc)
    if batch.device != topic_device:
        return _reject_all(
            topic_device,
            "device_mismatch",
            f"payload device {batch.device!r} on topic of {topic_device!r}",
            payload,
            readings=len(batch.readings),
        )
    return Decoded(topic_device, batch.boot, list(batch.readings), list(batch.dropped))


def _reject_all(
    device: str, reason: str, detail: str, payload: bytes, readings: int = 0
) -> Decoded:
    return Decoded(device, rejections=[Rejection(reason, detail, readings, payload, device)])


def _decode_salvage(device: str, payload: bytes, whole_error: ValidationError) -> Decoded:
    """The batch failed as a whole: keep every reading that is valid on its own."""
    try:
        # The stdlib parser accepts NaN and Infinity, so they are reported per reading below.
        raw = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        return _reject_all(device, "malformed_json", str(exc), payload)
    if not isinstance(raw, dict):
        return _reject_all(device, "invalid_batch", "payload is not a JSON object", payload)
    raw_readings = raw.get("readings")
    count = len(raw_readings) if isinstance(raw_readings, list) else 0
    envelope: dict[str, Any] = {**raw, "readings": [{"seq": 0, "ts": None, "up": 0, "probes": {}}]}
    try:
        shell = TelemetryBatch.model_validate(envelope)
    except ValidationError as exc:
        return _reject_all(device, "invalid_batch", _first_error(exc), payload, count)
    if shell.device != device:
        return _reject_all(
            device,
            "device_mismatch",
            f"payload device {shell.device!r} on topic of {device!r}",
            payload,
            count,
        )
    if not isinstance(raw_readings, list) or not 1 <= count <= MAX_READINGS_PER_BATCH:
        return _reject_all(device, "invalid_batch", _first_error(whole_error), payload, count)

    out = Decoded(device, shell.boot, dropped=list(shell.dropped))
    prev = -1
    for i, item in enumerate(raw_readings):
        item_bytes = json.dumps(item).encode()
        try:
            reading = Reading.model_validate_json(item_bytes)
        except ValidationError as exc:
            seq = item.get("seq") if isinstance(item, dict) else None
            out.rejections.append(
                Rejection(
                    "invalid_reading",
                    f"readings.{i}.{_first_error(exc)}",
                    1,
                    item_bytes,
                    device,
                    seq if isinstance(seq, int) else None,
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

"""The silence ticks of the rules stage: the silent-device rule (alerts/silence.py) kept per
device, told of each batch heard and ticked every second on the wall clock. Only a device on
a delivery in transit is ever silent; which devices are, and since when, comes from
``on_delivery`` (given by the entry point: coldtrace.deliveries.attach.devices_on_active_delivery),
asked at most every ON_DELIVERY_REFRESH_MS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from alerts.containment import SILENCE, Containment
from alerts.judges import Emit
from alerts.rules import Event
from alerts.silence import RULE as SILENT_RULE
from alerts.silence import SilenceState, heard, tick
from alerts.store import BreachStore, StoreUnavailable, record_of

log = logging.getLogger(__name__)
# The silence tick runs every second; which devices are on a delivery in transit changes at a
# driver's pace, so the store is asked at most this often.
ON_DELIVERY_REFRESH_MS = 5_000
OnDelivery = Callable[[Session, int], dict[str, int]]  # (session, now ms) -> device -> since


class SilenceWatch:
    """``recent_devices(since_ms)``: the devices with stored readings since then, each with its
    newest reading's time; ``profile_of(device)``: the profile id a silence is filed under;
    ``gap_ms``: how long a device on a delivery may stay quiet; ``horizon_ms``: the late-data
    horizon (devices quiet for longer are retired, not silent); ``clock``: wall clock (s)."""

    def __init__(
        self,
        store: BreachStore,
        on_delivery: OnDelivery,
        recent_devices: Callable[[int], list[tuple[str, int]]],
        profile_of: Callable[[str], str],
        containment: Containment,
        emit: Emit,
        gap_ms: int,
        horizon_ms: int,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.on_delivery = on_delivery
        self.recent_devices = recent_devices
        self.profile_of = profile_of
        self.containment = containment
        self.emit = emit
        self.gap_ms = gap_ms
        self.horizon_ms = horizon_ms
        self.clock = clock
        self.silence: dict[str, SilenceState] = {}
        self.on_delivery_since: dict[str, int] = {}
        self.on_delivery_asked: int | None = None  # clock ms of the last answer

    def watch_known_devices(self) -> None:
        """Watch for silence every device that InfluxDB has recent readings of, from its last
        reading, and keep the silences the store holds open (restart). Only a device on a
        delivery in transit is ever silent (``check``)."""
        # Devices not heard of within the late-data horizon are retired, not silent.
        since = int(self.clock() * 1000) - self.horizon_ms
        recent = [(d, newest) for d, newest in self.recent_devices(since) if d not in self.silence]
        known = self.store.known_of([d for d, _ in recent])  # one query, not one per device
        for device, newest in recent:
            open_silence = [b for b in known[device] if b.rule == SILENT_RULE and b.state == "open"]
            breach = record_of(open_silence[0]) if open_silence else None
            self.silence[device] = SilenceState(newest, breach)

    def heard(self, device: str, newest: int) -> None:
        """Readings of the device arrived, the newest at ``newest`` (device ms)."""
        self._silence(device, heard(self.silence.get(device, SilenceState()), newest))

    def check(self) -> None:
        """One tick for every device watched, each contained on its own."""
        now_ms = int(self.clock() * 1000)
        on_delivery = self._devices_on_delivery(now_ms)
        for device, state in list(self.silence.items()):
            self.containment.run(device, SILENCE, self._tick, device, state, now_ms, on_delivery)

    def _tick(
        self, device: str, state: SilenceState, now_ms: int, on_delivery: dict[str, int]
    ) -> None:
        self._silence(device, tick(state, now_ms, self.gap_ms, on_delivery.get(device)))

    def _silence(self, device: str, result: tuple[SilenceState, tuple[Event, ...]]) -> None:
        state, events = result
        self.silence[device] = state
        if events:
            self.emit(device, "", self.profile_of(device), list(events))

    def _devices_on_delivery(self, now_ms: int) -> dict[str, int]:
        asked = self.on_delivery_asked
        if asked is not None and 0 <= now_ms - asked < ON_DELIVERY_REFRESH_MS:
            return self.on_delivery_since
        try:
            self.on_delivery_since = self.store.ask(lambda s: self.on_delivery(s, now_ms))
            self.on_delivery_asked = now_ms
            self.containment.cleared("deliveries")
        except StoreUnavailable as exc:
            # keep the last answer: a store outage must neither end nor invent silences
            log.warning("rules: store unavailable (%s); deliveries in transit as last known", exc)
            self.containment.failed("deliveries", f"store unavailable: {exc}")
        return self.on_delivery_since

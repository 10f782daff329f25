"""The rules stage of ingest: judges the readings each stored batch placed, on its own thread.

Ingest hands over ``Work.placed`` after a batch is stored; ``observe`` never blocks (a full
queue only records the span, which is then re-read from InfluxDB). Per device, on first
sight after a start, the stage rebuilds its engines from InfluxDB's readings and the store's
breaches, so a restart in the middle of an excursion neither loses it nor opens it twice.
Every change is upserted in the store (with its notifications queued in the outbox) and
written to InfluxDB measurement ``breach``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from alerts.engine import ProbeEngine
from alerts.notify import Notifier, channels_from
from alerts.profiles import Profile, ProfileError, load_profiles
from alerts.rules import (
    HOUR_MS,
    MINUTE_MS,
    Event,
    ProbeRules,
    Sample,
    Window,
    door_rules,
    in_windows,
)
from alerts.silence import RULE as SILENT_RULE
from alerts.silence import SilenceState, heard, tick
from alerts.store import Breach, BreachStore, StoredChange, StoreUnavailable, record_of
from coldtrace.contract import probe_fault
from coldtrace.influx import InfluxClient, InfluxUnavailable, quote_string
from coldtrace.settings import ENV_PREFIX, ConfigError, Settings
from deliveries.attach import devices_on_active_delivery
from ingest.clock import PlacedReading

log = logging.getLogger(__name__)
Span = tuple[int, int]
DOOR = ""  # the engine key (and breach probe) of a device's door rules
# The silence tick runs every second; which devices are on a delivery in transit changes at a
# driver's pace, so the store is asked at most this often.
ON_DELIVERY_REFRESH_MS = 5_000
OnDelivery = Callable[[Session, int], dict[str, int]]


def breach_line(device: str, c: StoredChange) -> str:
    """One point of measurement ``breach`` (docs/storage-schema.md), at the transition's
    device time: the start when opened, the end when closed."""
    b = c.breach
    ts = {"opened": b.start_ts, "closed": b.end_ts}.get(c.transition) or c.at
    tags = f"breach,device={device},rule={b.rule},transition={c.transition}"
    if b.probe:
        tags += f",probe={b.probe}"
    fields = [
        f"id={b.id}i",
        f'profile="{b.profile}"',
        f'severity="{b.severity}"',
        f'state="{b.state}"',
        f"start={b.start_ts}i",
        f"degree_minutes={float(b.degree_minutes)}",
        f"detected_late={'true' if b.detected_late else 'false'}",
        f"suppressed={'true' if b.suppressed else 'false'}",
        f"detected_at={b.detected_at}i",
    ]
    if b.end_ts is not None:
        fields.append(f"end={b.end_ts}i")
    if b.peak is not None:
        fields.append(f"peak={float(b.peak)}")
    if b.limit_c is not None:
        fields.append(f"limit_c={float(b.limit_c)}")
    return f"{tags} {','.join(fields)} {ts}"


class RulesStage:
    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        on_delivery: OnDelivery = devices_on_active_delivery,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.on_delivery = on_delivery  # device -> since when on a delivery in transit
        try:
            self.profiles = load_profiles(settings.alerts_profiles_file)
        except ProfileError as exc:
            raise ConfigError(f"{ENV_PREFIX}ALERTS_PROFILES_FILE: {exc}") from None
        for name, pid in [("ALERTS_DEFAULT_PROFILE", settings.alerts_default_profile)] + [
            ("ALERTS_DEVICE_PROFILES", p) for p in settings.alerts_device_profiles.values()
        ]:
            if pid is not None and pid not in self.profiles:
                known = ", ".join(sorted(self.profiles))
                raise ConfigError(f"{ENV_PREFIX}{name}: unknown profile {pid!r} ({known})")
        self.queue: queue.Queue[list[PlacedReading]] = queue.Queue(settings.alerts_queue_batches)
        self.overflow: dict[str, Span] = {}
        self.lock = threading.Lock()
        self.influx = InfluxClient(settings)
        self.store = BreachStore(settings.sqlalchemy_url)
        channels = channels_from(settings)
        self.channel_names = [c.name for c in channels]
        self.notifier = Notifier(self.store, channels, settings.notify_retry_max_s, clock)
        self.windows: dict[str, list[Window]] = {
            device: [(_ms(a), _ms(b)) for a, b in spans]
            for device, spans in settings.alerts_suppress_windows.items()
        }
        self.engines: dict[tuple[str, str], ProbeEngine] = {}
        self.primed: set[str] = set()
        self.silence: dict[str, SilenceState] = {}
        self.on_delivery_since: dict[str, int] = {}
        self.on_delivery_asked: int | None = None  # clock ms of the last answer
        self.readings_evaluated = 0
        self.transitions: Counter[tuple[str, str]] = Counter()  # (rule, transition) stored
        self.errors = 0
        self.last_error: str | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="alerts-rules", daemon=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> RulesStage | None:
        """The stage, or None when no device has a profile (rules off)."""
        if settings.alerts_default_profile is None and not settings.alerts_device_profiles:
            return None
        return cls(settings)

    def profile_of(self, device: str) -> Profile | None:
        pid = self.settings.alerts_device_profiles.get(device, self.settings.alerts_default_profile)
        return None if pid is None else self.profiles[pid]

    # -- ingest's side: never blocks -------------------------------------------------------

    def observe(self, placed: list[PlacedReading]) -> None:
        if not placed:
            return
        try:
            self.queue.put_nowait(placed)
        except queue.Full:
            self.reread(placed)

    def reread(self, placed: list[PlacedReading]) -> None:
        """Judge what InfluxDB holds of these readings' span, not the readings themselves:
        for readings that overflowed the queue, or that may not all have been stored (a
        refused batch that ingest stored message by message, dead-lettering some)."""
        for p in placed:
            self._remember(p.device, p.ts, p.ts)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()
        self.notifier.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        self.notifier.stop()
        self.influx.close()

    def alive(self) -> bool:
        """Both threads running: ingest's /health fails (and ingest exits) otherwise."""
        return self.thread.is_alive() and self.notifier.thread.is_alive()

    def metrics(self) -> dict[str, int]:
        """For ingest's /metrics (names without the coldtrace_ prefix; Prometheus labels)."""
        figures = {
            "alerts_up": int(self.alive()),
            "alerts_queue_batches": self.queue.qsize(),
            "alerts_overflow_devices": len(self.overflow),
            "alerts_engines": len(self.engines),
            "alerts_readings_evaluated_total": self.readings_evaluated,
            "alerts_readings_too_late_total": sum(e.too_late for e in self.engines.values()),
            "alerts_errors_total": self.errors,
        }
        for (rule, transition), n in sorted(self.transitions.items()):
            figures[f'alerts_breaches_total{{rule="{rule}",transition="{transition}"}}'] = n
        return figures

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.watch_known_devices()
                break
            except InfluxUnavailable as exc:
                log.warning("rules: InfluxDB unavailable (%s); retrying", exc)
                self.stopping.wait(1.0)
            except Exception as exc:
                log.exception("rules: devices known before the start not watched for silence")
                self._failed(f"{type(exc).__name__}: {exc}")
                break
        last_tick = 0.0
        while not self.stopping.is_set():
            try:
                batch = self.queue.get(timeout=0.5)
            except queue.Empty:
                batch = None
            try:
                if batch is not None:
                    self.evaluate(batch)
                self._reread_overflow()
                if time.monotonic() - last_tick >= 1.0:
                    last_tick = time.monotonic()
                    self.check_silence()
                    self.retire_idle()
            except InfluxUnavailable as exc:
                log.warning("rules: InfluxDB unavailable (%s); retrying", exc)
                self._failed(f"InfluxDB unavailable: {exc}")
                if batch is not None:
                    self.observe(batch)
                self.stopping.wait(1.0)
            except Exception as exc:
                log.exception("rules stage: batch failed; continuing")
                self._failed(f"{type(exc).__name__}: {exc}")

    def _failed(self, error: str) -> None:
        self.errors += 1
        self.last_error = error[:500]

    # -- the work --------------------------------------------------------------------------

    def watch_known_devices(self) -> None:
        """Watch for silence every device with a profile that InfluxDB has recent readings
        of, from its last reading, and keep the silences the store holds open (restart)."""
        # Devices not heard of within the late-data horizon are retired, not silent.
        since = int(self.clock() * 1000) - round(self.settings.alerts_late_horizon_h * HOUR_MS)
        for row in self.influx.rows(
            f"SELECT last(seq) FROM device_health WHERE time >= {since}ms GROUP BY device"
        ):
            device = row["device"]
            if self.profile_of(device) is None or device in self.silence:
                continue
            open_silence = [
                b for b in self.store.known(device) if b.rule == SILENT_RULE and b.state == "open"
            ]
            breach = record_of(open_silence[0]) if open_silence else None
            self.silence[device] = SilenceState(int(row["time"]), breach)

    def evaluate(self, placed: list[PlacedReading]) -> None:
        by_device: dict[str, list[PlacedReading]] = defaultdict(list)
        for p in placed:
            by_device[p.device].append(p)
        for device, readings in by_device.items():
            profile = self.profile_of(device)
            if profile is None:
                continue
            self._prime(device, profile, min(p.ts for p in readings))
            for key, samples in _samples(readings, self.windows.get(device, [])).items():
                self._judge(device, key, profile, samples)
            newest = max(p.ts for p in readings)
            self._silence(device, profile, heard(self.silence.get(device, SilenceState()), newest))
            self.readings_evaluated += len(readings)

    def _judge(self, device: str, key: str, profile: Profile, samples: list[Sample]) -> None:
        engine = self.engines.get((device, key))
        if engine is None:
            engine = self._new_engine(device, key, profile, [])
            if engine is None:
                return
        events = engine.add(samples)
        if events:
            self._emit(device, key, profile, events)

    def _new_engine(
        self, device: str, key: str, profile: Profile, known: list[Breach]
    ) -> ProbeEngine | None:
        """The engine of one probe, or of the device's door (key DOOR)."""
        rules = door_rules(profile) if key == DOOR else ProbeRules(profile)
        if rules is None:
            return None
        horizon = round(self.settings.alerts_late_horizon_h * HOUR_MS)
        mine = [record_of(b) for b in known if b.probe == key and b.rule != SILENT_RULE]
        engine = ProbeEngine(rules, horizon, known=mine)
        self.engines[(device, key)] = engine
        return engine

    def _prime(self, device: str, profile: Profile, oldest: int) -> None:
        """First sight of a device since start: its breaches from the store, its recent
        readings from InfluxDB, so state is as if the stage had never stopped."""
        if device in self.primed:
            return
        known = self.store.known(device)
        starts = [b.start_ts for b in known if b.state == "open"] + [oldest]
        since = min(starts) - lookback_ms(profile)
        for key, samples in self._history(device, since).items():
            engine = self._new_engine(device, key, profile, known)
            events = engine.add(samples) if engine is not None else []
            if events:
                self._emit(device, key, profile, events)
        self.primed.add(device)

    def _history(
        self, device: str, since: int, until: int | None = None
    ) -> dict[str, list[Sample]]:
        """A device's stored readings as samples: per probe, and its door under DOOR."""
        where = f"device = {quote_string(device)} AND time >= {since}ms"
        if until is not None:
            where += f" AND time <= {until}ms"
        doors: dict[int, bool] = {}
        out: dict[str, list[Sample]] = defaultdict(list)
        for row in self.influx.rows(f"SELECT door, seq FROM device_health WHERE {where}"):
            if row.get("door") is not None:
                doors[int(row["time"])] = bool(row["door"])
                out[DOOR].append(
                    Sample(int(row["time"]), int(row["seq"]), None, doors[int(row["time"])])
                )
        windows = self.windows.get(device, [])
        for row in self.influx.rows(
            f"SELECT celsius, seq FROM temperature WHERE {where} GROUP BY probe"
        ):
            ts, c = int(row["time"]), row.get("celsius")
            celsius = None if c is None else float(c)
            paused = in_windows(windows, ts)
            out[row["probe"]].append(Sample(ts, int(row["seq"]), celsius, doors.get(ts), paused))
        return out

    def _emit(self, device: str, probe: str, profile: Profile, events: list[Event]) -> None:
        late_after = round(self.settings.alerts_late_after_s * 1000)
        delay = 0.5
        while True:  # the engine has moved on: these changes exist only here until stored
            try:
                changes = self.store.apply(
                    device,
                    probe,
                    profile.id,
                    events,
                    int(self.clock() * 1000),
                    late_after,
                    self.channel_names,
                )
                break
            except StoreUnavailable as exc:
                log.warning("rules: store unavailable (%s); retrying", exc)
                if self.stopping.wait(delay):
                    log.error("rules: stopping with %d breach changes not stored", len(events))
                    return
                delay = min(delay * 2, 10.0)
        for c in changes:
            self.transitions[(c.breach.rule, c.transition)] += 1
            log.info(
                "breach %s: device=%s probe=%s rule=%s start=%d end=%s severity=%s",
                c.transition,
                device,
                probe or "-",
                c.breach.rule,
                c.breach.start_ts,
                c.breach.end_ts,
                c.breach.severity,
            )
        self.notifier.wake.set()
        self._write("\n".join(breach_line(device, c) for c in changes).encode())

    def _write(self, lines: bytes) -> None:
        """The store already holds these changes: keep trying until InfluxDB has them too."""
        delay = 0.5
        while True:
            try:
                self.influx.write(lines, "ms")
                return
            except InfluxUnavailable as exc:
                log.warning("rules: InfluxDB unavailable (%s); breach points retried", exc)
            if self.stopping.wait(delay):
                log.error("rules: stopping with breach points not written to InfluxDB")
                return
            delay = min(delay * 2, 10.0)

    def _silence(
        self, device: str, profile: Profile, result: tuple[SilenceState, tuple[Event, ...]]
    ) -> None:
        state, events = result
        self.silence[device] = state
        if events:
            self._emit(device, "", profile, list(events))

    def retire_idle(self) -> None:
        """Drop the engines of devices with nothing inside the late-data horizon: memory stays
        bounded by the active fleet; a device that comes back is primed again (store and
        InfluxDB), so nothing it had open is lost or opened twice."""
        cutoff = int(self.clock() * 1000) - round(self.settings.alerts_late_horizon_h * HOUR_MS)
        newest: dict[str, int] = {}
        for (device, _), engine in self.engines.items():
            ts = engine.newest
            newest[device] = max(newest.get(device, 0), ts if ts is not None else 0)
        for device, ts in newest.items():
            if ts < cutoff:
                for key in [k for k in self.engines if k[0] == device]:
                    del self.engines[key]
                self.primed.discard(device)

    def check_silence(self) -> None:
        """Silence counts only for devices on a delivery in transit (alerts/silence.py)."""
        now_ms = int(self.clock() * 1000)
        gap_ms = round(self.settings.alerts_silent_after_s * 1000)
        on_delivery = self._devices_on_delivery(now_ms)
        for device, state in list(self.silence.items()):
            profile = self.profile_of(device)
            if profile is not None:
                since = on_delivery.get(device)
                self._silence(device, profile, tick(state, now_ms, gap_ms, since))

    def _devices_on_delivery(self, now_ms: int) -> dict[str, int]:
        asked = self.on_delivery_asked
        if asked is not None and 0 <= now_ms - asked < ON_DELIVERY_REFRESH_MS:
            return self.on_delivery_since
        try:
            with Session(self.store.engine) as session:
                self.on_delivery_since = self.on_delivery(session, now_ms)
            self.on_delivery_asked = now_ms
        except OperationalError as exc:
            # keep the last answer: a store outage must neither end nor invent silences
            reason = str(exc).splitlines()[0]
            log.warning(
                "rules: store unavailable (%s); deliveries in transit as last known", reason
            )
            self._failed(f"store unavailable: {reason}")
        return self.on_delivery_since

    def _reread_overflow(self) -> None:
        with self.lock:
            spans, self.overflow = self.overflow, {}
        for device, (lo, hi) in spans.items():
            profile = self.profile_of(device)
            if profile is None:
                continue
            try:
                self._prime(device, profile, lo)
                history = self._history(device, lo, hi)
            except InfluxUnavailable:
                self._remember(device, lo, hi)  # and the rest of spans: kept for the retry
                for d, (a, b) in spans.items():
                    if d != device:
                        self._remember(d, a, b)
                raise
            for key, samples in history.items():
                self._judge(device, key, profile, samples)
            self._silence(device, profile, heard(self.silence.get(device, SilenceState()), hi))

    def _remember(self, device: str, lo: int, hi: int) -> None:
        with self.lock:
            a, b = self.overflow.get(device, (lo, hi))
            self.overflow[device] = (min(a, lo), max(b, hi))


def _ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def _samples(readings: list[PlacedReading], windows: list[Window]) -> dict[str, list[Sample]]:
    """Placed readings as samples: per probe (impossible values as faults), door under DOOR."""
    out: dict[str, list[Sample]] = defaultdict(list)
    for p in readings:
        r = p.reading
        paused = in_windows(windows, p.ts)
        for probe, value in r.probes.items():
            celsius = None if probe_fault(value) else value
            out[probe].append(Sample(p.ts, r.seq, celsius, r.door, paused))
        if r.door is not None:
            out[DOOR].append(Sample(p.ts, r.seq, None, r.door))
    return out


def lookback_ms(profile: Profile) -> int:
    """How much history rebuilds the state of every rule of the profile."""
    minutes = [profile.delay_min, profile.fault_delay_min, profile.stuck_min]
    minutes.append(profile.critical_after_min or 0)
    if profile.cumulative:
        minutes.append(profile.cumulative.window_h * 60)
    if profile.mkt:
        minutes.append(profile.mkt.window_h * 60)
    return round(max(minutes) * MINUTE_MS) + HOUR_MS

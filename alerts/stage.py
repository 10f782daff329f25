"""The rules stage of ingest: judges the readings each stored batch placed, on its own thread.

Ingest hands over ``Work.placed`` after a batch is stored; ``observe`` never blocks (a full
queue only records the span, which is then re-read from InfluxDB). Each probe is judged by
the product profile of the delivery under way in the compartment it measures (else that
compartment's default; deliveries.attach), and by the settings' profile while it measures no
compartment. One engine per (device, probe, stretch of one profile): on its creation it is
rebuilt from InfluxDB's readings and the store's breaches of its stretch, so a restart in the
middle of an excursion neither loses it nor opens it twice; a breach still open where its
stretch ends (the delivery starts or ends) is closed there, and late readings of a stretch
that is over never reopen it. Breaches stored under a profile their stretch no longer has
(a delivery's profile edited, or judged before the stage asked the store again) are judged
again by the stretch's profile: found again, or withdrawn.
Every change is upserted in the store (with its notifications queued in the outbox) and
written to InfluxDB measurement ``breach``.

Failures stay local and loud. An error while judging one probe (or a device's door or
silence) quarantines that (device, probe): logged once at ERROR with its traceback, counted,
its later readings counted as unjudged, and ingest's /health red while it lasts (until
ingest restarts, when its engines are rebuilt from InfluxDB). Other probes, devices and
batches are judged as usual. A batch that fails as a whole (InfluxDB or the store away)
turns /health red until a later batch succeeds. The certificate judges each delivery again
from the stored readings (deliveries/), so readings the stage never judged are not lost to
the verdict.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from alerts.engine import ProbeEngine
from alerts.notify import Notifier, channels_from
from alerts.rules import (
    HOUR_MS,
    MINUTE_MS,
    BreachWithdrawn,
    Event,
    ProbeRules,
    Sample,
    Window,
    door_rules,
    in_windows,
)
from alerts.silence import RULE as SILENT_RULE
from alerts.silence import SilenceState, heard, tick
from alerts.store import BreachStore, StoredChange, StoreUnavailable, record_of
from coldtrace.contract import probe_fault
from coldtrace.db import make_engine
from coldtrace.influx import InfluxClient, InfluxUnavailable, quote_string
from coldtrace.profiles import Profile, ProfileError, load_profiles
from coldtrace.records import PlacedReading
from coldtrace.settings import ENV_PREFIX, ConfigError, Settings
from deliveries.attach import any_assignment, devices_on_active_delivery, profile_piece_at
from deliveries.store import FAR_FUTURE_MS

log = logging.getLogger(__name__)
Span = tuple[int, int]
DOOR = ""  # the engine key (and breach probe) of a device's door rules
# The silence tick runs every second; which devices are on a delivery in transit changes at a
# driver's pace, so the store is asked at most this often.
ON_DELIVERY_REFRESH_MS = 5_000
OnDelivery = Callable[[Session, int], dict[str, int]]
# Which profile a probe is judged by changes when a delivery starts or ends: the stage asks
# the store again about a probe at most this often (rules share the cores with ingest).
PIECE_REFRESH_MS = 10_000
Piece = tuple[int, int, str | None]  # [start, end) of device time, the profile there
SILENCE = "(silence)"  # the quarantine key of a device's silence watch


@dataclass(frozen=True)
class Quarantine:
    """A (device, probe) the stage stopped judging after an error while judging it."""

    device: str
    probe: str  # a probe's name, "" for the door rules, SILENCE for the silence watch
    error: str  # "ExceptionType: message", at most 500 characters
    since_ms: int  # wall clock when it was quarantined


@dataclass
class Judge:
    """The engine of one probe (or door) over one stretch of one profile."""

    profile: Profile
    end: int  # where its stretch ends (exclusive): breaches still open there close there
    engine: ProbeEngine


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
        # (device, probe or DOOR) -> start of its stretch -> its judge
        self.engines: dict[tuple[str, str], dict[int, Judge]] = {}
        # (device, probe) -> (clock ms when asked, the stretches known then)
        self.pieces: dict[tuple[str, str], tuple[int, list[Piece]]] = {}
        self.silence: dict[str, SilenceState] = {}
        self.judged_by: dict[str, str] = {}  # device -> profile its probes were last judged by
        self.on_delivery_since: dict[str, int] = {}
        self.on_delivery_asked: int | None = None  # clock ms of the last answer
        self.readings_evaluated = 0
        self.transitions: Counter[tuple[str, str]] = Counter()  # (rule, transition) stored
        self.errors = 0
        self.last_error: str | None = None
        # What is failing as a whole now, and why: "start" (watching the devices known
        # before the start), "batch" (an error lost a batch's judging; cleared by the next
        # batch judged), "outage" (InfluxDB or the store away: what waits is retried;
        # cleared by the next pass that works), "deliveries" (which devices are on a
        # delivery; cleared by the next answer).
        self.failing: dict[str, str] = {}
        self.quarantined: dict[tuple[str, str], Quarantine] = {}
        self.unjudged = 0  # readings of quarantined probes, counted per probe value
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="alerts-rules", daemon=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> RulesStage | None:
        """The stage, or None when no probe has a profile (rules off): the settings name
        none and no probe is assigned to a compartment (whose deliveries name one). Ingest
        asks again every minute while it is off (IngestService.switch_rules_on)."""
        if settings.alerts_default_profile is None and not settings.alerts_device_profiles:
            engine = make_engine(settings.sqlalchemy_url)
            try:
                with Session(engine) as session:
                    assigned = any_assignment(session)
            except DBAPIError:  # store down or not migrated yet: no assignment to judge by
                assigned = False
            finally:
                engine.dispose()
            if not assigned:
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
            "alerts_engines": sum(len(judges) for judges in self.engines.values()),
            "alerts_readings_evaluated_total": self.readings_evaluated,
            "alerts_readings_too_late_total": sum(
                j.engine.too_late for judges in self.engines.values() for j in judges.values()
            ),
            "alerts_errors_total": self.errors,
            "alerts_failing": len(self.failing),
            "alerts_quarantined_probes": len(self.quarantined),
            "alerts_readings_unjudged_total": self.unjudged,
        }
        for (rule, transition), n in sorted(self.transitions.items()):
            figures[f'alerts_breaches_total{{rule="{rule}",transition="{transition}"}}'] = n
        return figures

    def problems(self) -> list[str]:
        """Why the running stage is not judging everything now, one line each ([] when it
        is): for ingest's /health, which is red while this is not empty (and while the stage's
        threads are not alive, ``alive``)."""
        out = [f"rules: {what} failed: {why}" for what, why in sorted(self.failing.items())]
        out.extend(
            f"rules: {q.device}/{q.probe or '(door)'} quarantined: {q.error}"
            for q in self.quarantined.values()
        )
        return out

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
                self._failed("start", f"{type(exc).__name__}: {exc}")
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
                self.failing.pop("outage", None)  # whatever waited for it is judged now
                if batch is not None:
                    self.failing.pop("batch", None)
            except (InfluxUnavailable, StoreUnavailable) as exc:
                what = "InfluxDB" if isinstance(exc, InfluxUnavailable) else "store"
                log.warning("rules: %s unavailable (%s); retrying", what, exc)
                self._failed("outage", f"{what} unavailable: {exc}")
                if batch is not None:  # judged again whole: engines ignore repeats
                    self.observe(batch)
                self.stopping.wait(1.0)
            except Exception as exc:
                log.exception("rules stage: batch failed; continuing")
                self._failed("batch", f"{type(exc).__name__}: {exc}")

    def _failed(self, what: str, error: str) -> None:
        self.errors += 1
        self.last_error = self.failing[what] = error[:500]

    def _contained(self, device: str, key: str, work: Callable[..., object], *args: object) -> None:
        """Run the judging of one (device, probe): an error there quarantines that probe
        alone; the outage of InfluxDB or the store is the batch's and propagates."""
        if (device, key) in self.quarantined:
            return
        try:
            work(*args)
        except (InfluxUnavailable, StoreUnavailable):
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            log.exception("rules: %s/%s quarantined: not judged until ingest restarts", device, key)
            self.errors += 1
            self.last_error = error
            self.quarantined[(device, key)] = Quarantine(
                device, key, error, int(self.clock() * 1000)
            )
            # half-built state must not be used again (a restart rebuilds it from InfluxDB)
            self.engines.pop((device, key), None)
            self.pieces.pop((device, key), None)

    # -- the work --------------------------------------------------------------------------

    def watch_known_devices(self) -> None:
        """Watch for silence every device that InfluxDB has recent readings of, from its last
        reading, and keep the silences the store holds open (restart). Only a device on a
        delivery in transit is ever silent (``check_silence``)."""
        # Devices not heard of within the late-data horizon are retired, not silent.
        since = int(self.clock() * 1000) - round(self.settings.alerts_late_horizon_h * HOUR_MS)
        for row in self.influx.rows(
            f"SELECT last(seq) FROM device_health WHERE time >= {since}ms GROUP BY device"
        ):
            device = row["device"]
            if device in self.silence:
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
            for key, samples in _samples(readings, self.windows.get(device, [])).items():
                self._judge_contained(device, key, samples)
            newest = max(p.ts for p in readings)
            self._contained(device, SILENCE, self._heard, device, newest)
            self.readings_evaluated += len(readings)

    def _judge_contained(self, device: str, key: str, samples: list[Sample]) -> None:
        if (device, key) in self.quarantined:
            self.unjudged += len(samples)
            return
        self._contained(device, key, self._judge, device, key, samples)

    def _judge(self, device: str, key: str, samples: list[Sample]) -> None:
        """Each sample to the engine of the stretch of one profile it falls in."""
        if key == DOOR:
            # A door belongs to no probe, so to no compartment: judged by the settings'
            # profile only (a van's door rules do not depend on what it carries).
            door_profile = self.profile_of(device)
            if door_profile is not None:
                self._feed(device, key, (0, FAR_FUTURE_MS, door_profile.id), samples)
            return
        samples = sorted(samples, key=lambda s: (s.ts, s.seq))
        i = 0
        while i < len(samples):
            piece = self._piece(device, key, samples[i].ts)
            j = bisect_left(samples, piece[1], lo=i, key=lambda s: s.ts)
            self._feed(device, key, piece, samples[i:j])
            i = j
        self._close_ended(device, key)

    def _piece(self, device: str, probe: str, ts: int) -> Piece:
        """The stretch around ``ts`` and its profile, from the store at most every
        PIECE_REFRESH_MS per probe."""
        now_ms = int(self.clock() * 1000)
        asked, known = self.pieces.get((device, probe), (now_ms, []))
        if not 0 <= now_ms - asked < PIECE_REFRESH_MS:
            asked, known = now_ms, []
        for piece in known:
            if piece[0] <= ts < piece[1]:
                return piece
        piece = self.store.ask(lambda session: profile_piece_at(session, device, probe, ts))
        self.pieces[(device, probe)] = (asked, [*known, piece])
        return piece

    def _feed(self, device: str, key: str, piece: Piece, samples: list[Sample]) -> None:
        start, end, profile_id = piece
        # no profile where it measures no compartment, or an unknown one: the settings'
        profile = self.profiles.get(profile_id or "") or self.profile_of(device)
        if profile is None:
            return
        judges = self.engines.setdefault((device, key), {})
        judge = judges.get(start)
        if judge is None or judge.profile is not profile:  # new, or its delivery re-planned
            judge = self._new_judge(device, key, piece, profile, samples[0].ts)
            if judge is None:
                return
        judge.end = end  # a delivery in transit ends when it is delivered
        if key != DOOR:
            self.judged_by[device] = profile.id
        events = judge.engine.add(samples)
        if events:
            self._emit(device, key, profile.id, events)

    def _new_judge(
        self, device: str, key: str, piece: Piece, profile: Profile, oldest: int
    ) -> Judge | None:
        """The engine of one probe's stretch (or of the device's door, key DOOR), rebuilt
        from the store's breaches and InfluxDB's readings of that stretch, so state is as if
        the stage had never stopped."""
        start, end, _ = piece
        rules = door_rules(profile) if key == DOOR else ProbeRules(profile)
        if rules is None:
            return None
        horizon = round(self.settings.alerts_late_horizon_h * HOUR_MS)
        stretch = [
            b
            for b in self.store.known(device)
            if b.probe == key and b.rule != SILENT_RULE and start <= b.start_ts < end
        ]
        mine = [b for b in stretch if b.profile == profile.id]
        # Judged by another profile: the stretch's profile changed since (the delivery's
        # profile was edited, or the stage judged by what it knew before asking the store
        # again). Judged again here; withdrawn unless this profile finds them too.
        stale = [
            b
            for b in stretch
            if key != DOOR
            and b.profile != profile.id
            and (b.end_ts is None or b.end_ts >= oldest - horizon)
        ]
        engine = ProbeEngine(rules, horizon, known=[record_of(b) for b in mine])
        judge = Judge(profile, end, engine)
        self.engines.setdefault((device, key), {})[start] = judge
        if key != DOOR and end < FAR_FUTURE_MS and self._heard_since(device, key, end):
            engine.close_at(end)  # over (e.g. after a restart): late samples reopen nothing
        redo = [b.start_ts for b in mine if b.state == "open"] + [b.start_ts for b in stale]
        since = max(start, min([*redo, oldest]) - lookback_ms(profile))
        until = None if end >= FAR_FUTURE_MS else end - 1
        probe = None if key == DOOR else key
        events = engine.add(self._history(device, since, until, probe).get(key, []))
        if events:
            self._emit(device, key, profile.id, events)
        for b in stale:
            if (b.rule, b.start_ts) not in engine.view:
                at = max(b.start_ts, engine.newest or b.start_ts)
                self._emit(device, key, b.profile, [BreachWithdrawn(record_of(b), at)])
        return judge

    def _close_ended(self, device: str, probe: str) -> None:
        """Breaches still open where their stretch ended (the probe has readings past it)
        close there: from then on the probe is judged by another profile."""
        judges = self.engines.get((device, probe))
        if not judges:  # no profile judges it (e.g. on no compartment, no settings profile)
            return
        newest = max((j.engine.newest or 0 for j in judges.values()), default=0)
        starts = sorted(judges)
        for start, after in zip(starts, [*starts[1:], FAR_FUTURE_MS], strict=True):
            judge = judges[start]
            # Stretches tile device time: one ends where the next begins at the latest (a
            # delivery in transit was open-ended when its stretch was last asked about).
            judge.end = min(judge.end, after)
            if judge.end > newest:
                continue
            if (judge.engine.newest or 0) >= judge.end:
                # It judged readings past its end, its stretch as known before the store was
                # asked again: rebuilt from its stretch alone (the next judge has those).
                oldest = judge.engine.samples[0].ts if judge.engine.samples else start
                piece = (start, judge.end, judge.profile.id)
                self._new_judge(device, probe, piece, judge.profile, oldest)
                continue
            events = judge.engine.close_at(judge.end)
            if events:
                self._emit(device, probe, judge.profile.id, events)

    def _heard_since(self, device: str, probe: str, since: int) -> bool:
        """Whether InfluxDB holds readings of the probe from ``since`` on."""
        return bool(
            self.influx.rows(
                f"SELECT last(seq) FROM temperature WHERE device = {quote_string(device)}"
                f" AND probe = {quote_string(probe)} AND time >= {since}ms"
            )
        )

    def _history(
        self, device: str, since: int, until: int | None = None, probe: str | None = None
    ) -> dict[str, list[Sample]]:
        """A device's stored readings as samples: per probe (only ``probe`` if given), and
        its door under DOOR."""
        where = f"device = {quote_string(device)} AND time >= {since}ms"
        if until is not None:
            where += f" AND time <= {until}ms"
        probes = where if probe is None else f"{where} AND probe = {quote_string(probe)}"
        doors: dict[int, bool] = {}
        out: dict[str, list[Sample]] = defaultdict(list)
        # A row without seq is a point InfluxDB shows before all its fields are visible (seen
        # under load while ingest writes the batch): skipped here, it arrives through observe.
        for row in self.influx.rows(f"SELECT door, seq FROM device_health WHERE {where}"):
            if row.get("door") is not None and row.get("seq") is not None:
                doors[int(row["time"])] = bool(row["door"])
                out[DOOR].append(
                    Sample(int(row["time"]), int(row["seq"]), None, doors[int(row["time"])])
                )
        windows = self.windows.get(device, [])
        for row in self.influx.rows(
            f"SELECT celsius, seq FROM temperature WHERE {probes} GROUP BY probe"
        ):
            if row.get("seq") is None:
                continue
            ts, c = int(row["time"]), row.get("celsius")
            celsius = None if c is None else float(c)
            paused = in_windows(windows, ts)
            out[row["probe"]].append(Sample(ts, int(row["seq"]), celsius, doors.get(ts), paused))
        return out

    def _emit(self, device: str, probe: str, profile_id: str, events: list[Event]) -> None:
        late_after = round(self.settings.alerts_late_after_s * 1000)
        delay = 0.5
        while True:  # the engine has moved on: these changes exist only here until stored
            try:
                changes = self.store.apply(
                    device,
                    probe,
                    profile_id,
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

    def _heard(self, device: str, newest: int) -> None:
        self._silence(device, heard(self.silence.get(device, SilenceState()), newest))

    def _silence(self, device: str, result: tuple[SilenceState, tuple[Event, ...]]) -> None:
        state, events = result
        self.silence[device] = state
        if events:
            # The silence is the device's, not a probe's: it is filed under the profile its
            # probes were last judged by (the delivery's), else the settings' one.
            default = self.profile_of(device)
            profile_id = self.judged_by.get(device) or (default.id if default else "")
            self._emit(device, "", profile_id, list(events))

    def retire_idle(self) -> None:
        """Drop the engines with nothing inside the late-data horizon (a device gone quiet,
        or a probe's stretch of a delivery long over): memory stays bounded by the active
        fleet; an engine needed again is primed again (store and InfluxDB), so nothing it
        had open is lost or opened twice."""
        cutoff = int(self.clock() * 1000) - round(self.settings.alerts_late_horizon_h * HOUR_MS)
        for key, judges in list(self.engines.items()):
            for start in [s for s, j in judges.items() if (j.engine.newest or 0) < cutoff]:
                del judges[start]
            if not judges:
                del self.engines[key]
                self.pieces.pop(key, None)

    def check_silence(self) -> None:
        """Silence counts only for devices on a delivery in transit (alerts/silence.py)."""
        now_ms = int(self.clock() * 1000)
        on_delivery = self._devices_on_delivery(now_ms)
        for device, state in list(self.silence.items()):
            self._contained(device, SILENCE, self._tick, device, state, now_ms, on_delivery)

    def _tick(
        self, device: str, state: SilenceState, now_ms: int, on_delivery: dict[str, int]
    ) -> None:
        gap_ms = round(self.settings.alerts_silent_after_s * 1000)
        self._silence(device, tick(state, now_ms, gap_ms, on_delivery.get(device)))

    def _devices_on_delivery(self, now_ms: int) -> dict[str, int]:
        asked = self.on_delivery_asked
        if asked is not None and 0 <= now_ms - asked < ON_DELIVERY_REFRESH_MS:
            return self.on_delivery_since
        try:
            self.on_delivery_since = self.store.ask(lambda s: self.on_delivery(s, now_ms))
            self.on_delivery_asked = now_ms
            self.failing.pop("deliveries", None)
        except StoreUnavailable as exc:
            # keep the last answer: a store outage must neither end nor invent silences
            log.warning("rules: store unavailable (%s); deliveries in transit as last known", exc)
            self._failed("deliveries", f"store unavailable: {exc}")
        return self.on_delivery_since

    def _reread_overflow(self) -> None:
        with self.lock:
            spans, self.overflow = self.overflow, {}
        for device, (lo, hi) in spans.items():
            try:
                history = self._history(device, lo, hi)
            except InfluxUnavailable:
                self._remember(device, lo, hi)  # and the rest of spans: kept for the retry
                for d, (a, b) in spans.items():
                    if d != device:
                        self._remember(d, a, b)
                raise
            for key, samples in history.items():
                self._judge_contained(device, key, samples)
            self._contained(device, SILENCE, self._heard, device, hi)

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

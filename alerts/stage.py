"""The rules stage of ingest, put together from its parts: it judges the readings each stored
batch placed, on its own thread, and turns breaches into stored, notified, written changes.

- alerts/runner.py: the thread, the bounded queue and its overflow;
- alerts/judges.py: which engine judges which probe under which profile, rebuilt from history;
- alerts/emitter.py: breach changes to the store, the notification outbox and InfluxDB;
- alerts/silence_watch.py: the silence ticks;
- alerts/containment.py: an error quarantines one probe, loudly; what fails as a whole;
- alerts/readings.py: readings as samples, from a batch or from InfluxDB.

What the stage needs to know of deliveries (which profile a probe's stretch of time has,
which devices are on a delivery in transit) it is given as functions by the entry point
(coldtrace/bootstrap.py): alerts sits below deliveries. Ingest sees it through
``RulesObserver``, one of its after-store observers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from alerts.containment import SILENCE, Containment, Quarantine
from alerts.emitter import Emitter
from alerts.judges import JudgeRegistry, Piece
from alerts.notify import Notifier, channels_from
from alerts.readings import StoredReadings, samples_of
from alerts.rules import HOUR_MS, Sample, Window
from alerts.runner import Runner, Span
from alerts.silence_watch import OnDelivery, SilenceWatch
from alerts.store import BreachStore
from coldtrace.influx import InfluxClient
from coldtrace.observers import Observer, ObserverHealth
from coldtrace.profiles import Profile
from coldtrace.records import PlacedReading
from coldtrace.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryLookups:
    """What the stage asks the store about deliveries, each in a session of its own."""

    # (session, device, probe, device ms) -> the stretch [start, end) around it over which
    # the probe is judged by one profile, and that profile (None: it measures no compartment)
    piece_at: Callable[[Session, str, str, int], Piece]
    # (session, [(device, probe, device ms)]) -> piece_at of each, in order, asked together
    pieces_at: Callable[[Session, list[tuple[str, str, int]]], list[Piece]]
    on_delivery: OnDelivery  # (session, now ms) -> device -> since when on a delivery in transit


class RulesStage:
    """``profiles``: the checked product profiles (id -> profile); ``clock``: wall clock (s),
    injected by tests."""

    def __init__(
        self,
        settings: Settings,
        profiles: dict[str, Profile],
        deliveries: DeliveryLookups,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.profiles = profiles
        self.clock = clock
        horizon_ms = round(settings.alerts_late_horizon_h * HOUR_MS)
        self.windows: dict[str, list[Window]] = {
            device: [(_ms(a), _ms(b)) for a, b in spans]
            for device, spans in settings.alerts_suppress_windows.items()
        }
        self.influx = InfluxClient(settings)
        self.store = BreachStore(settings.sqlalchemy_url)
        self.readings = StoredReadings(self.influx, self.windows)
        channels = channels_from(settings)
        self.notifier = Notifier(self.store, channels, settings.notify_retry_max_s, clock)
        stopping = threading.Event()
        self.emitter = Emitter(
            self.store,
            self.influx,
            self.notifier.wake,
            [c.name for c in channels],
            round(settings.alerts_late_after_s * 1000),
            clock,
            stopping,
        )
        self.judges = JudgeRegistry(
            profiles,
            self.profile_of,
            lambda device, probe, ts: self.store.ask(
                lambda session: deliveries.piece_at(session, device, probe, ts)
            ),
            lambda asks: self.store.ask(lambda session: deliveries.pieces_at(session, asks)),
            self.store.known_of,
            self.readings,
            self.emitter.emit,
            horizon_ms,
            clock,
        )
        self.containment = Containment(clock, self.judges.forget)
        self.silence = SilenceWatch(
            self.store,
            deliveries.on_delivery,
            self.readings.recent_devices,
            self._silence_profile,
            self.containment,
            self.emitter.emit,
            round(settings.alerts_silent_after_s * 1000),
            horizon_ms,
            clock,
        )
        self.runner = Runner(self, self.containment, settings.alerts_queue_batches, stopping)
        self.readings_evaluated = 0

    def profile_of(self, device: str) -> Profile | None:
        """The settings' profile of a device (its own, else the default; None: none)."""
        pid = self.settings.alerts_device_profiles.get(device, self.settings.alerts_default_profile)
        return None if pid is None else self.profiles[pid]

    def _silence_profile(self, device: str) -> str:
        # The silence is the device's, not a probe's: it is filed under the profile its
        # probes were last judged by (the delivery's), else the settings' one.
        default = self.profile_of(device)
        return self.judges.judged_by.get(device) or (default.id if default else "")

    # -- ingest's side: never blocks -------------------------------------------------------

    def observe(self, placed: list[PlacedReading]) -> None:
        self.runner.observe(placed)

    def reread(self, placed: list[PlacedReading]) -> None:
        self.runner.reread(placed)

    # -- lifecycle and health --------------------------------------------------------------

    def start(self) -> None:
        self.runner.start()
        self.notifier.start()

    def stop(self) -> None:
        self.runner.stop()
        self.notifier.stop()
        self.influx.close()

    def alive(self) -> bool:
        """Both threads running: ingest's /health fails (and ingest exits) otherwise."""
        return self.runner.thread.is_alive() and self.notifier.thread.is_alive()

    @property
    def quarantined(self) -> dict[tuple[str, str], Quarantine]:
        return self.containment.quarantined

    @property
    def errors(self) -> int:
        return self.containment.errors

    def problems(self) -> list[str]:
        """Why the running stage is not judging everything now, one line each ([] when it
        is): for ingest's /health, which is red while this is not empty (and while the stage's
        threads are not alive, ``alive``)."""
        return self.containment.problems()

    def metrics(self) -> dict[str, int]:
        """For ingest's /metrics (names without the coldtrace_ prefix; Prometheus labels)."""
        figures = {
            "alerts_up": int(self.alive()),
            "alerts_queue_batches": self.runner.queue.qsize(),
            "alerts_overflow_devices": len(self.runner.overflow),
            "alerts_engines": self.judges.count(),
            "alerts_readings_evaluated_total": self.readings_evaluated,
            "alerts_readings_too_late_total": self.judges.too_late(),
            "alerts_errors_total": self.containment.errors,
            "alerts_failing": len(self.containment.failing),
            "alerts_quarantined_probes": len(self.containment.quarantined),
            "alerts_readings_unjudged_total": self.containment.unjudged,
        }
        for (rule, transition), n in sorted(self.emitter.transitions.items()):
            figures[f'alerts_breaches_total{{rule="{rule}",transition="{transition}"}}'] = n
        return figures

    # -- the work of the runner's thread ---------------------------------------------------

    def watch_known_devices(self) -> None:
        self.silence.watch_known_devices()

    def evaluate(self, placed: list[PlacedReading]) -> None:
        """Judge a stored batch: each device's probes and door, then its silence."""
        by_device: dict[str, list[PlacedReading]] = defaultdict(list)
        for p in placed:
            by_device[p.device].append(p)
        batch = {d: samples_of(rs, self.windows.get(d, [])) for d, rs in by_device.items()}
        try:
            # The engines this batch creates (all of them, after a restart) read their
            # history together first: a few queries for the batch instead of a few per probe.
            self.judges.prime(batch, self.containment.run)
            for device, readings in by_device.items():
                for key, samples in batch[device].items():
                    self.containment.judge(device, key, samples, self._judge)
                newest = max(p.ts for p in readings)
                self.containment.run(device, SILENCE, self.silence.heard, device, newest)
                self.readings_evaluated += len(readings)
        finally:
            self.judges.release()

    def stored(self, spans: Mapping[str, Span]) -> dict[str, dict[str, list[Sample]]]:
        """What InfluxDB holds of each device over its span (device ms, both included)."""
        return self.readings.samples_of_devices(
            {d: lo for d, (lo, _) in spans.items()}, {d: hi for d, (_, hi) in spans.items()}
        )

    def judge_stored(self, device: str, samples: dict[str, list[Sample]], newest: int) -> None:
        for key, probe_samples in samples.items():
            self.containment.judge(device, key, probe_samples, self._judge)
        self.containment.run(device, SILENCE, self.silence.heard, device, newest)

    def every_second(self) -> None:
        self.check_silence()
        self.retire_idle()

    def check_silence(self) -> None:
        """Silence counts only for devices on a delivery in transit (alerts/silence.py)."""
        self.silence.check()

    def retire_idle(self) -> None:
        self.judges.retire_idle()

    def _judge(self, device: str, key: str, samples: list[Sample]) -> None:
        """The judging of one (device, probe or door): the unit an error quarantines."""
        self.judges.judge(device, key, samples)


class RulesObserver(Observer):
    """The rules stage as one of ingest's after-store observers. ``build`` gives the stage,
    or None while no probe has a profile to be judged by (rules off: the settings name none
    and no probe is assigned to a compartment); asked again every minute while off, so the
    first assignment switches the rules on without a restart."""

    name = "rules stage"

    def __init__(self, build: Callable[[], RulesStage | None]) -> None:
        self.build = build
        self.stage = build()

    def switch_on(self) -> bool:
        """Start the stage if it is off and now has something to judge by; whether it runs."""
        if self.stage is None:
            stage = self.build()
            if stage is None:
                return False
            stage.start()
            self.stage = stage
            log.info("rules stage started: probes are now assigned to compartments")
        return True

    def observe(self, placed: list[PlacedReading]) -> None:
        if self.stage is not None:
            self.stage.observe(placed)

    def reread(self, placed: list[PlacedReading]) -> None:
        if self.stage is not None:  # some may be dead-lettered: judge what was stored
            self.stage.reread(placed)

    def start(self) -> None:
        if self.stage is not None:
            self.stage.start()

    def stop(self) -> None:
        if self.stage is not None:
            self.stage.stop()

    def alive(self) -> bool:
        return self.stage is None or self.stage.alive()

    def every_minute(self) -> None:
        self.switch_on()

    def health(self) -> ObserverHealth:
        if self.stage is None:
            return ObserverHealth()
        problems = self.stage.problems()
        return ObserverHealth(
            {"rules_alive": self.stage.alive(), "rules_judging": not problems},
            problems,
            {
                "rules_last_error": self.stage.containment.last_error,
                "rules_quarantined": [q.__dict__ for q in self.stage.quarantined.values()],
            },
        )

    def metrics(self) -> dict[str, int]:
        return {} if self.stage is None else self.stage.metrics()


def _ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)

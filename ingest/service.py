"""`coldtrace ingest`: the consumer, the pipeline, the health endpoint and the after-store
observers it is given (coldtrace/bootstrap.py passes the rules stage; coldtrace/observers.py).

Three threads do the work: paho's network loop puts messages in a bounded inbox; the writer
collects a batch (by count, or after a short delay) and prepares it while the store thread
writes the previous one; a batch is acked only once its write returned (the PUBACK of
each message, and each device's end-to-end acknowledgement on its `ack` topic), and handed
to the observers, in their order, before it is acked. Any thread dying (an observer's too)
fails /health and ends the process with a non-zero status, for the supervisor (systemd,
compose) to restart it; the broker redelivers whatever was not acked.
"""

from __future__ import annotations

import gc
import json
import logging
import queue
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from coldtrace.influx import InfluxClient, InfluxRejected, InfluxUnavailable
from coldtrace.observers import Observer
from coldtrace.settings import Settings, port_taken
from ingest.consumer import MqttConsumer
from ingest.held import HeldReadings
from ingest.lines import heartbeat_line
from ingest.pipeline import InboundMessage, Pipeline, Stopping, Work

log = logging.getLogger(__name__)


class IngestService:
    """Ingest; ``observers`` are told of each stored batch, in this order. The relational
    store must be at the migrations' head (coldtrace/bootstrap.py sees to it)."""

    def __init__(self, settings: Settings, observers: list[Observer]) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        self.inbox: queue.Queue[InboundMessage] = queue.Queue(settings.ingest_max_inflight + 64)
        self.influx = InfluxClient(settings)
        self.pipeline = Pipeline(
            self.influx,
            HeldReadings(settings.sqlalchemy_url),
            max_payload_bytes=settings.ingest_max_payload_bytes,
            dedup_window_h=settings.ingest_dedup_window_h,
            stop=self.stop_event,
            max_clock_ahead_s=settings.ingest_max_clock_ahead_s,
            late_horizon_h=settings.alerts_late_horizon_h,
        )
        self.consumer = MqttConsumer(settings, self.inbox, self.stop_event)
        self.writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self.failure: BaseException | None = None
        self.health_server: ThreadingHTTPServer | None = None
        # told of each stored batch, in this order (the rules stage judges it); like the
        # writer, an observer's death fails /health and ends the process
        self.observers = observers
        self.lag_ns = 0  # the longest receipt-to-stored time since the last heartbeat

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        # The port first: taken, it stops ingest with one line before anything connects.
        if self.settings.ingest_health_port:
            self.health_server = _serve_health(
                self, self.settings.ingest_health_host, self.settings.ingest_health_port
            )
        self._ensure_database()
        for observer in self.observers:
            observer.start()
        self.consumer.start()
        self.writer.start()

    def run(self) -> int:
        """Run until SIGTERM/SIGINT or a dead loop; return the process exit status."""

        def _on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping after the current batch", signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        # A batch is tens of thousands of container objects, alive until it is stored and
        # freed by reference counting: a young-generation pass finds no garbage in them, yet
        # at 50,000 (the last setting; Python's default is 700) one ran per batch and took
        # 15% of ingest's CPU. At a million they run only if tracked objects really pile up;
        # a collection every minute (~0.1 s under load) catches the rare reference cycle.
        gc.freeze()
        gc.set_threshold(1_000_000, 50, 100)
        self.start()
        last_report = last_minute = time.monotonic()
        while not self.stop_event.wait(1.0):
            if not self.consumer.alive():
                self.failure = RuntimeError("MQTT network loop died")
                log.error("MQTT network loop died; stopping")
                break
            dead = [o.name for o in self.observers if not o.alive()]
            if dead:
                self.failure = RuntimeError(f"{dead[0]} died")
                log.error("%s died; stopping", dead[0])
                break
            if time.monotonic() - last_report >= self.settings.ingest_heartbeat_s:
                last_report = time.monotonic()
                log.info("ingest totals: %s", dict(self.pipeline.totals))
                self._heartbeat()
            if time.monotonic() - last_minute >= 60:
                last_minute = time.monotonic()
                gc.collect(1)
                for observer in self.observers:
                    observer.every_minute()
        self.shutdown()
        return 1 if self.failure else 0

    def shutdown(self) -> None:
        self.stop_event.set()
        if self.writer.is_alive():
            self.writer.join(timeout=30)
        for observer in self.observers:
            observer.stop()
        self.consumer.stop()
        if self.health_server is not None:
            self.health_server.shutdown()
        self.influx.close()
        log.info("ingest stopped; totals: %s", dict(self.pipeline.totals))

    def _ensure_database(self) -> None:
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                self.influx.create_database()
                return
            except InfluxUnavailable as exc:
                log.warning("InfluxDB %s unavailable (%s); retrying", self.settings.influx_url, exc)
            self.stop_event.wait(delay)
            delay = min(delay * 2, 10)

    # -- the writer --------------------------------------------------------------------------

    def _write_loop(self) -> None:
        """Prepare batch N+1 while batch N is being written; ack N once its write returned."""
        inflight: tuple[list[InboundMessage], Work, Future[None]] | None = None
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="ingest-store") as store:
                while not self.stop_event.is_set():
                    batch = self._collect()
                    if not batch:
                        if inflight is not None:
                            self._finish(*inflight)
                            inflight = None
                        continue
                    work = self.pipeline.prepare(batch)
                    if inflight is not None and not self._finish(*inflight):
                        # The ledger counted the refused batch's readings as known when this
                        # one was prepared: prepare it again once the refused one is settled.
                        self.pipeline.forget([batch])
                        work = self.pipeline.prepare(batch)
                    inflight = (batch, work, store.submit(self.pipeline.store, work))
                if inflight is not None:
                    self._finish(*inflight)
        except Stopping:
            pass
        except BaseException as exc:
            log.exception("ingest writer died")
            self.failure = exc
            self.stop_event.set()

    def _finish(self, batch: list[InboundMessage], work: Work, stored: Future[None]) -> bool:
        """Wait for a batch's write and ack it; False if InfluxDB refused it (then recovered)."""
        try:
            stored.result()
            # receipt to stored, for the oldest message of the batch: ingest's own lag
            self.lag_ns = max(self.lag_ns, time.time_ns() - batch[0].received_ns)
            refused = False
            self.consumer.publish_acks(work.acks)
            for observer in self.observers:
                observer.observe(work.placed)
        except InfluxRejected as exc:
            log.warning("InfluxDB refused a batch (%s); storing its messages one by one", exc)
            self.pipeline.forget([batch])
            self.consumer.publish_acks(self.pipeline.recover(batch, work))
            for observer in self.observers:  # some may be dead-lettered
                observer.reread(work.placed)
            refused = True
        self.consumer.ack(batch)
        return not refused

    def _collect(self) -> list[InboundMessage]:
        try:
            batch = [self.inbox.get(timeout=0.2)]
        except queue.Empty:
            return []
        limit = self.settings.ingest_batch_messages
        deadline = time.monotonic() + self.settings.ingest_batch_delay_ms / 1000
        while len(batch) < limit:
            try:
                batch.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    # -- health ------------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        """Ingest's state as a point of measurement ``ingest`` (the Devices and ingest
        dashboard, the lag alert). Not written while InfluxDB is away: /health says so."""
        ok, body = self.health()
        fields: dict[str, int | bool] = {
            "up": ok,
            "inbox": self.inbox.qsize(),
            "received": self.consumer.received,
            "lag_ms": self.lag_ns // 1_000_000,
            **{name: n for name, n in self.pipeline.totals.items()},
        }
        if "rules_alive" in body:  # the rules stage observes (its part of /health)
            fields["rules_ok"] = bool(body["rules_alive"] and body["rules_judging"])
            quarantined = body.get("rules_quarantined")
            fields["rules_quarantined"] = len(quarantined) if isinstance(quarantined, list) else 0
        self.lag_ns = 0
        line = heartbeat_line(self.settings.mqtt_client_id, fields, time.time_ns())
        try:
            self.influx.write(line.encode(), precision="ns")
        except (InfluxUnavailable, InfluxRejected) as exc:
            log.warning("heartbeat not written: %s", exc)

    def health(self) -> tuple[bool, dict[str, object]]:
        retrying = self.pipeline.retrying_since
        retry_s = 0.0 if retrying is None else time.monotonic() - retrying
        checks = {
            "mqtt_loop_alive": self.consumer.alive(),
            "mqtt_connected": self.consumer.connected.is_set(),
            "writer_alive": self.writer.is_alive() and self.failure is None,
            "influx_writable": retry_s < self.settings.ingest_unhealthy_after_s,
        }
        observed = [o.health() for o in self.observers]
        reasons: list[str] = []
        for h in observed:
            checks.update(h.checks)
            reasons += h.reasons
        ok = all(checks.values())
        body: dict[str, object] = {
            "status": "ok" if ok else "failing",
            # one line per failing check, naming what and why
            "reasons": [name for name, passed in checks.items() if not passed] + reasons,
            **checks,
            "influx_retrying_s": round(retry_s, 1),
            "inbox": self.inbox.qsize(),
            "totals": dict(self.pipeline.totals),
        }
        for h in observed:
            body.update(h.details)
        return ok, body

    def metrics(self) -> str:
        ok, _ = self.health()
        lines = [
            f"coldtrace_ingest_up {int(ok)}",
            f"coldtrace_ingest_inbox {self.inbox.qsize()}",
            f"coldtrace_ingest_received_messages_total {self.consumer.received}",
        ]
        for name in sorted(self.pipeline.totals):
            lines.append(f"coldtrace_ingest_{name}_total {self.pipeline.totals[name]}")
        for observer in self.observers:
            lines.extend(f"coldtrace_{name} {n}" for name, n in observer.metrics().items())
        return "\n".join(lines) + "\n"


def _serve_health(service: IngestService, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                ok, body = service.health()
                self._send(200 if ok else 503, "application/json", json.dumps(body))
            elif self.path == "/metrics":
                self._send(200, "text/plain; version=0.0.4", service.metrics())
            else:
                self._send(404, "application/json", '{"detail": "try /health or /metrics"}')

        def _send(self, status: int, ctype: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # health probes every few seconds would drown the log

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise port_taken("INGEST_HEALTH_PORT", host, port, exc) from None
    threading.Thread(target=server.serve_forever, name="ingest-health", daemon=True).start()
    return server

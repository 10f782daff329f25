# The sensor box: sample on a timer, write each reading to the flash outbox, and forward the
# outbox oldest first; a watchdog resets the board if the loop stops being healthy.
import gc
import json
import sys
import time

import asyncio
import machine
from micropython import const

from clock import Clock, Uptime, ntp_sync
from nmea import Gps
from outbox import Outbox
from sensors import Battery, Door, Indicator, Probes, probe_fault
from store import Counters, makedirs

_BACKOFF_MIN_MS = const(1000)
_BACKOFF_MAX_MS = const(60000)
_NTP_RESYNC_MS = const(3600000)  # the crystal drifts a few seconds a day
_UPLINK_IDLE_MS = const(200)
_POLL_MS = const(50)  # the GPS UART and the door switch
_NMEA_MAX = const(128)  # an NMEA sentence is at most 82 characters


def load_config():
    """The device's settings (config.load). The config module is dropped again after: its
    defaults table is needed at boot, not in RAM for the device's whole life."""
    import config

    try:
        return config.load()
    finally:
        del sys.modules["config"]


def in_alarm(probes, limits):
    """Probe ids out of their configured limits, or without a temperature to compare."""
    bad = []
    for name, (low, high) in limits.items():
        value = probes.get(name)
        if probe_fault(value) or not low <= value <= high:
            bad.append(name)
    return bad


class Device:
    def __init__(self, cfg):
        self.cfg = cfg
        pins = cfg["pins"]
        makedirs("data")
        self.uptime = Uptime()
        self.clock = Clock(self.uptime)
        self.outbox = Outbox("data/outbox", cfg["outbox_bytes"], cfg["segment_bytes"])
        self.counters = Counters(
            "data/state.json",
            cfg["seq_block"],
            self.outbox.last_known_seq(),
            self.outbox.last_boot,
        )
        self.probes = Probes(pins["onewire"], cfg["probes"], cfg["ds18b20_conversion_ms"])
        self.sht = None
        if cfg["sht"]:
            from sht import Sht  # only boxes with an air sensor hold its code

            i2c = machine.I2C(0, scl=machine.Pin(pins["i2c_scl"]), sda=machine.Pin(pins["i2c_sda"]))
            self.sht = Sht(i2c, cfg["sht"])
        self.gps = Gps()
        self.gps_uart = machine.UART(2, baudrate=9600, tx=pins["gps_tx"], rx=pins["gps_rx"])
        self.door = Door(pins["door"])
        self.battery = Battery(pins["battery_adc"], cfg["battery_divider"])
        self.indicator = Indicator(pins["led"], pins["buzzer"])
        self.tethered = cfg["uplink"] == "uart"
        # Only the uplink in use is imported: the MQTT client is not needed when tethered.
        if self.tethered:
            from tether import UartLink

            self.link = UartLink(cfg)
        else:
            from uplink import MqttLink

            # The same interface as UartLink (duck-typed: MicroPython has no typing module).
            self.link = MqttLink(cfg, self.on_message)  # type: ignore[assignment]
        # Every pin is wired now (the link's too): their table need not stay in RAM.
        del cfg["pins"]
        self._wake = False  # sample now: the door opened or closed, or a new config
        self._sampled_at = self._uplink_at = time.ticks_ms()
        print(
            "coldtrace %s: boot %d, next seq %d, %d readings in the outbox"
            % (cfg["device"], self.counters.boot, self.counters.next_seq, self.outbox.pending)
        )

    # -- measuring --------------------------------------------------------------------------

    async def measure(self):
        probes = await self.probes.read()
        if self.sht:
            probes[self.cfg["sht_probe"]] = await self.sht.read()
        up = self.uptime.ms()
        reading = {
            "seq": self.counters.take_seq(),
            "ts": self.clock.now_ms(),
            "up": up,
            "probes": probes,
            "door": self.door.open,
            "battery_v": self.battery.volts(),
        }
        fix = self.gps.current(up)
        if fix:
            reading["gps"] = fix
        strength = self.link.rssi()
        if strength is not None:
            reading["rssi_dbm"] = strength
        return reading

    async def sampler(self):
        while True:
            started = time.ticks_ms()
            reading = await self.measure()
            self.outbox.append(reading, self.counters.boot)
            alarm = in_alarm(reading["probes"], self.cfg["limits"])
            self.indicator.set(bool(alarm))
            self._sampled_at = time.ticks_ms()
            interval = self.cfg["interval_ms"]
            if alarm:  # sample faster while out of limits
                interval = min(interval, self.cfg["alarm_interval_ms"])
            self._wake = False
            # From sample to sample: the time the measurement took (the DS18B20's conversion)
            # is not added to the interval. Woken early by a flag looked at every _POLL_MS (the
            # inputs loop's period, so the CPU sleeps no longer than before): an asyncio.Event
            # would load asyncio's event module, over 1 KB of heap.
            wait = interval - time.ticks_diff(time.ticks_ms(), started)
            while wait > 0 and not self._wake:
                await asyncio.sleep_ms(min(wait, _POLL_MS))
                wait = interval - time.ticks_diff(time.ticks_ms(), started)

    async def inputs(self):
        """GPS sentences (which set the clock while nothing else has) and the door switch; a
        door that opens or closes is sampled at once."""
        gps, clock = self.gps, self.clock
        pending = b""  # bytes of a sentence still arriving
        refused = None  # the day (epoch days) of the last GPS time the clock refused
        while True:
            if self.gps_uart.any():
                pending += self.gps_uart.read() or b""
                end = pending.find(b"\n")
                while end >= 0:
                    gps.feed(pending[: end + 1], self.uptime.ms())
                    pending = pending[end + 1 :]
                    end = pending.find(b"\n")
                    if not clock.synced() and gps.utc_ms is not None:
                        if clock.set(gps.utc_ms, "gps", gps.utc_up):
                            print("clock set from GPS")
                        elif refused != gps.utc_ms // 86400000:  # once a day of GPS time
                            refused = gps.utc_ms // 86400000
                            print("GPS time refused, day", refused)
                if len(pending) > _NMEA_MAX:
                    pending = b""  # noise without line ends
            if self.door.poll():
                self._wake = True
            await asyncio.sleep_ms(_POLL_MS)

    # -- forwarding -------------------------------------------------------------------------

    def on_message(self, topic, message):
        """A message on the device's ack or config topic."""
        if topic.endswith(b"/ack"):
            try:
                ack = json.loads(message)
                self.outbox.confirm(ack["from"], ack["seq"], ack["high"])
            except (ValueError, KeyError, TypeError) as e:
                print("ack ignored:", repr(e))
            return
        import config  # dropped again after, as at boot (load_config)

        try:
            update = config.remote_update(message)
            self.cfg.update(update)
            if "probes" in update:
                self.probes.names = update["probes"]
            config.save_remote(update)
        except ValueError as e:
            print("config ignored:", e)
            return
        finally:
            del sys.modules["config"]
        self._wake = True  # the new interval and limits apply from the next reading
        print("config applied:", sorted(update))

    async def forward(self):
        """Send what the outbox has not sent on this connection, oldest first, in batches;
        readings leave it once ingest acknowledges them (on_message), or once written when
        tethered (the gateway took them)."""
        outbox = self.outbox
        while outbox.last_seq != outbox.cursor:  # a reading not sent on this connection
            boot, readings, dropped = self.outbox.take(self.cfg["batch_max"])
            if not readings:
                return
            batch = {"device": self.cfg["device"], "boot": boot, "readings": readings}
            if dropped:
                batch["dropped"] = dropped
            payload = json.dumps(batch)
            self.link.send(payload)
            if self.tethered:
                self.outbox.confirm(0, readings[-1]["seq"], readings[-1]["seq"])
            del batch, readings, payload
            gc.collect()
            await asyncio.sleep_ms(0)  # let the sampler in while a backlog drains

    async def uplink(self):
        backoff = _BACKOFF_MIN_MS
        ntp_at = None
        while True:
            self._uplink_at = time.ticks_ms()
            try:
                if not await self.link.network_up():
                    raise OSError("no network")
                if not self.link.connected:
                    self.link.connect()
                    self.outbox.rewind()
                    print("uplink connected")
                ntp_wait = _NTP_RESYNC_MS if self.clock.synced() else self.cfg["ntp_retry_ms"]
                if not self.tethered and (
                    ntp_at is None or time.ticks_diff(time.ticks_ms(), ntp_at) > ntp_wait
                ):
                    ntp_at = time.ticks_ms()
                    if ntp_sync(self.clock):
                        print("clock set by NTP")
                await self.forward()
                self.link.poll()
                backoff = _BACKOFF_MIN_MS
                await asyncio.sleep_ms(_UPLINK_IDLE_MS)
            except Exception as e:
                # Besides OSError, umqtt raises MQTTException (connection refused) and
                # AssertionError or IndexError on a broken connection: each means reconnect.
                print("uplink down (%r); retry in %d ms" % (e, backoff))
                self.link.close()
                await asyncio.sleep_ms(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_MS)

    # -- watchdog ---------------------------------------------------------------------------

    def healthy(self):
        """The sampler took a reading in time and the uplink loop has come round lately."""
        now = time.ticks_ms()
        sample_due = 2 * self.cfg["interval_ms"] + 5000
        return (
            time.ticks_diff(now, self._sampled_at) < sample_due
            and time.ticks_diff(now, self._uplink_at) < 2 * _BACKOFF_MAX_MS + 30000
        )

    async def watchdog(self):
        wdt = machine.WDT(timeout=self.cfg["watchdog_ms"])
        while True:
            if self.healthy():
                wdt.feed()
            await asyncio.sleep_ms(1000)

    async def run(self):
        await asyncio.gather(self.sampler(), self.inputs(), self.uplink(), self.watchdog())


def main():
    asyncio.run(Device(load_config()).run())

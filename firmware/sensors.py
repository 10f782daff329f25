# The sensors of the box: DS18B20 food probes on 1-Wire, the door reed switch, the battery
# voltage and the status LED (plus an optional buzzer). The optional SHT4x/SHT3x is in sht.py.
import time

import asyncio
import machine
from binascii import hexlify

from micropython import const

_DS18B20_DISCONNECTED = const(-127.0)
_DS18B20_POWER_ON = const(85.0)
_PLAUSIBLE = const((-80.0, 100.0))


def probe_fault(value):
    """Why a probe value is not a temperature, or None when it is one (as ingest judges)."""
    if value is None:
        return "no_value"
    if value == _DS18B20_DISCONNECTED:
        return "disconnected"
    if value == _DS18B20_POWER_ON:
        return "power_on_value"
    if not _PLAUSIBLE[0] <= value <= _PLAUSIBLE[1]:
        return "out_of_range"
    return None


class Probes:
    """DS18B20 probes on one 1-Wire bus. `names` maps a probe's ROM (hex) to its probe id;
    with names, exactly those probes are reported (null when missing or failing its CRC);
    without, every probe found is reported under its ROM."""

    def __init__(self, pin, names, conversion_ms):
        import ds18x20
        import onewire

        self._sensor = ds18x20.DS18X20(onewire.OneWire(machine.Pin(pin)))
        self._bus_errors = (OSError, onewire.OneWireError)
        self.names = names
        self._conversion_ms = conversion_ms
        self.crc_errors = 0

    async def read(self):
        try:
            roms = self._sensor.scan()
            if roms:
                self._sensor.convert_temp()
                await asyncio.sleep_ms(self._conversion_ms)
        except self._bus_errors:  # no presence pulse: every probe unplugged or a short
            roms = []
        values = dict.fromkeys(self.names.values())
        for rom in roms:
            key = hexlify(rom).decode()
            name = self.names.get(key, None if self.names else key)
            if name is None:
                continue
            values[name] = None
            try:
                values[name] = self._sensor.read_temp(rom)
            except Exception:  # the driver raises a bare Exception on a CRC mismatch
                self.crc_errors += 1
        return values


class Door:
    """Reed switch to ground with the pull-up: open door = high. Edges are noted by the
    interrupt; the state changes once the pin has been quiet for `debounce_ms`."""

    def __init__(self, pin, debounce_ms=50):
        self._pin = machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)
        self._debounce_ms = debounce_ms
        self._edge_at = time.ticks_ms()
        self.open = self._pin.value() == 1
        self._pin.irq(self._edge, machine.Pin.IRQ_RISING | machine.Pin.IRQ_FALLING)

    def _edge(self, pin):
        self._edge_at = time.ticks_ms()  # interrupt context: no allocation

    def poll(self):
        """Update the debounced state; True when it changed."""
        if time.ticks_diff(time.ticks_ms(), self._edge_at) < self._debounce_ms:
            return False
        now_open = self._pin.value() == 1
        changed = now_open != self.open
        self.open = now_open
        return changed


class Battery:
    def __init__(self, pin, divider):
        self._adc = machine.ADC(machine.Pin(pin))
        self._adc.atten(machine.ADC.ATTN_11DB)
        self._divider = divider

    def volts(self):
        return round(self._adc.read_uv() * self._divider / 1000000, 2)


class Indicator:
    """The status LED, and the buzzer if one is fitted: on while a probe is in alarm."""

    def __init__(self, led_pin, buzzer_pin):
        self._pins = []
        for p in (led_pin, buzzer_pin):
            if p is not None:
                self._pins.append(machine.Pin(p, machine.Pin.OUT))

    def set(self, alarm):
        for p in self._pins:
            p.value(1 if alarm else 0)

# Fake `machine` for the unix port: pins, UARTs, I2C (with an SHT4x/SHT3x), ADC and WDT.
from _hardware import elapsed_ms, scenario

PINS = {}  # pin id -> the last Pin made for it, so a test can drive or inspect it


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=IN, pull=None):
        self.id = id
        self.mode = mode
        self._handler = None
        self._level = scenario().get("pins", {}).get(str(id), 0)
        PINS[id] = self

    def value(self, level=None):
        if level is None:
            return self._level
        self._level = level

    def irq(self, handler=None, trigger=IRQ_RISING | IRQ_FALLING):
        self._handler = handler

    def drive(self, level):
        """Test side: the outside world sets the input level; an edge fires the interrupt."""
        if level != self._level:
            self._level = level
            if self._handler:
                self._handler(self)


class UART:
    """UART 2 is the GPS: it plays the scenario's NMEA file as a byte stream at
    `nmea_bytes_per_s` (960 at 9600 baud), so reads may end mid-sentence as on the wire.
    Writes to any UART are appended to the file named in the scenario's `uart_tx` for it."""

    def __init__(self, id, baudrate=9600, tx=None, rx=None, **kw):
        self.id = id
        self._stream = None
        self._sent = 0

    def any(self):
        if self.id != 2:
            return 0
        if self._stream is None:
            path = scenario().get("nmea")
            self._stream = b""
            if path:
                with open(path, "rb") as f:
                    self._stream = f.read()
        rate = scenario().get("nmea_bytes_per_s", 960)
        return min(len(self._stream), elapsed_ms() * rate // 1000) - self._sent

    def read(self, n=None):
        available = self.any()
        if available <= 0:
            return None
        n = available if n is None else min(n, available)
        data = self._stream[self._sent : self._sent + n]
        self._sent += n
        return data

    def write(self, data):
        path = scenario().get("uart_tx", {}).get(str(self.id))
        if path:
            with open(path, "ab") as f:
                f.write(data)
        return len(data)


def _crc8(data):
    crc = 0xFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


class I2C:
    """An SHT4x/SHT3x at 0x44 when the scenario has `sht_c` (and `sht_bad_crc` to corrupt)."""

    def __init__(self, id, scl=None, sda=None, freq=400000):
        self._command = None

    def writeto(self, addr, buf):
        if addr != 0x44 or "sht_c" not in scenario():
            raise OSError(19)  # ENODEV: nothing answers at that address
        self._command = bytes(buf)

    def readfrom(self, addr, n):
        s = scenario()
        if addr != 0x44 or "sht_c" not in s or self._command is None:
            raise OSError(19)
        raw = round((s["sht_c"] + 45) * 65535 / 175)
        t = bytes([raw >> 8, raw & 0xFF])
        rh = b"\x80\x00"
        crc = _crc8(t) ^ (0xFF if s.get("sht_bad_crc") else 0)
        return t + bytes([crc]) + rh + bytes([_crc8(rh)])


class ADC:
    ATTN_11DB = 3

    def __init__(self, pin):
        self.pin = pin

    def atten(self, value):
        pass

    def read_uv(self):
        return scenario().get("battery_uv", 1150000)


class WDT:
    feeds = 0

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout

    def feed(self):
        WDT.feeds += 1

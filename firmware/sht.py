# The optional SHT4x/SHT3x air sensor on I2C, in a module of its own: imported only by the
# boxes that have one (config "sht").
import asyncio


def crc8_sensirion(data):
    crc = 0xFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


class Sht:
    """Sensirion SHT4x (command 0xFD) or SHT3x (0x2400) air sensor on I2C; each word of its
    answer carries a CRC-8, and a bad one gives no value rather than a wrong one."""

    _COMMANDS = {"sht4x": (b"\xfd", 10), "sht3x": (b"\x24\x00", 16)}

    def __init__(self, i2c, model, address=0x44):
        self._i2c = i2c
        self._command, self._wait_ms = self._COMMANDS[model]
        self._address = address
        self.crc_errors = 0

    async def read(self):
        try:
            self._i2c.writeto(self._address, self._command)
            await asyncio.sleep_ms(self._wait_ms)
            data = self._i2c.readfrom(self._address, 6)
        except OSError:
            return None
        if crc8_sensirion(data[0:2]) != data[2]:
            self.crc_errors += 1
            return None
        return round(-45 + 175 * ((data[0] << 8) | data[1]) / 65535, 2)

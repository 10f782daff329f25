# Tethered mode: the box's batches as JSON lines on a UART to the in-cab gateway, which holds
# the cellular link. The same interface as uplink.MqttLink, imported instead of it.
import machine


class UartLink:
    """Each batch as one JSON line on UART1: written means sent."""

    connected = True

    def __init__(self, cfg):
        pins = cfg["pins"]
        self._uart = machine.UART(1, baudrate=115200, tx=pins["tether_tx"], rx=pins["tether_rx"])

    async def network_up(self):
        return True

    def rssi(self):
        return None

    def connect(self):
        pass

    def send(self, payload):
        self._uart.write(payload)
        self._uart.write(b"\n")

    def poll(self):
        pass

    def close(self):
        pass

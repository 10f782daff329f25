# Fake `network`: a Wi-Fi station, in coverage unless the scenario says `wifi`: false;
# the sockets the firmware then opens are real, to 127.0.0.1.
from _hardware import scenario

STA_IF = 0


class WLAN:
    def __init__(self, interface=STA_IF):
        self._active = False
        self._joined = False

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = on

    def connect(self, ssid=None, key=None):
        self._joined = True  # keeps trying to join; associated whenever there is coverage

    def disconnect(self):
        self._joined = False

    def isconnected(self):
        return self._joined and scenario().get("wifi", True)

    def status(self, param=None):
        if param == "rssi":
            return scenario().get("rssi", -67)
        return 1010 if self.isconnected() else 1000

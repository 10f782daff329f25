# Fake `onewire`: the bus itself; the probes on it are in the fake ds18x20.


class OneWireError(Exception):
    pass


class OneWire:
    def __init__(self, pin):
        self.pin = pin

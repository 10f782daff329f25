# The simulated world behind the fake ESP32 modules: a JSON scenario file named by the
# COLDTRACE_FAKE_HW environment variable, re-read on every access so a test can change it
# while the firmware runs. Only hardware is faked; files, sockets and JSON are real.
import json
import os
import time

_started = time.ticks_ms()


def scenario():
    path = os.getenv("COLDTRACE_FAKE_HW")
    if not path:
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}  # the test is rewriting it right now: the next read will see it


def elapsed_ms():
    return time.ticks_diff(time.ticks_ms(), _started)

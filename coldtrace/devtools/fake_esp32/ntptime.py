# Fake `ntptime`: the host's clock, once the scenario's `ntp_after_ms` has passed since start
# (never when it is null: no NTP server reachable), off by the scenario's `ntp_skew_s` (a
# server that lies).

from _hardware import elapsed_ms, scenario


def time():
    after = scenario().get("ntp_after_ms", 0)
    if after is None or elapsed_ms() < after:
        raise OSError(110)  # ETIMEDOUT, as when the NTP server does not answer
    import time as host

    return int(host.time()) + scenario().get("ntp_skew_s", 0)

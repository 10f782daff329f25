# The device's configuration: `config.json` on flash, written at install time (see README),
# overlaid by what the server last sent on the retained config topic (kept in
# data/remote.json so it applies from boot, even offline).
from store import read_json, write_json

DEFAULTS = {
    "device": None,  # required: also the MQTT username
    "uplink": "wifi",  # "wifi", or "uart" (tethered to the in-cab gateway)
    "wifi": {"ssid": None, "password": None},
    "mqtt": {
        "host": None,
        "port": 1883,
        "password": None,
        "tls": False,
        "ca_file": None,  # with tls: the CA certificate (DER) the broker's is checked against
        "keepalive_s": 60,
    },
    "interval_ms": 60000,  # sampling interval
    "alarm_interval_ms": 15000,  # sampling interval while a probe is out of its limits
    "limits": {},  # probe id -> [low, high] in degrees Celsius
    "probes": {},  # DS18B20 ROM (hex) -> probe id; empty: every probe found, by ROM
    # 750 ms for the DS18B20's default 12-bit resolution; less only for probes set lower.
    "ds18b20_conversion_ms": 750,
    "sht": None,  # "sht4x" or "sht3x" when an air sensor is fitted
    "sht_probe": "air",
    "batch_max": 50,  # readings per MQTT message (the contract allows 500)
    "outbox_bytes": 262144,
    "segment_bytes": 4096,
    "seq_block": 100,  # seqs reserved per high-water-mark write
    "battery_divider": 11.0,  # (R1 + R2) / R2 of the battery voltage divider
    "watchdog_ms": 60000,
    "ntp_retry_ms": 60000,  # while the clock is not set
    "pins": {
        "onewire": 4,
        "i2c_scl": 22,
        "i2c_sda": 21,
        "gps_tx": 17,
        "gps_rx": 16,
        "door": 27,
        "battery_adc": 35,
        "led": 2,
        "buzzer": None,
        "tether_tx": 32,
        "tether_rx": 33,
    },
}

# What the server may change at run time through the retained config topic, and its type.
REMOTE = {
    "interval_ms": int,
    "alarm_interval_ms": int,
    "limits": dict,
    "probes": dict,
    "batch_max": int,
}


def _merge(base, over):
    # Nested sections (wifi, mqtt, pins) merge key by key; limits and probes are replaced.
    out = dict(base)
    for k, v in over.items():
        nested = isinstance(v, dict) and isinstance(base.get(k), dict) and k not in REMOTE
        out[k] = _merge(base[k], v) if nested else v
    return out


def load(path="config.json", remote_path="data/remote.json"):
    cfg = _merge(DEFAULTS, read_json(path, {}))
    if not cfg["device"]:
        raise ValueError("config.json: set \"device\" to the device id (its MQTT username)")
    if cfg["uplink"] == "wifi":
        for section, key in (("wifi", "ssid"), ("mqtt", "host"), ("mqtt", "password")):
            if not cfg[section][key]:
                raise ValueError("config.json: set %s.%s (or \"uplink\": \"uart\")" % (section, key))
        if cfg["mqtt"]["tls"] and not cfg["mqtt"]["ca_file"]:
            raise ValueError("config.json: TLS needs mqtt.ca_file, the broker's CA (DER)")
    return _merge(cfg, read_json(remote_path, {}))


def remote_update(message):
    """The valid settings of a config message (JSON bytes); raises ValueError if none is."""
    import json

    new = json.loads(message)
    if not isinstance(new, dict):
        raise ValueError("config message is not a JSON object")
    update = {}
    for key, kind in REMOTE.items():
        if key in new:
            if type(new[key]) is not kind:
                raise ValueError("config %s: expected %s" % (key, kind.__name__))
            update[key] = new[key]
    if "limits" in update:
        for probe, pair in update["limits"].items():
            if not (isinstance(pair, list) and len(pair) == 2 and pair[0] <= pair[1]):
                raise ValueError("config limits.%s: expected [low, high]" % probe)
    for key in ("interval_ms", "alarm_interval_ms", "batch_max"):
        if key in update and update[key] < 1:
            raise ValueError("config %s: must be positive" % key)
    if "batch_max" in update:
        update["batch_max"] = min(update["batch_max"], 500)
    return update


def save_remote(update, remote_path="data/remote.json"):
    """Keep the server's settings for the next boot (only when they changed: flash wears)."""
    saved = read_json(remote_path, {})
    merged = dict(saved)
    merged.update(update)
    if merged != saved:
        write_json(remote_path, merged)

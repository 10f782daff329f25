# Getting batches off the box over Wi-Fi and MQTT (tether.py is the other way, imported
# instead in tethered mode, so that neither holds the other's code in RAM). The MQTT protocol
# itself is micropython-lib's umqtt.simple; this module owns the connection: Wi-Fi,
# credentials, last will, keepalive, timeouts and reconnects.
import time

import asyncio
import network
from micropython import const
from umqtt.simple import MQTTClient

_SOCKET_TIMEOUT_S = const(10)  # a broker that stops answering must not hang the loop forever
_TOPIC = const("coldtrace/v1/%s/%s")


def topic(device, kind):
    return (_TOPIC % (device, kind)).encode()


class MqttLink:
    """One device's MQTT session: the per-device username and password, the retained
    `status` topic (`online`, and `offline` as the last will), and the retained `config` and
    `ack` topics, whose messages go to `on_message(topic, message)`. Every call may raise
    (OSError, or umqtt's own errors): the caller then closes the link and reconnects with
    backoff."""

    def __init__(self, cfg, on_message):
        self._device = cfg["device"]
        self._wifi = cfg["wifi"]
        self._mqtt = cfg["mqtt"]
        self._on_message = on_message
        self._client = None
        self.connected = False
        self._last_io = time.ticks_ms()

    async def network_up(self, timeout_ms=20000):
        """Join the configured Wi-Fi; False if it did not work within the timeout."""
        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        if wlan.isconnected():
            return True
        wlan.connect(self._wifi["ssid"], self._wifi["password"])
        start = time.ticks_ms()
        while not wlan.isconnected():
            if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
                wlan.disconnect()
                return False
            await asyncio.sleep_ms(200)
        return True

    def rssi(self):
        """The Wi-Fi signal in dBm, None while not associated."""
        wlan = network.WLAN(network.STA_IF)
        try:
            return wlan.status("rssi") if wlan.isconnected() else None
        except (OSError, ValueError):
            return None

    def _tls_params(self):
        """The broker's certificate is checked against the CA in `mqtt.ca_file` (DER)."""
        import ssl

        with open(self._mqtt["ca_file"], "rb") as f:
            ca = f.read()
        return {"server_hostname": self._mqtt["host"], "cert_reqs": ssl.CERT_REQUIRED, "cadata": ca}

    def connect(self):
        m = self._mqtt
        client = MQTTClient(
            self._device,
            m["host"],
            port=m["port"],
            user=self._device,
            password=m["password"],
            keepalive=m["keepalive_s"],
            ssl=bool(m["tls"]),
            ssl_params=self._tls_params() if m["tls"] else {},
        )
        client.set_callback(self._on_message)
        status = topic(self._device, "status")
        client.set_last_will(status, b"offline", retain=True, qos=1)
        try:
            client.connect()
            _timeout(client)
            client.publish(status, b"online", retain=True, qos=1)
            client.subscribe(topic(self._device, "config"), qos=1)
            client.subscribe(topic(self._device, "ack"), qos=1)
        except Exception:
            _close(client)
            raise
        self._client = client
        self.connected = True
        self._last_io = time.ticks_ms()

    def send(self, payload):
        """Publish a telemetry batch at QoS 1; returns once the broker's PUBACK is in."""
        assert self._client is not None, "send() before connect()"
        self._client.publish(topic(self._device, "telemetry"), payload, qos=1)
        self._last_io = time.ticks_ms()

    def poll(self):
        """Take in config messages; ping within the keepalive when idle."""
        client = self._client
        assert client is not None, "poll() before connect()"
        client.check_msg()
        _timeout(client)  # check_msg leaves the socket blocking
        if time.ticks_diff(time.ticks_ms(), self._last_io) > self._mqtt["keepalive_s"] * 500:
            client.ping()
            self._last_io = time.ticks_ms()

    def close(self):
        if self._client is not None:
            _close(self._client)
            self._client = None
            self.connected = False


def _timeout(client):
    try:
        client.sock.settimeout(_SOCKET_TIMEOUT_S)
    except AttributeError:
        pass  # a TLS socket has no timeout of its own: the watchdog covers a hung broker


def _close(client):
    try:
        client.sock.close()
    except (OSError, AttributeError):
        pass

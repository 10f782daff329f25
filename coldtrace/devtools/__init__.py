"""Development tooling, never imported by the runtime: the local Mosquitto, InfluxDB and
PostgreSQL supervisor (`coldtrace services`) and the helpers that run `coldtrace ingest` and
`coldtrace api` as child processes for the demo, the tests and the benchmarks, and the firmware
on MicroPython with fake ESP32 hardware (`board`, `fake_esp32/`)."""

"""Development tooling, never imported by the runtime: the local Mosquitto, InfluxDB and
PostgreSQL supervisor (`coldtrace services`) and the helpers that run `coldtrace ingest` and
`coldtrace api` as child processes for the demo, the tests and the benchmarks."""

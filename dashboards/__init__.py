"""Grafana dashboards and alert rules for quality managers, as code (dashboards/README.md)."""

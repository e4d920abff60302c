"""Observability of Flagstream: ``metrics`` (every Prometheus metric, defined once), ``logging``
(structlog JSON with secret redaction), and the Prometheus, Alertmanager and Grafana files.
See docs/monitoring.md."""

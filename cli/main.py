"""The ``flagstream`` command line: one Typer app, each sub-command group in its own module."""

from __future__ import annotations

import typer

from cli import audit, dev, dlq, flagd, keys, projections, run

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Flagstream: event-sourced feature flags over streams.")
app.add_typer(dev.app, name="dev", help="Manage the local stack (tansu, redis-server, PostgreSQL).")
app.add_typer(keys.app, name="keys", help="Create, list and revoke API keys.")
app.add_typer(dlq.app, name="dlq", help="Inspect, redrive and purge dead letters.")
app.add_typer(audit.app, name="audit", help="Replay the audit log: history, as-of, verify, export.")
app.add_typer(projections.app, name="projections", help="Rebuild and check the Redis read models.")
app.add_typer(flagd.import_app, name="import", help="Import flags (flagd JSON) into an environment.")
app.add_typer(flagd.export_app, name="export", help="Export an environment's flags (flagd JSON).")
run.register(app)

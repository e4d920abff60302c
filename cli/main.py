"""The ``flagstream`` command line: one Typer app, sub-commands mounted from their own modules."""

from __future__ import annotations

import importlib

import typer

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Flagstream: event-sourced feature flags over streams.")

# (module, attribute, command name, help) — each sub-app lives in its own module under cli/.
_SUBAPPS = (
    ("cli.dev", "app", "dev", "Manage the local stack (tansu, redis-server, PostgreSQL)."),
    ("cli.keys", "app", "keys", "Create, list and revoke API keys."),
    ("cli.dlq", "app", "dlq", "Inspect, redrive and purge dead letters."),
    ("cli.audit", "app", "audit", "Replay the audit log: history, as-of, verify, export."),
    ("cli.projections", "app", "projections", "Rebuild and check the Redis read models."),
)


def _mount_subapps() -> None:
    for module_name, attribute, name, help_text in _SUBAPPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue
        app.add_typer(getattr(module, attribute), name=name, help=help_text)


_mount_subapps()

try:
    from cli.run import register as _register_run
except ModuleNotFoundError:  # pragma: no cover - during bootstrap only
    pass
else:
    _register_run(app)

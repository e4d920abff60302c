"""``flagstream import flagd FILE --environment ENV [--dry-run]`` and ``flagstream export flagd``.

Both go through the API (``--api-url`` / ``FLAGSTREAM_API_URL``, ``--api-key`` / ``FLAGSTREAM_API_KEY``),
so an import is authorised, audited and projected like any other change. A construct flagd has and
Flagstream cannot express exactly is refused with its JSON path (exit code 1); nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

__all__ = ["export_app", "import_app"]

import_app = typer.Typer(no_args_is_help=True, help="Import flags from another system's format.")
export_app = typer.Typer(no_args_is_help=True, help="Export flags in another system's format.")

ApiUrl = Annotated[str, typer.Option("--api-url", envvar="FLAGSTREAM_API_URL", help="The Flagstream API")]
ApiKey = Annotated[
    str, typer.Option("--api-key", envvar="FLAGSTREAM_API_KEY", help="A writer (import) or reader key")
]
Environment = Annotated[str, typer.Option("--environment", "-e", help="The environment, e.g. production")]


@import_app.command("flagd")
def import_flagd_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="flagd JSON file")],
    environment: Environment,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing")
    ] = False,
    api_url: ApiUrl = "http://127.0.0.1:8000",
    api_key: ApiKey = "",
) -> None:
    """Import a flagd flag definition file into one environment."""
    body = _call(
        "POST",
        f"{api_url.rstrip('/')}/api/v1/flagd/import",
        api_key,
        params={"environment": environment, "dry_run": str(dry_run).lower()},
        content=file.read_bytes(),
    )
    for step in body["flags"]:
        typer.echo(f"{step['action']:<10} {step['key']}  (version {step['version']})")
    typer.echo(f"{len(body['flags'])} flag(s){' — dry run, nothing changed' if dry_run else ''}", err=True)


@export_app.command("flagd")
def export_flagd_file(
    environment: Environment,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout")
    ] = None,
    api_url: ApiUrl = "http://127.0.0.1:8000",
    api_key: ApiKey = "",
) -> None:
    """Export one environment as a flagd flag definition file."""
    body = _call(
        "GET", f"{api_url.rstrip('/')}/api/v1/flagd/export", api_key, params={"environment": environment}
    )
    text = json.dumps(body, indent=2, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)


def _call(method: str, url: str, api_key: str, **kwargs: Any) -> dict[str, Any]:
    if not api_key:
        typer.echo("set FLAGSTREAM_API_KEY (or --api-key) to a Flagstream API key", err=True)
        raise typer.Exit(2)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    try:
        response = httpx.request(method, url, headers=headers, timeout=30, **kwargs)
    except httpx.HTTPError as e:
        typer.echo(f"cannot reach the API at {url}: {e}", err=True)
        raise typer.Exit(2) from e
    body: dict[str, Any] = response.json()
    if response.status_code >= 400:
        error = body.get("error", {})
        typer.echo(f"refused ({response.status_code} {error.get('code')}): {error.get('message')}", err=True)
        for detail in error.get("details", []):
            typer.echo(f"  at {detail.get('path')}: {detail.get('message')}", err=True)
        raise typer.Exit(1)
    return body

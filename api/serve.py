"""Serve the API with a bounded graceful shutdown: ``python -m api.serve [--host H] [--port P]``.

On SIGTERM (or SIGINT) uvicorn stops accepting connections, lets in-flight requests finish for
at most ``shutdown_grace_seconds`` (then cancels them), runs the app's lifespan shutdown (pools
closed, bounded) and the process exits ``0``.

Why not ``uvicorn api.app:create_app --factory`` on its own: uvicorn (0.29+) re-raises the
signal it caught once it has shut down, so with the default SIGTERM disposition the process dies
*by* SIGTERM (exit status -15) even after a clean shutdown, and its ``--timeout-graceful-shutdown``
defaults to waiting for ever. Here our own handlers are installed before uvicorn's; uvicorn
restores them and re-raises into them, which merely notes the signal.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType

import structlog
import uvicorn

from runtime.settings import Settings, SettingsError, load_settings

__all__ = ["bind_reuse_port", "build_config", "main"]

log = structlog.get_logger("api.serve")


def build_config(settings: Settings, *, host: str | None = None, port: int | None = None) -> uvicorn.Config:
    """The uvicorn configuration of the API process (factory ``api.app:create_app``)."""
    return uvicorn.Config(
        "api.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=settings.api_port if port is None else port,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_seconds)),
        access_log=False,
        log_config=None,  # structlog (monitoring.logging) owns logging
        lifespan="on",
    )


def bind_reuse_port(host: str, port: int) -> socket.socket:
    """A listening socket that other API processes may bind too (``SO_REUSEPORT``).

    With ``flagstream run --api-workers N`` every API process binds the same port this way and the
    kernel spreads new connections over them; no process is a single point that forwards traffic.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _note_signal(signum: int, frame: FrameType | None) -> None:
    log.info("api.signal_handled", signal=signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.serve", description=__doc__)
    parser.add_argument("--host", default=None, help="interface to bind (default: FLAGSTREAM_API_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port to bind (default: FLAGSTREAM_API_PORT)")
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind with SO_REUSEPORT: several API processes share the port (flagstream run --api-workers)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as e:
        print(str(e), file=sys.stderr)
        return 2
    config = build_config(settings, host=args.host, port=args.port)
    server = uvicorn.Server(config)
    sockets = [bind_reuse_port(config.host, config.port)] if args.reuse_port else None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _note_signal)
    server.run(sockets=sockets)
    if not server.started:
        return 1  # the lifespan failed (e.g. Postgres unreachable at start): its error is logged
    log.info("api.exited", status=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the worker processes share: the ``python -m workers.<role>`` wiring, written once.

:func:`run_worker` loads the settings (invalid: exit 2), configures logging, publishes the build
info and, when ``METRICS_PORT`` is set, serves ``/metrics``; SIGTERM and SIGINT set the ``stop``
event the worker watches. The worker returning is exit 0; a :class:`SettingsError` is exit 2;
``on_error`` may map the worker's own fatal errors to other exit codes.

:func:`run_bounded` runs a worker's loop until ``stop``, then gives the batch in hand ``grace``
seconds to finish before cancelling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version

import structlog

from monitoring import metrics
from monitoring.logging import configure_logging
from runtime.settings import Settings, SettingsError, load_settings

__all__ = ["EXIT_OK", "EXIT_SETTINGS", "run_bounded", "run_worker", "serve_worker"]

log = structlog.get_logger("workers")

EXIT_OK = 0
EXIT_SETTINGS = 2
_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Worker = Callable[[Settings, asyncio.Event], Awaitable[None]]
ErrorHandler = Callable[[Exception], int | None]


async def run_bounded(
    loop: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event, grace: float, *, role: str
) -> None:
    """Run ``loop(stop)`` until it returns or ``stop`` is set; then give it ``grace`` seconds to finish
    the batch in hand, past which it is cancelled. Its error, if any, is raised."""
    task = asyncio.ensure_future(loop(stop))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            done, _ = await asyncio.wait([task], timeout=grace)
            if not done:
                log.warning("worker.grace_expired", role=role, grace_s=grace)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return
        task.result()
    finally:
        stopping.cancel()
        if not task.done():  # cancelled from outside: the loop goes with it
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def serve_worker(role: str, worker: Worker, *, on_error: ErrorHandler | None = None) -> int:
    """The process around ``worker``: its exit code."""
    try:
        settings = load_settings()
    except SettingsError as e:
        print(e, file=sys.stderr)
        return EXIT_SETTINGS
    configure_logging(settings.log_level, json=settings.log_json)
    metrics.set_build_info(_version(), role)
    server = metrics.start_metrics_server(settings.metrics_port) if settings.metrics_port > 0 else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in _SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        await worker(settings, stop)
    except SettingsError as e:
        print(e, file=sys.stderr)
        return EXIT_SETTINGS
    except Exception as e:
        code = None if on_error is None else on_error(e)
        if code is None:
            raise
        return code
    finally:
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)
        if server is not None:
            server.stop()
    return EXIT_OK


def run_worker(role: str, worker: Worker, *, on_error: ErrorHandler | None = None) -> None:
    """``main()`` of a worker module: run it in a new event loop and exit with its code."""
    sys.exit(asyncio.run(serve_worker(role, worker, on_error=on_error)))


def _version() -> str:
    try:
        return version("flagstream")
    except PackageNotFoundError:
        return "dev"

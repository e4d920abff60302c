"""The wiring the three worker processes share (workers/_runner.py)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from projections.errors import PoisonEvent
from runtime.settings import ENV_PREFIX, Settings
from workers import _runner
from workers._runner import EXIT_OK, EXIT_SETTINGS, run_bounded, serve_worker
from workers.projector import EXIT_POISON, _poison_exit


async def test_run_bounded__stopped__batch_in_hand_finishes_within_grace() -> None:
    stop = asyncio.Event()
    finished: list[str] = []

    async def loop(stop: asyncio.Event) -> None:
        await stop.wait()
        await asyncio.sleep(0.05)  # the batch in hand, shorter than the grace
        finished.append("batch")

    stop.set()
    await asyncio.wait_for(run_bounded(loop, stop, 5.0, role="test"), 5.0)

    assert finished == ["batch"]


async def test_run_bounded__loop_ignores_stop__cancelled_after_grace() -> None:
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def loop(stop: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()  # never finishes by itself
        except asyncio.CancelledError:
            cancelled.set()
            raise

    stop.set()
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(run_bounded(loop, stop, 0.2, role="test"), 5.0)

    assert cancelled.is_set()
    assert asyncio.get_running_loop().time() - started < 3.0


async def test_run_bounded__loop_fails__its_error_raised() -> None:
    async def loop(stop: asyncio.Event) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(run_bounded(loop, asyncio.Event(), 1.0, role="test"), 5.0)


@pytest.fixture
def quiet_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """configure_logging is process-wide; the other unit tests keep theirs."""
    monkeypatch.setattr(_runner, "configure_logging", lambda *args, **kwargs: None)
    monkeypatch.delenv(ENV_PREFIX + "METRICS_PORT", raising=False)


async def test_serve_worker__invalid_settings__exit_2_worker_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PREFIX + "METRICS_PORT", "70000")
    ran: list[bool] = []

    async def worker(settings: Settings, stop: asyncio.Event) -> None:
        ran.append(True)

    assert await serve_worker("test", worker) == EXIT_SETTINGS
    assert ran == []


@pytest.mark.usefixtures("quiet_logging")
async def test_serve_worker__sigterm__stop_set_exit_0_handler_removed() -> None:
    async def worker(settings: Settings, stop: asyncio.Event) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 5.0)

    assert await serve_worker("test", worker) == EXIT_OK
    assert not asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)  # none left behind


@pytest.mark.usefixtures("quiet_logging")
async def test_serve_worker__poison_event_in_projector__exit_3() -> None:
    async def worker(settings: Settings, stop: asyncio.Event) -> None:
        raise PoisonEvent(
            "bad", kind="rejected", topic="t", partition=0, offset=7, stream_key="f", version=2, raw=b"{}"
        )

    assert await serve_worker("projector", worker, on_error=_poison_exit) == EXIT_POISON


@pytest.mark.usefixtures("quiet_logging")
async def test_serve_worker__unmapped_error__raised() -> None:
    async def worker(settings: Settings, stop: asyncio.Event) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await serve_worker("projector", worker, on_error=_poison_exit)

"""Per-scenario figures of the fault tests: printed, and appended to ``.runtime-data/fault-report.json``.

Times (seconds, from the moment the fault was healed):
- ``recovered_s``: until a command sent after the heal was acknowledged *and* visible in the
  Redis read model (a probe flag written every few hundred ms): the platform works end to end;
- ``converged_s``: until the checker passed on everything (the load stops shortly after the heal).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from projections.connection import make_redis
from projections.keys import Keyspace
from projections.readmodel import RedisReadModel
from tests.faults.checker import CheckResult
from tests.faults.harness import FaultPlatform
from tests.faults.load import LoadDriver

__all__ = ["PROBE_FLAG", "REPORT_PATH", "ScenarioReport", "time_to_recover"]

PROBE_FLAG = "probe"
REPORT_PATH = Path(__file__).resolve().parents[2] / ".runtime-data" / "fault-report.json"


@dataclass
class ScenarioReport:
    scenario: str
    sent: int
    acknowledged: int
    lost: int
    duplicated: int
    unavailable_503: int
    unavailable_without_retry_after: int
    failed_other: int
    indeterminate: int
    redeliveries_in_kafka: int
    recovered_s: float | None
    converged_s: float | None
    workers: dict[str, Any]
    violations: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    failure_samples: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        scenario: str,
        driver: LoadDriver,
        result: CheckResult,
        platform: FaultPlatform,
        *,
        recovered_s: float | None,
        converged_s: float | None,
        **notes: Any,
    ) -> ScenarioReport:
        history = driver.history
        return cls(
            scenario=scenario,
            sent=len(history),
            acknowledged=driver.count("ok"),
            lost=result.lost,
            duplicated=result.duplicated,
            unavailable_503=driver.count("unavailable"),
            unavailable_without_retry_after=sum(
                1 for r in history if r.outcome == "unavailable" and not r.retry_after
            ),
            failed_other=driver.count("fail"),
            indeterminate=driver.count("info"),
            redeliveries_in_kafka=result.redeliveries,
            recovered_s=None if recovered_s is None else round(recovered_s, 2),
            converged_s=None if converged_s is None else round(converged_s, 2),
            workers=platform.worker_report(),
            violations=result.violations[:20],
            notes=notes,
            failure_samples=sorted(
                {f"{r.status} {r.error}"[:160] for r in history if r.outcome in ("fail", "info")}
            )[:5],
        )

    def publish(self) -> None:
        """Print the figures (``pytest -s`` shows them) and append them to the JSON report file."""
        print(f"\n[fault report] {json.dumps(asdict(self), default=str)}")
        REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
        entries: list[Any] = []
        if REPORT_PATH.exists():
            with contextlib.suppress(ValueError):
                loaded = json.loads(REPORT_PATH.read_text())
                entries = loaded if isinstance(loaded, list) else []
        entries.append({"at": datetime.now(UTC).isoformat(), **asdict(self)})
        REPORT_PATH.write_text(json.dumps(entries, indent=2, default=str))


async def _visible(model: RedisReadModel, version: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(RedisError, OSError):  # Redis may still be down: keep polling, bounded
            if (await model.load_flag_state(PROBE_FLAG)).version >= version:
                return True
        await asyncio.sleep(0.05)
    return False


async def time_to_recover(platform: FaultPlatform, since: float, within: float) -> float | None:
    """Seconds from ``since`` until a probe command is acknowledged and projected; None if not within."""
    client = make_redis(platform.stack.redis_url, socket_timeout=2.0, retries=0)
    model = RedisReadModel(client, Keyspace(platform.settings.redis_namespace))
    deadline = time.monotonic() + within
    counter = 0
    try:
        while time.monotonic() < deadline:
            counter += 1
            body = {
                "enabled": counter % 2 == 0,
                "off_variation": "off",
                "rules": [],
                "targets": [{"variation": "on", "values": [f"probe-{counter}-{time.time()}"]}],
                "default": {"variation": "off"},
            }
            try:
                response = await asyncio.wait_for(
                    platform.request("PUT", f"/api/v1/flags/{PROBE_FLAG}/environments/production", json=body),
                    timeout=10,
                )
            except Exception:  # no answer: the platform is not back yet
                response = None
            if response is not None and response.status_code == 200:
                version = int(response.json()["version"])
                if await _visible(model, version, min(3.0, max(deadline - time.monotonic(), 0.1))):
                    return time.monotonic() - since
            else:
                await asyncio.sleep(0.2)  # probe pacing while the API refuses
        return None
    finally:
        await client.aclose()

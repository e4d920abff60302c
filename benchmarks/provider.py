"""OpenFeature provider overhead: ``python benchmarks/provider.py [--calls N]`` (REDIS_URL or a fresh Redis).

In one process, on one boolean flag (an ``in`` clause on ``country`` + a 50/50 rollout, as in
benchmarks/evaluation.py (a)), over 10,000 distinct contexts, evaluations per second of:
  (1) the bare evaluator: ``CompiledEnvironment.evaluate(key, dict, now)``;
  (2) the provider alone: ``FlagstreamProvider.resolve_boolean_details(key, default, EvaluationContext)``
      (context conversion, clock, reason/metadata mapping);
  (3) through the OpenFeature SDK: ``client.get_boolean_details`` (hooks, context merging, events);
  (4) as (3) with the provider's ``EvaluationCounter`` hook installed.
The flag is loaded from a real Redis read model by the provider's follower. Each figure is the best of
three passes (a shared machine preempts); the process is pinned to one CPU when the OS allows it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

sys.path.pop(0)  # not benchmarks/ (its http.py shadows the standard library's http)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "providers" / "python" / "src"))

from flagstream_openfeature import EvaluationCounter, FlagstreamProvider
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from redis import Redis

from core.model import Flag
from projections.documents import encode_env_doc
from projections.keys import Keyspace
from runtime.processes import find_free_port
from runtime.servers import RedisServer

ENV = "production"
KEY = "bench-checkout"
COUNTRIES = ("US", "CA", "GB", "FR", "DE", "JP", "BR", "IN")
FLAG = Flag.model_validate(
    {
        "key": KEY,
        "environments": {
            ENV: {
                "enabled": True,
                "off_variation": "off",
                "rules": [
                    {
                        "id": "na",
                        "when": {"attribute": "country", "op": "in", "values": ["US", "CA"]},
                        "serve": {
                            "rollout": [{"variation": "on", "weight": 50}, {"variation": "off", "weight": 50}]
                        },
                    }
                ],
                "default": {"variation": "off"},
            }
        },
    }
)


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-provider-")), find_free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def seed(url: str, namespace: str) -> None:
    keys = Keyspace(namespace)
    with Redis.from_url(url) as client:
        client.hset(keys.env_flags(ENV), KEY, encode_env_doc(FLAG, ENV, 1))
        client.set(keys.env_rev(ENV), 1)


def measure(call: Callable[[int], object], calls: int) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for i in range(calls):
            call(i)
        best = min(best, time.perf_counter() - started)
    return calls / best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rng = random.Random(7)
    users = [(f"user-{i}", {"country": rng.choice(COUNTRIES)}) for i in range(10_000)]
    dicts = [{"targetingKey": key, **attrs} for key, attrs in users]
    contexts = [EvaluationContext(key, attrs) for key, attrs in users]
    n = len(users)
    namespace = "bench-" + uuid.uuid4().hex[:8]
    with redis_url() as url:
        seed(url, namespace)
        provider = FlagstreamProvider(url, ENV, namespace=namespace)
        api.set_provider_and_wait(provider, "bench")
        client = api.get_client("bench")
        counted = api.get_client("bench")
        counted.add_hooks([EvaluationCounter()])
        snapshot = provider.follower.snapshot
        assert snapshot.evaluate(KEY, dicts[0], datetime.now(UTC)).error_code is None
        gc.freeze()
        now = datetime.now(UTC)
        rates = {
            "bare evaluator (CompiledEnvironment.evaluate)": measure(
                lambda i: snapshot.evaluate(KEY, dicts[i % n], now), args.calls
            ),
            "provider.resolve_boolean_details": measure(
                lambda i: provider.resolve_boolean_details(KEY, False, contexts[i % n]), args.calls
            ),
            "client.get_boolean_details (OpenFeature SDK)": measure(
                lambda i: client.get_boolean_details(KEY, False, contexts[i % n]), args.calls // 4
            ),
            "client.get_boolean_details + EvaluationCounter hook": measure(
                lambda i: counted.get_boolean_details(KEY, False, contexts[i % n]), args.calls // 4
            ),
        }
        api.shutdown()
    bare = rates["bare evaluator (CompiledEnvironment.evaluate)"]
    for name, rate in rates.items():
        print(f"{name:<55} {rate:>12,.0f}/s  {1e6 / rate:7.2f} µs/call  x{bare / rate:5.1f}")


if __name__ == "__main__":
    main()

"""Flagstream under Locust, the seed's traffic mix: evaluate x3, list flags x2, health x1.

For people who use Locust (it is not a dependency of the project; install it where you run it):

    pip install locust
    FLAGSTREAM_API_KEY=fs_... locust -f benchmarks/locustfile.py --host http://127.0.0.1:8080 \\
        --headless --users 8 --spawn-rate 8 --run-time 30s

``FLAGSTREAM_API_KEY`` needs a role that may evaluate and read flags (``reader``, ``writer``,
``admin``). ``FLAGSTREAM_ENVIRONMENT`` (default ``production``) and ``FLAGSTREAM_FLAGS`` (comma
separated; default: every flag of the environment) choose what is evaluated. A failed answer
(anything but 2xx) counts as a failure in Locust's report. Locust's own client costs far more CPU
per request than ``wrk``: on one machine it measures the client as much as the server, so the
figures of record are ``benchmarks/http.py``'s.
"""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, between, task

_ENVIRONMENT = os.environ.get("FLAGSTREAM_ENVIRONMENT", "production")
_FLAGS = [f for f in os.environ.get("FLAGSTREAM_FLAGS", "").split(",") if f]


class FlagstreamUser(FastHttpUser):  # type: ignore[misc]  # locust is not typed for mypy here
    wait_time = between(0, 0.01)

    def on_start(self) -> None:
        key = os.environ.get("FLAGSTREAM_API_KEY")
        if not key:
            raise RuntimeError("set FLAGSTREAM_API_KEY to an API key that may evaluate and read flags")
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    @task(3)
    def evaluate(self) -> None:
        body: dict[str, object] = {
            "environment": _ENVIRONMENT,
            "context": {"targetingKey": f"user-{random.randrange(100_000)}", "country": "US"},
        }
        if _FLAGS:
            body["flags"] = _FLAGS
        self.client.post("/api/v1/evaluate", json=body, headers=self.headers, name="evaluate")

    @task(2)
    def list_flags(self) -> None:
        self.client.get("/api/v1/flags?limit=50", headers=self.headers, name="list flags")

    @task(1)
    def health(self) -> None:
        self.client.get("/healthz", name="health")

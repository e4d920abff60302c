"""HTTP evaluation against its ceiling, in one run, with one load generator.

    python benchmarks/http.py [--seconds 10] [--connections 8] [--api-workers 1] [--flags 200]

Starts the local stack (or uses DATABASE_URL / REDIS_URL / KAFKA_BOOTSTRAP_SERVERS), the API
(``python -m api.serve``, ``--api-workers`` processes sharing the port), the relay and the
projector; creates one flag with a rule and a 50/50 rollout plus ``--flags`` plain flags, waits
until they are projected, then drives each target with ``wrk`` (Debian package ``wrk``;
keep-alive, ``--connections`` connections, two threads) for ``--seconds``:

- ``bare``: ``benchmarks/bare_asgi.py`` under the same uvicorn settings and process count — the
  ceiling: parse the JSON body, answer a JSON object, nothing else;
- ``evaluate``: ``POST /api/v1/evaluate`` for the one flag;
- ``ofrep``: ``POST /ofrep/v1/evaluate/flags/{key}``;
- ``bulk``: ``POST /ofrep/v1/evaluate/flags`` (every flag of the environment, ``--flags`` + 1);
- ``evaluate-all``: ``POST /api/v1/evaluate`` without ``flags`` (every flag).

Prints requests/s, p50/p99 and non-2xx answers per target, and each target's ratio to ``bare``.
Targets (issue 12): single-flag evaluation >= 50 % of bare with p99 < 2 ms at 8 connections;
bulk of 200 flags >= 2,000 requests/s. Rate limits stay on (quota raised so nothing is refused).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path and this module would shadow the
# standard library's ``http`` package (which httpx needs): drop the folder, add the repository.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import httpx  # noqa: E402  (after the sys.path repair above)

from benchmarks._stack import local_stack, wait_http  # noqa: E402

ENV = "production"
FLAG = "http-bench"
_RULE_CONFIG: dict[str, Any] = {
    "enabled": True,
    "off_variation": "off",
    "rules": [
        {
            "id": "na",
            "when": {"attribute": "country", "op": "in", "values": ["US", "CA"]},
            "serve": {"rollout": [{"variation": "on", "weight": 50}, {"variation": "off", "weight": 50}]},
        }
    ],
    "default": {"variation": "off"},
}
_CONTEXT = {"targetingKey": "user-42", "country": "US"}


@dataclass(frozen=True)
class WrkResult:
    name: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    requests: int


def _wrk_script(folder: Path, name: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> Path:
    lines = [
        'wrk.method = "POST"',
        f"wrk.path = {json.dumps(path)}",
        f"wrk.body = {json.dumps(json.dumps(body))}",
    ]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    script = folder / f"{name}.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


def _to_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def _run_wrk(name: str, base: str, script: Path, seconds: float, connections: int) -> WrkResult:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script), base]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return WrkResult(name, rps, p50, p99, int(non_2xx.group(1)) if non_2xx else 0, total)


async def _seed(client: httpx.AsyncClient, flags: int) -> None:
    """The measured flag (rule + 50/50 rollout) and ``flags`` plain ones, all projected."""
    keys = [FLAG] + [f"http-bench-{i:04d}" for i in range(flags)]
    for key in keys:
        response = await client.post("/api/v1/flags", json={"key": key, "name": key})
        assert response.status_code in (201, 409), response.text
    config = await client.put(f"/api/v1/flags/{FLAG}/environments/{ENV}?wait=projected", json=_RULE_CONFIG)
    assert config.status_code == 200, config.text
    plain = {"enabled": True, "off_variation": "off", "default": {"variation": "on"}}
    for key in keys[1:]:
        response = await client.put(f"/api/v1/flags/{key}/environments/{ENV}", json=plain)
        assert response.status_code == 200, response.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = await client.post("/api/v1/evaluate", json={"environment": ENV, "context": _CONTEXT})
        if answer.status_code == 200 and len(answer.json()["results"]) >= len(keys):
            return
        await asyncio.sleep(0.2)  # waiting for the API's reader to show every flag, bounded
    raise TimeoutError("the API's reader did not show every flag within 30 s")


def _spawn(argv: list[str], env: dict[str, str], workers: int) -> list[subprocess.Popen[bytes]]:
    extra = ["--reuse-port"] if workers > 1 and argv[1] == "api.serve" else []
    return [subprocess.Popen([sys.executable, *argv, *extra], env=env) for _ in range(workers)]


def _report(results: list[WrkResult], bare: WrkResult) -> None:
    print(f"\n{'target':<14}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'of bare':>9}")
    for r in results:
        print(
            f"{r.name:<14}{r.requests_per_second:>10,.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{r.non_2xx:>9}{r.requests_per_second / bare.requests_per_second:>9.0%}"
        )


async def _run(args: argparse.Namespace, urls: dict[str, str]) -> None:
    from cli.run import _prepare
    from runtime.processes import find_free_port

    secret = await _prepare(urls["DATABASE_URL"], urls["KAFKA_BOOTSTRAP_SERVERS"])
    limits = {k: "100000000/1" for k in ("evaluation", "commands", "audit")}
    env = {
        **os.environ,
        **urls,
        "FLAGSTREAM_LOG_LEVEL": "warning",
        "FLAGSTREAM_RATE_LIMITS": json.dumps({"*": limits, "anonymous": limits}),
    }
    api_port, bare_port = find_free_port(), find_free_port()
    children = _spawn(
        ["-m", "api.serve", "--host", "127.0.0.1", "--port", str(api_port)], env, args.api_workers
    )
    children += _spawn(["-m", "workers.relay"], env, 1) + _spawn(["-m", "workers.projector"], env, 1)
    bare = ["-m", "uvicorn", "benchmarks.bare_asgi:app", "--host", "127.0.0.1", "--port", str(bare_port)]
    children += _spawn(
        [*bare, "--workers", str(args.api_workers), "--no-access-log", "--log-level", "warning"], env, 1
    )
    api, ceiling = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{bare_port}"
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    try:
        await wait_http(f"{api}/healthz")
        await wait_http(f"{ceiling}/healthz")
        async with httpx.AsyncClient(base_url=api, headers=headers, timeout=60) as client:
            await _seed(client, args.flags)
        with tempfile.TemporaryDirectory() as folder:
            ofrep_headers = {**headers, "X-Flagstream-Environment": ENV}
            one = {"environment": ENV, "flags": [FLAG], "context": _CONTEXT}
            targets = [
                ("bare", ceiling, "/", {"context": _CONTEXT}, headers),
                ("evaluate", api, "/api/v1/evaluate", one, headers),
                ("ofrep", api, f"/ofrep/v1/evaluate/flags/{FLAG}", {"context": _CONTEXT}, ofrep_headers),
                ("bulk", api, "/ofrep/v1/evaluate/flags", {"context": _CONTEXT}, ofrep_headers),
                ("evaluate-all", api, "/api/v1/evaluate", {"environment": ENV, "context": _CONTEXT}, headers),
            ]
            results = []
            for name, base, path, body, hdrs in targets:
                script = _wrk_script(Path(folder), name, path, body, hdrs)
                _run_wrk(name, base, script, 2, args.connections)  # warm-up, not counted
                results.append(_run_wrk(name, base, script, args.seconds, args.connections))
                print(f"  {name}: {results[-1].requests_per_second:,.0f} req/s", flush=True)
        _report(results, results[0])
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--flags", type=int, default=200)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/http.py needs wrk: apt-get install wrk")
    with local_stack("flagstream-http-") as urls:
        asyncio.run(_run(args, urls))


if __name__ == "__main__":
    main()

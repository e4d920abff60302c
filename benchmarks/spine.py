"""The event spine under load: commands/s, command latency, and command → reader propagation.

    python benchmarks/spine.py [--seconds 20] [--concurrency 32] [--flags 200] [--api-workers 1]
                               [--profile-api FILE]

Starts the local stack (or uses DATABASE_URL / REDIS_URL / KAFKA_BOOTSTRAP_SERVERS), runs the API
(``python -m api.serve``; ``--api-workers`` processes sharing the port with ``--reuse-port``, as
``flagstream run --api-workers N`` does), the relay and the projector as separate processes, then
drives ``PUT .../environments/production`` commands over HTTP from ``--concurrency`` clients
spread over ``--flags`` flags. Rate limits stay on (their Redis round trip is part of the cost)
with the quota raised so that nothing is refused. A reader in this process (the same
``EnvironmentReader`` the API uses) records when each change becomes visible: propagation is
measured from the command's 2xx to the reader showing that version (or a later one). It is split
into the relay's share (append → Kafka record timestamp), the projector's (2xx → its change
notice on Redis pub/sub) and the reader's (notice → visible).

Prints: commands/s, command latency p50/p99, propagation p50/p99 (and its shares), the load
average before and after (the machine's other load skews every figure), and the CPU this load
generator itself spent per command (it shares the cores with the servers).

``--profile-api FILE`` runs the (single) API process under cProfile and writes its statistics to
FILE when the run ends (``python -m pstats FILE``); figures under the profiler are slower.

Targets (issue 12): >= 1,000 commands/s, command p99 < 25 ms, propagation p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path and benchmarks/http.py would shadow
# the standard library's ``http`` package (which httpx needs): drop the folder, add the repository.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import httpx  # noqa: E402  (after the sys.path repair above)

from benchmarks._stack import local_stack, wait_http  # noqa: E402
from core.envelope import Event  # noqa: E402
from projections.connection import make_redis  # noqa: E402
from projections.reader import EnvironmentReader  # noqa: E402

_Key = tuple[str, int]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(values: list[float]) -> str:
    return f"p50 {_percentile(values, 0.5) * 1e3:.1f} ms, p99 {_percentile(values, 0.99) * 1e3:.1f} ms"


def _config(weight: int) -> dict[str, Any]:
    return {
        "enabled": True,
        "off_variation": "off",
        "rules": [
            {
                "id": "na",
                "when": {"attribute": "country", "op": "in", "values": ["US", "CA"]},
                "serve": {
                    "rollout": [
                        {"variation": "on", "weight": weight},
                        {"variation": "off", "weight": 100 - weight},
                    ]
                },
            }
        ],
        "default": {"variation": "off"},
    }


def _cpu_by_process(roles: dict[int, str]) -> dict[str, float]:
    """CPU seconds used so far by this process (``load generator``) and its descendants (the servers
    and the platform), by role (``roles``: pid -> name) or by command name (postgres, tansu...)."""
    parents: dict[int, int] = {}
    stats: dict[int, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        text = ""
        with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
            text = f.read()
        if not text:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        stats[int(entry)] = (comm, (int(fields[11]) + int(fields[12])) / tick)
    me, totals = os.getpid(), dict[str, float]()
    for pid, (comm, seconds) in stats.items():
        ancestor, role = pid, roles.get(pid)
        while ancestor in parents and ancestor != me:
            ancestor = parents[ancestor]
            role = role or roles.get(ancestor)
        if pid == me:
            totals["load generator"] = seconds  # this process: the clients, the reader, the listener
        elif ancestor == me:
            name = role or ("postgres" if comm.startswith("postgres") else comm)
            totals[name] = totals.get(name, 0.0) + seconds
    return totals


def _listening_sockets(port: int) -> int:
    """How many sockets listen on ``port`` (each API process sharing it with SO_REUSEPORT has one)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                count += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return count


async def _wait_listening(port: int, processes: int, within: float = 60.0) -> None:
    """Until every API process listens: connections opened earlier would all go to the first one."""
    deadline = time.monotonic() + within
    while _listening_sockets(port) < processes:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{processes} API processes did not listen on {port} within {within}s")
        await asyncio.sleep(0.1)  # polling the kernel's socket table, bounded


class _Connection:
    """One keep-alive HTTP/1.1 connection that sends PUTs with a JSON body: a load generator that
    costs the shared cores a few tens of microseconds per request (httpx costs about a millisecond)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self._reader, self._writer, self._head = reader, writer, head

    @classmethod
    async def open(cls, host: str, port: int, secret: str) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port)
        head = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {secret}\r\nContent-Type: application/json\r\n"
        ).encode()
        return cls(reader, writer, head)

    async def put(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        self._writer.write(
            b"PUT %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s"
            % (path.encode(), self._head, len(body), body)
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = next(
            int(v) for k, _, v in (x.partition(b":") for x in lines[1:]) if k.lower() == b"content-length"
        )
        return status, json.loads(await self._reader.readexactly(length))

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


class SpineRun:
    """One measured run: load from ``concurrency`` connections, a reader watching, a notice listener."""

    def __init__(
        self,
        connections: list[_Connection],
        reader: EnvironmentReader,
        redis: Any,
        flags: list[str],
        seconds: float,
    ) -> None:
        self.connections, self.reader, self.redis = connections, reader, redis
        self.flags, self.concurrency = flags, len(connections)
        self.bodies = [json.dumps(_config(weight)).encode() for weight in range(101)]
        self.stop_at = time.monotonic() + seconds
        self.acked_at: dict[_Key, float] = {}
        self.visible_at: dict[_Key, float] = {}
        self.noticed_at: dict[_Key, float] = {}
        self.latencies: list[float] = []
        self.errors = 0

    async def load(self, n: int) -> None:
        connection = self.connections[n]
        i = n
        while time.monotonic() < self.stop_at:
            key = self.flags[i % len(self.flags)]
            i += self.concurrency
            started = time.perf_counter()
            status, body = await connection.put(
                f"/api/v1/flags/{key}/environments/production", self.bodies[i % 101]
            )
            done = time.perf_counter()
            if status != 200:
                self.errors += 1
                continue
            self.latencies.append(done - started)
            if body["changed"]:  # a no-op (same config again) answers with a version already visible
                self.acked_at[(key, body["version"])] = done

    async def watch(self) -> None:
        """A version counts as visible when the reader first shows it *or a later one*. The reader is
        looked at each time it signals a change (its snapshot is replaced, never edited in place)."""
        last_seen = {key: self.reader.version_of(key) or 0 for key in self.flags}
        while time.monotonic() < self.stop_at + 5:
            changed = self.reader._changed  # the event the reader sets on every snapshot change
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=0.2)
            now = time.perf_counter()
            for key in self.flags:
                version = self.reader.version_of(key) or 0
                if version > last_seen[key]:
                    for seen in range(last_seen[key] + 1, version + 1):
                        self.visible_at[(key, seen)] = now
                    last_seen[key] = version

    async def listen(self) -> None:
        pubsub = self.redis.pubsub()
        await pubsub.subscribe("fs:env:production:changes")
        while time.monotonic() < self.stop_at + 5:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                notice = json.loads(message["data"])
                self.noticed_at.setdefault((notice["flag_key"], int(notice["version"])), time.perf_counter())
        await pubsub.aclose()

    async def run(self) -> float:
        background = [asyncio.create_task(self.watch()), asyncio.create_task(self.listen())]
        started = time.perf_counter()
        await asyncio.gather(*(self.load(n) for n in range(self.concurrency)))
        elapsed = time.perf_counter() - started
        await asyncio.gather(*background)
        return elapsed

    def report(self, elapsed: float) -> None:
        acked = self.acked_at
        propagation = [max(0.0, self.visible_at[k] - t) for k, t in acked.items() if k in self.visible_at]
        to_notice = [max(0.0, self.noticed_at[k] - t) for k, t in acked.items() if k in self.noticed_at]
        to_reader = [
            max(0.0, self.visible_at[k] - self.noticed_at[k])
            for k in acked
            if k in self.noticed_at and k in self.visible_at
        ]
        unseen = sum(1 for k in acked if k not in self.visible_at)
        print(
            f"commands: {len(self.latencies)} ok, {self.errors} errors in {elapsed:.1f}s "
            f"-> {len(self.latencies) / elapsed:,.0f} commands/s "
            f"(concurrency {self.concurrency}, {len(self.flags)} flags)"
        )
        print(f"command latency: {_ms(self.latencies)}, mean {statistics.fmean(self.latencies) * 1e3:.1f} ms")
        print(
            f"propagation 2xx -> reader: {_ms(propagation)} over {len(propagation)} samples "
            f"(never visible: {unseen})"
        )
        print(f"  2xx -> projector's change notice: {_ms(to_notice)}; notice -> reader: {_ms(to_reader)}")


async def _warm_up(client: httpx.AsyncClient, reader: EnvironmentReader, flags: list[str]) -> None:
    """Configure every flag once and wait until the reader shows them all: the measurement starts with
    the projector's consumer group joined (a join takes seconds on tansu) and every path warm."""
    for key in flags:
        response = await client.put(f"/api/v1/flags/{key}/environments/production", json=_config(50))
        assert response.status_code == 200, response.text
    deadline = time.monotonic() + 60
    while any(reader.version_of(key) is None for key in flags):
        if time.monotonic() > deadline:
            raise TimeoutError("the reader did not show every flag within 60 s")
        await asyncio.sleep(0.05)  # polling the reader's snapshot, bounded


async def _report_relay_lag(bootstrap: str, at_least: int) -> None:
    """The relay's share: append (occurred_at) -> Kafka (record timestamp)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        "flagstream.flag-events",
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=25,
    )
    await consumer.start()
    lags: list[float] = []
    try:
        deadline = time.monotonic() + 30
        while len(lags) < at_least and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                for record in records:
                    event = Event.from_json(record.value)
                    lags.append(record.timestamp / 1000 - event.occurred_at.timestamp())
    finally:
        await consumer.stop()
    print(f"  relay share (append -> Kafka timestamp): {_ms(lags)} over {len(lags)} events")


def _roles(args: argparse.Namespace) -> list[str]:
    """The name of each child process, in the order :func:`_start_platform` starts them."""
    return ["api"] * args.api_workers + ["relay", "projector"]


def _load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


async def _start_platform(
    urls: dict[str, str], port: int, args: argparse.Namespace
) -> list[asyncio.subprocess.Process]:
    limits = {k: "100000000/1" for k in ("evaluation", "commands", "audit")}
    env = {
        **os.environ,
        **urls,
        "FLAGSTREAM_LOG_LEVEL": "warning",
        "FLAGSTREAM_RATE_LIMITS": json.dumps({"*": limits, "anonymous": limits}),
    }
    serve = ["-m", "api.serve", "--host", "127.0.0.1", "--port", str(port)]
    if args.api_workers > 1:
        serve.append("--reuse-port")
    if args.profile_api:
        serve = ["-m", "cProfile", "-o", args.profile_api, *serve]
    commands = [serve] * args.api_workers + [["-m", "workers.relay"], ["-m", "workers.projector"]]
    assert len(commands) == len(_roles(args))
    return [await asyncio.create_subprocess_exec(sys.executable, *argv, env=env) for argv in commands]


async def _run(args: argparse.Namespace, urls: dict[str, str]) -> None:
    from cli.run import _prepare
    from runtime.processes import find_free_port

    secret = await _prepare(urls["DATABASE_URL"], urls["KAFKA_BOOTSTRAP_SERVERS"])
    port = find_free_port()
    children = await _start_platform(urls, port, args)
    redis = make_redis(urls["REDIS_URL"])
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{base}/healthz")
        await _wait_listening(port, args.api_workers)
        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {secret}"}, limits=limits, timeout=30
        ) as client:
            flags = [f"bench-{i:04d}" for i in range(args.flags)]
            for key in flags:
                response = await client.post("/api/v1/flags", json={"key": key})
                assert response.status_code in (201, 409), response.text
            reader = EnvironmentReader(redis, "production")
            await reader.start()
            await _warm_up(client, reader, flags)
            print(f"load average before: {_load_average()} (api workers {args.api_workers})", flush=True)
            connections = [await _Connection.open("127.0.0.1", port, secret) for _ in range(args.concurrency)]
            run = SpineRun(connections, reader, redis, flags, args.seconds)
            roles = {child.pid: name for child, name in zip(children, _roles(args), strict=True)}
            cpu_before, servers_before = time.process_time(), _cpu_by_process(roles)
            elapsed = await run.run()
            cpu = time.process_time() - cpu_before
            servers = _cpu_by_process(roles)
            run.report(elapsed)
            per_command = {
                name: (seconds - servers_before.get(name, 0.0)) / max(1, len(run.latencies)) * 1e3
                for name, seconds in servers.items()
            }
            shares = ", ".join(
                f"{name} {ms:.2f}" for name, ms in sorted(per_command.items(), key=lambda x: -x[1])
            )
            print(f"CPU ms per command (the run and its 5 s tail): {shares}")
            for connection in connections:
                await connection.close()
            print(
                f"load generator CPU: {cpu / max(1, len(run.latencies)) * 1e3:.2f} ms per command "
                f"({cpu / elapsed:.0%} of one core); load average after: {_load_average()}"
            )
            await reader.stop()
        await _report_relay_lag(urls["KAFKA_BOOTSTRAP_SERVERS"], len(run.acked_at))
    finally:
        for child in children:
            child.terminate()
        await asyncio.gather(
            *(asyncio.wait_for(child.wait(), 20) for child in children), return_exceptions=True
        )
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--flags", type=int, default=200)
    parser.add_argument(
        "--api-workers", type=int, default=1, help="API processes sharing the port (SO_REUSEPORT)"
    )
    parser.add_argument(
        "--profile-api", metavar="FILE", help="run the one API process under cProfile, stats to FILE"
    )
    args = parser.parse_args()
    if args.profile_api and args.api_workers != 1:
        parser.error("--profile-api profiles one API process: use it with --api-workers 1")
    if args.profile_api:
        args.profile_api = str(Path(args.profile_api).resolve())
    with local_stack("flagstream-bench-") as urls:
        asyncio.run(_run(args, urls))


if __name__ == "__main__":
    main()

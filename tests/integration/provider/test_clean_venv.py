"""The provider distribution installed on its own: a wheel built from the repository's sources
(providers/python vendors core/ at build time), installed into a fresh virtual environment with
pinned dependencies from a local wheelhouse (no index at install time), evaluating against the
real Redis of the real platform. The venv must hold no top-level ``core``/``api``/``events``/
``projections`` and no FastAPI, asyncpg or aiokafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path

import pytest

from tests.integration.platform import Platform, module_database, start_platform

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
WHEELHOUSE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "flagstream" / "wheelhouse"
# The provider's dependencies, pinned to the versions the repository's lock installs in .venv.
PINNED = (
    "openfeature-sdk", "redis", "pydantic", "pydantic-core", "google-re2", "mmh3", "packaging",
    "typing-extensions", "annotated-types", "typing-inspection",
)  # fmt: skip

SCRIPT = """
import importlib.metadata, importlib.util, json, sys
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from flagstream_openfeature import FlagstreamProvider

url, namespace, key = sys.argv[1:4]
api.set_provider_and_wait(FlagstreamProvider(url, "production", namespace=namespace))
client = api.get_client()
vip = client.get_boolean_details(key, False, EvaluationContext("vip"))
other = client.get_boolean_details(key, True, EvaluationContext("someone"))
api.shutdown()
names = ("core", "api", "events", "projections", "fastapi", "asyncpg", "aiokafka", "structlog")
print(json.dumps({
    "vip": [vip.value, str(vip.reason), vip.variant],
    "error": vip.error_message,
    "other": [other.value, str(other.reason), other.variant],
    "modules": {n: importlib.util.find_spec(n) is not None for n in names},
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in names),
    "dists": sorted(d.metadata["Name"].lower() for d in importlib.metadata.distributions()),
}))
"""


@pytest.fixture(scope="module")
async def platform(database_url: str, redis_url: str, kafka_bootstrap: str) -> AsyncIterator[Platform]:
    async with (
        module_database(database_url) as database,
        start_platform(database, redis_url, kafka_bootstrap) as p,
    ):
        yield p


def _run(*args: str | Path) -> str:
    env = {**os.environ, "FLAGSTREAM_REPO": str(REPO)}
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the provider wheel installed from the wheelhouse only (``--no-index``)."""
    root = tmp_path_factory.mktemp("provider")
    pip = (sys.executable, "-m", "pip")
    source = root / "src"  # build from a copy: setuptools writes build/ and *.egg-info beside the sources
    _run("cp", "-r", REPO / "providers" / "python", source)
    _run(*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", root / "dist", source)
    constraints = root / "constraints.txt"
    constraints.write_text("".join(f"{name}=={metadata.version(name)}\n" for name in PINNED))
    wheel = next((root / "dist").glob("flagstream_openfeature-*.whl"))
    # Fills the cache once (from the configured indexes); later runs find every pinned wheel there.
    _run(*pip, "download", "-q", "--only-binary", ":all:", "-d", WHEELHOUSE, "-c", constraints, wheel)
    target = root / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", target)
    python = target / "bin" / "python"
    _run(*pip, "--python", python, "install", "-q", "--no-index", "--find-links", WHEELHOUSE,
         "-c", constraints, wheel)  # fmt: skip
    return python


async def test_clean_venv__installed_alone__evaluates_from_real_redis(
    platform: Platform, venv: Path, tmp_path: Path
) -> None:
    key = "cv-" + uuid.uuid4().hex[:10]
    config = {"enabled": True, "off_variation": "off", "targets": [{"variation": "on", "values": ["vip"]}],
              "default": {"variation": "off"}}  # fmt: skip
    await platform.request("POST", "/api/v1/flags", json={"key": key})
    put = await platform.request(
        "PUT", f"/api/v1/flags/{key}/environments/production?wait=projected", json=config
    )
    assert put.status_code == 200 and put.json()["projected"] is True, put.text
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)

    out = json.loads(
        _run(venv, "-I", script, platform.settings.redis_url, platform.settings.redis_namespace, key)
    )

    assert out["vip"] == [True, "TARGETING_MATCH", "on"], out["error"]
    assert out["other"] == [False, "DEFAULT", "off"]
    assert out["modules"] == dict.fromkeys(out["modules"], False), out["modules"]
    assert out["loaded"] == []
    assert {"flagstream-openfeature", "openfeature-sdk", "redis", "pydantic"} <= set(out["dists"])
    assert not {"fastapi", "asyncpg", "aiokafka", "flagstream", "structlog", "starlette"} & set(out["dists"])

"""The Redis Streams adapter under the conformance suite (service: `redis`)."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from pathlib import Path

import pytest

from ..conftest import BrokerSpec

ROOT = Path(__file__).resolve().parents[3]
HOST, PORT = "127.0.0.1", 6379
REGISTRY = "herald-conformance:namespaces"  # namespace -> first use (unix s), for clean-up
KEEP = 3600.0
_checked = False


def require_redis() -> None:
    """Fail loudly (never skip) when the service is not running."""
    global _checked
    if _checked:
        return
    try:
        socket.create_connection((HOST, PORT), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"Redis is not running on {HOST}:{PORT} ({exc}); start it with "
                    "`bash scripts/services.sh up redis`", pytrace=False)
    _checked = True


def namespace(tmp: Path) -> str:
    """Each test its own keys: real brokers keep state between tests."""
    return "t" + hashlib.sha1(str(tmp).encode()).hexdigest()[:10] + ":"


def remember_and_tidy(ns: str) -> None:
    """Note this test's namespace; delete those of runs over an hour old."""
    import redis

    client = redis.Redis(host=HOST, port=PORT, db=0)
    try:
        now = time.time()
        client.zadd(REGISTRY, {ns: now}, nx=True)
        for old in client.zrangebyscore(REGISTRY, "-inf", now - KEEP, start=0, num=20):
            pattern = "".join("\\" + c if c in "*?[]\\" else c for c in old.decode()) + "*"
            keys = list(client.scan_iter(match=pattern, count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i:i + 500])
            client.zrem(REGISTRY, old)
    finally:
        client.close()


def url(tmp: Path) -> str:
    ns = namespace(tmp)
    if tmp != Path("/tmp"):  # Path("/tmp") is the suite reading `features` at collection
        require_redis()
        remember_and_tidy(ns)
    return f"redis://{HOST}:{PORT}/0?namespace={ns}&lease_ttl=2"


async def restart() -> None:
    proc = await asyncio.create_subprocess_exec(
        "bash", "scripts/services.sh", "restart", "redis", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, f"restarting redis failed:\n{out.decode(errors='replace')}"


SPEC = BrokerSpec("redis", url=url, restart=restart, settle=2.0)

"""The Kafka adapter under the conformance suite (needs `bash scripts/services.sh up kafka`).

Each test gets its own namespace (topics and groups are prefixed with it),
since Kafka keeps state between tests. The namespaces this process made are
deleted when it exits, so test runs do not pile up topics on the broker.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
from pathlib import Path

from tests.kafka_namespaces import delete_namespaces

from ..conftest import BrokerSpec

ROOT = Path(__file__).resolve().parents[3]
ADDRESS = "127.0.0.1:9092"
_made: set[str] = set()


def namespace(tmp: Path) -> str:
    return "t" + hashlib.sha1(str(tmp).encode()).hexdigest()[:10] + "."


def url(tmp: Path) -> str:
    ns = namespace(tmp)
    if tmp != Path("/tmp"):  # (the suite asks for /tmp only to read the features)
        _made.add(ns)
    return f"kafka://{ADDRESS}?namespace={ns}"


async def restart() -> None:
    proc = await asyncio.create_subprocess_exec(
        "bash", "scripts/services.sh", "restart", "kafka", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"restarting kafka failed ({proc.returncode}):\n{out.decode()}")


@atexit.register
def _clean_up() -> None:
    """Delete the topics and groups of this run's namespaces (best effort)."""
    with contextlib.suppress(Exception):
        delete_namespaces(ADDRESS, _made)


# settle: with cooperative-sticky assignment, members joining a group take two
# rebalance rounds (heartbeats every 0.5 s) before partitions are shared.
SPEC = BrokerSpec("kafka", url=url, restart=restart, settle=3.0)

"""NATS JetStream in the conformance suite (`bash scripts/services.sh up nats`).

Each test gets its own namespace, so streams, consumers and the KV bucket of
one test never meet another's (the server keeps them between tests).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from ..conftest import BrokerSpec

ROOT = Path(__file__).resolve().parents[3]


def url(tmp: Path) -> str:
    namespace = "t" + hashlib.sha1(str(tmp).encode()).hexdigest()[:10]
    # lease_ttl=3: a killed worker's partitions move within seconds.
    return f"nats://127.0.0.1:4222?namespace={namespace}&lease_ttl=3"


async def restart() -> None:
    proc = await asyncio.create_subprocess_exec(
        "bash", str(ROOT / "scripts" / "services.sh"), "restart", "nats", cwd=ROOT
    )
    if await proc.wait() != 0:
        raise RuntimeError("`bash scripts/services.sh restart nats` failed; see .services/nats/nats.log")


SPEC = BrokerSpec("nats", url=url, restart=restart, settle=3.0)

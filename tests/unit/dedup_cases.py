"""What every durable dedup store must do, for the tests of each backend."""

from __future__ import annotations

import asyncio

import pytest

from herald import DedupStore
from herald.errors import ConfigError


async def check_seen_and_remember(store: DedupStore, other: DedupStore) -> None:
    """`store` has a TTL of 0.5 s; `other` is a second store on the same data
    (another process, in effect). Closes both."""
    try:
        assert not await store.seen("g", "e1")
        await store.remember("g", ["e1", "e2", "e2"])
        await store.remember("g", [])
        assert await store.seen("g", "e1") and await store.seen("g", "e2")
        assert await other.seen("g", "e1"), "shared between processes"
        assert not await store.seen("h", "e1"), "per group"
        many = store.seen_many  # every durable store answers for a batch at once
        assert await many("g", ["e1", "x", "e2", "e1"]) == {"e1", "e2"}
        assert await many("h", ["e1"]) == set() and await many("g", []) == set()
        assert await many("g", [f"n{i}" for i in range(1200)] + ["e2"]) == {"e2"}, "past a chunk"
        for group, ids in (("", ["e1"]), ("g", "e1"), ("g", [None]), (None, ["e1"])):
            with pytest.raises(ConfigError):
                await many(group, ids)
        await asyncio.sleep(0.7)
        assert not await store.seen("g", "e1"), "forgotten after the TTL"
        assert await many("g", ["e1", "e2"]) == set(), "seen_many forgets too"
        await store.remember("g", ["e1"])
        assert await store.seen("g", "e1"), "remembered again"
        await store.close()
        await store.close()
        await store.remember("g", ["e3"])  # opens again
        assert await store.seen("g", "e3")
    finally:
        await store.close()
        await other.close()

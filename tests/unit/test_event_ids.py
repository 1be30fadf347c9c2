"""Event ids: version 7 UUIDs that grow in the order one process makes them."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from herald import event
from herald.event import new_event_id


def test_ids_are_version_7_uuids_of_now() -> None:
    before = time.time_ns() // 1_000_000
    parsed = uuid.UUID(new_event_id())
    after = time.time_ns() // 1_000_000
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= after + 1  # the first 48 bits: unix milliseconds
    assert str(parsed) == str(parsed).lower()


def test_ids_grow_in_the_order_they_are_made() -> None:
    ids = [new_event_id() for _ in range(50_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_more_than_the_counter_holds_in_one_millisecond_still_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event, "_time_ns", lambda: 1_700_000_000_000_000_000)  # a clock that stands still
    ids = [new_event_id() for _ in range(10_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)


def test_a_clock_that_steps_back_never_makes_ids_go_back(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_800_000_000_000_000_000]
    monkeypatch.setattr(event, "_time_ns", lambda: now[0])
    first = new_event_id()
    now[0] -= 5_000_000_000  # five seconds back
    assert new_event_id() > first


def test_threads_never_share_an_id() -> None:
    out: list[list[str]] = [[] for _ in range(4)]

    def make(bucket: list[str]) -> None:
        bucket.extend(new_event_id() for _ in range(20_000))

    threads = [threading.Thread(target=make, args=(b,)) for b in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for bucket in out for i in bucket]
    assert len(set(every)) == len(every)


def test_a_forked_child_makes_other_ids() -> None:
    read, write = os.pipe()
    new_event_id()  # the parent's pool is started
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.write(write, " ".join(new_event_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    parents = {new_event_id() for _ in range(100)}
    with os.fdopen(read) as pipe:
        childs = set(pipe.read().split())
    os.waitpid(pid, 0)
    assert len(childs) == 100 and not parents & childs

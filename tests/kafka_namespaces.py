"""Deleting what Kafka tests made: every test gets a namespace (a prefix of
its topics and groups), since the broker keeps state between runs."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection


def delete_namespaces(address: str, namespaces: Collection[str]) -> None:
    """Delete the topics and consumer groups whose names start with one of
    `namespaces` (best effort per topic and group)."""
    if not namespaces:
        return
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": address})
    mine = re.compile("^(" + "|".join(re.escape(ns) for ns in namespaces) + ")")
    topics = [t for t in admin.list_topics(timeout=5).topics if mine.match(t)]
    for future in (admin.delete_topics(topics, request_timeout=15) if topics else {}).values():
        with contextlib.suppress(Exception):
            future.result(timeout=15)
    groups = [g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid
              if mine.match(g.group_id)]
    for future in (admin.delete_consumer_groups(groups, request_timeout=15) if groups else {}).values():
        with contextlib.suppress(Exception):
            future.result(timeout=15)

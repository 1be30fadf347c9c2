"""The dashboard's own JSON routes, beside the gateway's (topics, groups, dead
letters, streams), which the page uses as they are:

- `GET /api/dashboard/info`: what this gateway serves (open: the page asks it
  whether it needs a token);
- `GET /api/dashboard/rates`: samples of each topic's record count, for the
  rate chart;
- `GET /api/dashboard/topics/{topic}/records`: a topic's records, paged forward;
- `GET /api/dashboard/traces/{correlationid}`: the chain of one correlation id.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from herald.brokers.base import LogAdmin
from herald.errors import DecodeError, HeraldError
from herald.event import Envelope
from herald.http.cloudevents_http import data_fields, structured
from herald.http.dashboard import trace
from herald.http.errors import HttpError
from herald.http.inputs import MAX_KEY, check_text, check_topic, int_param, query_of
from herald.http.state import GatewayState

SAMPLES = 300  # at one sample a second at most: five minutes or more of history
MIN_SAMPLE_INTERVAL = 1.0


def _admin(state: GatewayState) -> LogAdmin:
    try:
        return state.app.admin()
    except HeraldError as exc:
        raise HttpError(501, "not-supported", str(exc)) from None


@dataclass(slots=True)
class RateSamples:
    """A ring buffer of (unix time, records per topic), filled when the page asks.

    Sampled on request rather than by a background task: nothing reads the
    broker while nobody looks, and several open pages still take at most one
    sample a second. The page plots the differences between samples.
    """

    poll_seconds: float = 2.0
    samples: deque[tuple[float, dict[str, int]]] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def sample(self, admin: LogAdmin) -> list[tuple[float, dict[str, int]]]:
        async with self.lock:
            now = time.time()
            if not self.samples or now - self.samples[-1][0] >= MIN_SAMPLE_INTERVAL:
                infos = await admin.topics()
                self.samples.append((now, {info.name: info.messages for info in infos}))
            return list(self.samples)


async def info(request: Request, state: GatewayState, *, metrics: bool, poll_seconds: float,
               version: str) -> Response:
    query_of(request.query_params.multi_items(), ())
    retry, dead = state.policies_prefixes()
    return JSONResponse({
        "app": state.app.name,
        "version": version,
        "auth": state.tokens.enabled,
        "store": state.store is not None,
        "metrics": metrics,
        "poll_seconds": poll_seconds,
        "retry_prefixes": sorted(retry),
        "dead_letter_prefixes": sorted(dead),
    })


async def rates(request: Request, state: GatewayState, *, samples: RateSamples) -> Response:
    query_of(request.query_params.multi_items(), ())
    taken = await samples.sample(_admin(state))
    return JSONResponse({
        "poll_seconds": samples.poll_seconds,
        "samples": [{"t": round(t, 3), "messages": counts} for t, counts in taken],
    })


async def topic_records(request: Request, state: GatewayState) -> Response:
    query = query_of(request.query_params.multi_items(), ("after", "limit"))
    name = check_topic(request.path_params["topic"])
    after = int_param(query, "after", 0, 0, 2**62)
    limit = int_param(query, "limit", 50, 1, 500)
    records = await _admin(state).read_topic(name, after=after, limit=limit)
    out: list[dict[str, Any]] = []
    for record in records:
        entry: dict[str, Any] = {"offset": record.offset, "partition": record.partition,
                                 "key": record.key, "timestamp": record.timestamp}
        try:
            entry["event"] = structured(Envelope.from_headers(record.headers, record.body))
        except DecodeError as exc:
            entry["event"] = None
            entry["problem"] = exc.reason
            entry["headers"] = record.headers
            entry.update(data_fields(record.body, record.headers.get("content-type")))
        out.append(entry)
    return JSONResponse({"topic": name, "records": out,
                         "next": records[-1].offset if records else after})


async def correlation(request: Request, state: GatewayState) -> Response:
    query = query_of(request.query_params.multi_items(), ("scan",))
    correlation_id = check_text(request.path_params["correlationid"], "correlation id", MAX_KEY,
                                "bad-correlation-id")
    scan = int_param(query, "scan", trace.DEFAULT_SCAN, 1, trace.MAX_SCAN)
    admin = _admin(state)
    retry, dead = state.policies_prefixes()
    search = trace.Search()
    await trace.search_topics(admin, await admin.topics(), correlation_id, skip_prefixes=retry,
                              dead_prefixes=dead, scan=scan, into=search)
    if state.store is not None:
        await trace.search_store(state.store, correlation_id, scan=scan, into=search)
    if not search.found:
        raise HttpError(404, "not-found", f"no event with correlation id {correlation_id!r} in the "
                        f"records searched ({sum(search.topics.values())} on topics"
                        + (f", {search.store} in the event store" if search.store is not None else "")
                        + ")")
    tree = trace.build_tree(correlation_id, search.found)
    tree["searched"] = {"topics": search.topics, "store": search.store, "scan": scan,
                        "truncated": search.truncated}
    return JSONResponse(tree)

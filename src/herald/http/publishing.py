"""POST /topics/{topic}/events: publish CloudEvents sent over HTTP.

The ordering key is the `key` query parameter or the `x-message-key` header
(freedom's name; percent-encoded like `ce-*` values) for every event of the
request; without either, an event's own `partitionkey` attribute (the
CloudEvents partitioning extension) is its key. A batch is one broker call.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from herald.event import Envelope
from herald.http.cloudevents_http import parse_request
from herald.http.errors import HttpError, bad_request
from herald.http.inputs import MAX_KEY, check_text, check_topic, float_param, query_of
from herald.http.state import GatewayState

KEY_HEADER = "x-message-key"
MAX_DELAY = 366 * 24 * 3600.0
TRACE_HEADERS = ("traceparent", "ce-traceparent")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or HttpError 413 as soon as it passes `limit` bytes
    (at once when Content-Length says so, else while it streams in)."""
    length = request.headers.get("content-length")
    if length is not None:
        if not (length.isascii() and length.isdigit()):
            raise bad_request("the Content-Length header is not a number")
        if int(length) > limit:
            raise _too_large(f"{int(length)} bytes", limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"more than {limit} bytes", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: str, limit: int) -> HttpError:
    return HttpError(413, "too-large", f"the body has {size}; this gateway takes at most {limit} bytes "
                     "per request (herald serve --max-body)")


async def publish(request: Request, state: GatewayState) -> Response:
    topic = check_topic(request.path_params["topic"], state.reserved_prefixes())
    query = query_of(request.query_params.multi_items(), ("key", "delay"))
    key = _request_key(request, query)
    delay = float_param(query, "delay", 0.0, MAX_DELAY)
    body = await read_body(request, state.max_body)
    envelopes = parse_request(
        request.headers.get("content-type"), request.headers.items(), body, max_batch=state.max_batch
    )
    keys = [_event_key(envelope, key, i, len(envelopes)) for i, envelope in enumerate(envelopes)]
    traceparent = request_traceparent(request.headers.items())
    if traceparent is not None:
        envelopes = [e if e.traceparent else msgspec.structs.replace(e, traceparent=traceparent)
                     for e in envelopes]
    app = state.app
    if len(envelopes) == 1:
        ids = [await app.publish(topic, envelopes[0], key=keys[0], delay=delay)]
    else:
        by_event = {id(envelope): k for envelope, k in zip(envelopes, keys, strict=True)}
        ids = await app.publish_batch(topic, envelopes, key=lambda e: by_event[id(e)], delay=delay)
    return JSONResponse({"topic": topic, "ids": ids}, status_code=202)


def request_traceparent(headers: list[tuple[str, str]]) -> str | None:
    """The W3C trace context of the request, for events that bring none of their own:
    the `traceparent` header, else `ce-traceparent` (a structured or batch request
    carries its events' attributes in the body, so that header is the request's).

    A malformed value, or one given twice, is ignored, as the W3C spec says:
    a broken trace header must not fail the request.
    """
    for name in TRACE_HEADERS:
        values = [v.strip() for k, v in headers if k.lower() == name]
        if len(values) != 1:
            continue
        match = _TRACEPARENT.fullmatch(values[0])
        if match is None:
            continue
        version, trace_id, parent_id, _, rest = match.groups()
        if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
            continue
        return values[0]
    return None


def _request_key(request: Request, query: dict[str, str]) -> str | None:
    from_query = query.get("key")
    headers = [v for k, v in request.headers.items() if k == KEY_HEADER]
    if len(headers) > 1:
        raise bad_request(f"header {KEY_HEADER} is given twice")
    from_header = None
    if headers:
        if not headers[0].isascii():
            raise bad_request(f"header {KEY_HEADER}: percent-encode characters beyond ASCII (UTF-8)")
        try:
            from_header = unquote(headers[0], errors="strict")
        except UnicodeDecodeError:
            raise bad_request(f"header {KEY_HEADER}: its percent-encoding is not UTF-8") from None
    if from_query is not None and from_header is not None and from_query != from_header:
        raise bad_request(f"the key query parameter and the {KEY_HEADER} header differ; give one")
    key = from_query if from_query is not None else from_header
    return None if key is None else check_text(key, "key", MAX_KEY, "bad-key")


def _event_key(envelope: Envelope, key: str | None, index: int, count: int) -> str | None:
    own = envelope.extensions.get("partitionkey")
    if own is not None and key is not None and own != key:
        where = "the event" if count == 1 else f"event {index}"
        raise bad_request(f"{where}: its partitionkey differs from the request's key; give one",
                          "bad-key")
    chosen = key if key is not None else own
    return None if chosen is None else check_text(chosen, "key", MAX_KEY, "bad-key")

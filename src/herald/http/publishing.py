"""POST /topics/{topic}/events: publish CloudEvents sent over HTTP.

The ordering key is the `key` query parameter or the `x-message-key` header
(freedom's name; percent-encoded like `ce-*` values) for every event of the
request; without either, an event's own `partitionkey` attribute (the
CloudEvents partitioning extension) is its key. A batch is one broker call.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from herald.event import Envelope
from herald.http.cloudevents_http import parse_request
from herald.http.errors import HttpError, bad_request
from herald.http.inputs import MAX_KEY, check_text, check_topic, float_param, query_of
from herald.http.state import GatewayState

KEY_HEADER = "x-message-key"
MAX_DELAY = 366 * 24 * 3600.0


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
    app = state.app
    if len(envelopes) == 1:
        ids = [await app.publish(topic, envelopes[0], key=keys[0], delay=delay)]
    else:
        by_event = {id(envelope): k for envelope, k in zip(envelopes, keys, strict=True)}
        ids = await app.publish_batch(topic, envelopes, key=lambda e: by_event[id(e)], delay=delay)
    return JSONResponse({"topic": topic, "ids": ids}, status_code=202)


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
